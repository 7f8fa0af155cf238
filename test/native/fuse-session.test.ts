// The native FUSE session on a real mount: served by a CHILD node process (test/helpers/fuse-serve.ts) and driven
// by separate shell processes (never from this process), as root and as nobody. Every mount is freed in
// after.always (SIGTERM, then SIGKILL, then umount -l).
import test from 'ava'
import { execFile } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { ServeChild, isMounted } from '../helpers/serve-child'

const HELPER = path.join(__dirname, '..', 'helpers', 'fuse-serve.js')
const base = fs.mkdtempSync(path.join(os.tmpdir(), 'pemfs-native-'))
fs.chmodSync(base, 0o755) // nobody must reach the mount
const back = path.join(base, 'back')
const mnt = path.join(base, 'mnt')

interface Run { code: number, stdout: string, stderr: string }
async function sh (script: string, user?: string, timeoutMs = 20000): Promise<Run> {
  const [cmd, args] = user === undefined ? ['sh', ['-c', script]] : ['su', [user, '-s', '/bin/sh', '-c', script]]
  return await new Promise(resolve => execFile(cmd, args, { cwd: mnt, timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
    const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 124
    resolve({ code, stdout, stderr })
  }))
}

async function serve (dir: string, backing: string, extra: Record<string, unknown> = {}): Promise<ServeChild> {
  fs.mkdirSync(dir, { recursive: true })
  fs.mkdirSync(backing, { recursive: true })
  return await ServeChild.start(HELPER, { dir, backing, ...extra })
}

async function waitUnmounted (dir: string, ms: number): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end;) {
    if (!isMounted(dir)) return true
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  return !isMounted(dir)
}

let server: ServeChild | undefined
const others: Array<[ServeChild, string]> = []

test.before(async () => {
  fs.mkdirSync(back, { mode: 0o777 })
  fs.chmodSync(back, 0o777)
  fs.writeFileSync(path.join(back, 'denied'), 'secret\n')
  fs.mkdirSync(path.join(back, 'x'))
  for (const d of ['scoped', 'wide', 'malformed']) fs.mkdirSync(path.join(back, d))
  server = await serve(mnt, back, { deny: ['/denied'], hang: ['/hang'], xor: ['/x'], decideTimeoutMs: 1500, scopes: { '/scoped': '/scoped', '/wide': '/elsewhere', '/malformed': 'malformed/' } })
})

test.after.always(async () => {
  await server?.stop(mnt)
  for (const [s, dir] of others) await s.stop(dir)
  if (!isMounted(mnt)) fs.rmSync(base, { recursive: true, force: true })
})

test.serial('create, write, read and append through the native session', async t => {
  const r = await sh('echo hello > f && echo world >> f && cat f && stat -c %s f')
  t.is(r.code, 0, r.stderr)
  t.is(r.stdout, 'hello\nworld\n12\n')
  t.is(fs.readFileSync(path.join(back, 'f'), 'utf8'), 'hello\nworld\n')
})

test.serial('a hard link is one inode: link counts, and a size change under one name shows under the other', async t => {
  const r = await sh('echo abc > h1 && ln h1 h2 && stat -c "%h %i" h1 h2 && exec 3<h1 && printf defg >> h2 && stat -c %s h1 && rm h2 && stat -c %h h1')
  t.is(r.code, 0, r.stderr)
  const [a, b, size, after] = r.stdout.trim().split('\n')
  t.is(a, b)
  t.true(a.startsWith('2 '))
  t.is(size, '8')
  t.is(after, '1')
})

test.serial('rename, unlink, rmdir, symlink and readlink', async t => {
  const r = await sh('mkdir d && echo one > a && mv a d/b && ls d && ln -s d/b s && readlink s && cat s && mv d e && cat e/b && rm s e/b && rmdir e && ls')
  t.is(r.code, 0, r.stderr)
  t.is(r.stdout, 'b\nd/b\none\none\n' + fs.readdirSync(back).sort().join('\n') + '\n')
  t.false(fs.existsSync(path.join(back, 'e')))
})

test.serial('mkfifo and mknod (a device node, as root)', async t => {
  const r = await sh('mkfifo p && mknod c c 1 3 && stat -c "%F %t:%T" p c && rm p c')
  t.is(r.code, 0, r.stderr)
  t.is(r.stdout, 'fifo 0:0\ncharacter special file 1:3\n')
})

test.serial('xattrs: user.* and trusted.* (root) are stored on the backing file, pemfs names are refused', async t => {
  const py = [
    'import os', 'open("xa", "w").close()', 'os.setxattr("xa", "user.color", b"blue")',
    'print(os.getxattr("xa", "user.color").decode(), os.listxattr("xa"))',
    'for n in ["trusted.a", "user.pemfs.key", "trusted.pemfs.key"]:',
    '  try: os.setxattr("xa", n, b"1"); print("set", n)',
    '  except OSError as e: print(n, e.errno)',
    'os.removexattr("xa", "user.color"); print(os.listxattr("xa"))'
  ].join('\n')
  const r = await sh(`/usr/bin/python3 -c '${py}'`)
  t.is(r.code, 0, r.stderr)
  t.is(r.stdout, "blue ['user.color']\nset trusted.a\nuser.pemfs.key 1\ntrusted.pemfs.key 1\n['trusted.a']\n")
  const under = await sh(`/usr/bin/python3 -c 'import os; print(os.getxattr("${path.join(back, 'xa')}", "trusted.a").decode())'`)
  t.is(under.stdout, '1\n', under.stderr)
  fs.writeFileSync(path.join(back, 'xb'), '')
  const r2 = await sh(`/usr/bin/python3 -c 'import os; os.setxattr("${path.join(back, 'xb')}", "user.k", b"v"); print(os.getxattr("xb", "user.k").decode())'`)
  t.is(r2.stdout, 'v\n', r2.stderr)
})

test.serial('utimens, fallocate, lseek (SEEK_DATA/SEEK_HOLE) and copy_file_range as the kernel sends them', async t => {
  const py = [
    'import os',
    'fd = os.open("rg", os.O_RDWR | os.O_CREAT, 0o644)',
    'os.posix_fallocate(fd, 0, 65536); print(os.fstat(fd).st_size)',
    'os.ftruncate(fd, 4 << 20); os.pwrite(fd, b"tail", (4 << 20) - 4)',
    'print(os.lseek(fd, 65536, os.SEEK_HOLE), os.lseek(fd, 1 << 20, os.SEEK_DATA) >= (1 << 20))',
    'out = os.open("rg2", os.O_RDWR | os.O_CREAT, 0o644)',
    'print(os.copy_file_range(fd, out, 4, (4 << 20) - 4, 0), os.pread(out, 4, 0))'
  ].join('\n')
  const r = await sh(`/usr/bin/python3 -c '${py}' && touch -m -d @1000000000 rg && touch -a -d @1100000000 rg && stat -c "%X %Y" rg`)
  t.is(r.code, 0, r.stderr)
  t.is(r.stdout, "65536\n65536 True\n4 b'tail'\n1100000000 1000000000\n")
  t.is(Math.round(fs.statSync(path.join(back, 'rg')).mtimeMs / 1000), 1000000000)
})

test.serial('a 255-byte name and a path of ~4000 bytes inside the mount', async t => {
  const name = 'n'.repeat(255)
  const comp = 'c'.repeat(208)
  const r = await sh(`echo long > ${name} && cat ${name} && for i in $(seq 19); do mkdir ${comp} && cd ${comp} || exit 9; done; echo deep > f && cat f && echo toolong > ${name}x; echo $?`)
  t.is(r.code, 0, r.stderr)
  const lines = r.stdout.trim().split('\n')
  t.deepEqual(lines, ['long', 'deep', '2'])
  t.is(19 * 209 + 2, 3973)
  let p = back
  for (let i = 0; i < 19; i++) p = path.join(p, comp)
  t.is(fs.readFileSync(path.join(p, 'f'), 'utf8'), 'deep\n')
  fs.rmSync(path.join(back, comp), { recursive: true })
})

test.serial('truncate up and down', async t => {
  const r = await sh('printf 0123456789 > tr && truncate -s 100000 tr && stat -c %s tr && truncate -s 3 tr && cat tr')
  t.is(r.code, 0, r.stderr)
  t.is(r.stdout, '100000\n012')
})

test.serial('readdir of 1000 entries', async t => {
  const r = await sh('mkdir many && cd many && seq 1000 | sed s/^/entry-/ | xargs touch && ls | wc -l && ls -f | wc -l')
  t.is(r.code, 0, r.stderr)
  t.is(r.stdout, '1000\n1002\n')
  t.is(fs.readdirSync(path.join(back, 'many')).length, 1000)
})

test.serial('a refusal from decide is EACCES', async t => {
  const r = await sh('cat denied')
  t.not(r.code, 0)
  t.regex(r.stderr, /Permission denied/)
})

test.serial('a decide that never answers fails the operation within its deadline (ETIMEDOUT)', async t => {
  fs.writeFileSync(path.join(back, 'hang'), 'x')
  const start = Date.now()
  const r = await sh('cat hang')
  const ms = Date.now() - start
  t.not(r.code, 0)
  t.regex(r.stderr, /timed out/)
  t.true(ms >= 1400 && ms < 6000, `${ms} ms`)
})

test.serial('Unix permissions as a local filesystem: root 0600 file vs nobody', async t => {
  t.is((await sh('echo secret > secret && chmod 600 secret')).code, 0)
  const cat = await sh('cat secret', 'nobody')
  t.not(cat.code, 0)
  t.regex(cat.stderr, /Permission denied/)
  const app = await sh('echo x >> secret', 'nobody')
  t.not(app.code, 0)
  t.regex(app.stderr, /Permission denied/)
  const chmod = await sh('chmod 777 secret', 'nobody')
  t.not(chmod.code, 0)
  t.regex(chmod.stderr, /Operation not permitted/)
  t.is(fs.readFileSync(path.join(back, 'secret'), 'utf8'), 'secret\n')
  t.is(fs.statSync(path.join(back, 'secret')).mode & 0o777, 0o600)
})

test.serial('entries are owned as on ext4: nobody in a 1777 dir, umask, setgid group, sticky removal', async t => {
  t.is((await sh('mkdir pub && chmod 1777 pub && mkdir sg && chgrp 100 sg && chmod 2777 sg && echo r > pub/rootfile && chmod 666 pub/rootfile')).code, 0)
  const r = await sh('umask 027 && touch pub/mine && mkdir pub/mydir && stat -c "%U %a" pub/mine pub/mydir && touch sg/g && stat -c %g sg/g; rm -f pub/rootfile; echo rm=$?', 'nobody')
  t.is(r.stdout, 'nobody 640\nnobody 750\n100\nrm=1\n', r.stderr)
  const st = fs.statSync(path.join(back, 'pub', 'mine'))
  t.is(st.uid, 65534)
  t.is(fs.statSync(path.join(back, 'sg', 'g')).gid, 100)
  t.true(fs.existsSync(path.join(back, 'pub', 'rootfile')))
})

// The kernel's binary xattr form of an ACL: version 2, then (tag u16, perm u16, id u32) entries, little endian.
const ACL_PY = 'import os, struct\ne = lambda tag, perm, id: struct.pack("<HHI", tag, perm, id)\nU = 0xffffffff\n'

test.serial('POSIX ACLs are stored on the backing file and honoured (access and default ACL)', async t => {
  t.is((await sh('echo acl > acl && chmod 600 acl && mkdir acld')).code, 0)
  const set = await sh(`/usr/bin/python3 -c '${ACL_PY}` +
    'os.setxattr("acl", "system.posix_acl_access", struct.pack("<I", 2) + e(1, 6, U) + e(2, 4, 65534) + e(4, 0, U) + e(0x10, 4, U) + e(0x20, 0, U))\n' +
    'os.setxattr("acld", "system.posix_acl_default", struct.pack("<I", 2) + e(1, 7, U) + e(2, 7, 65534) + e(4, 5, U) + e(0x10, 7, U) + e(0x20, 5, U))\'')
  t.is(set.code, 0, set.stderr)
  t.is((await sh('cat acl', 'nobody')).stdout, 'acl\n')
  t.not((await sh('cat secret', 'nobody')).code, 0) // the same mode without an ACL entry for nobody
  // A default ACL replaces the umask for new entries, as on ext4: 0666 from touch, group rw from the ACL mask.
  t.is((await sh('umask 077 && touch acld/inh && stat -c %a acld/inh')).stdout, '664\n')
  t.is(fs.statSync(path.join(back, 'acld', 'inh')).mode & 0o777, 0o664)
  t.is((await sh('echo w >> acld/inh && echo ok', 'nobody')).stdout, 'ok\n')
})

test.serial('the io hook serves hooked (encrypted) handles: data, truncation and sizes (a header + XOR 0x5a on disk)', async t => {
  const r = await sh('echo hello > x/f && cat x/f && echo more >> x/f && cat x/f && stat -c %s x/f && truncate -s 3 x/f && cat x/f && ' +
    'echo new > x/f && cat x/f && stat -c %s x/f && exec 3< x/f && python3 -c "import os; print(os.fstat(3).st_size)"')
  t.is(r.code, 0, r.stderr)
  t.is(r.stdout, 'hello\nhello\nmore\n11\nhelnew\n4\n4\n')
  const disk = fs.readFileSync(path.join(back, 'x', 'f'))
  t.is(disk.subarray(0, 16).toString(), 'PEMFS-XOR-HEADER')
  t.deepEqual([...disk.subarray(16)], [...Buffer.from('new\n')].map(b => b ^ 0x5a))
  const st = await server?.command('stats') as { hooked: Record<string, number> }
  for (const k of ['open', 'read', 'write', 'truncate', 'release', 'size']) t.true(st.hooked[k] > 0, k)
})

test.serial('decisions are cached natively per process; invalidate drops them', async t => {
  fs.writeFileSync(path.join(back, 'c'), 'line\n')
  const reads = async (): Promise<number> => ((await server?.command('stats')) as { decided: Record<string, number> }).decided.read ?? 0
  const loop = 'for i in $(seq 50); do read l < c; done; echo $l'
  const r0 = await reads()
  t.is((await sh(loop)).stdout, 'line\n')
  const r1 = await reads()
  t.is(r1 - r0, 1)
  t.deepEqual(await server?.command('invalidate'), { ok: true })
  await sh(loop)
  t.is(await reads() - r1, 1)
})

test.serial('a scoped answer holds for every path under its scope; one that is not an ancestor holds for its path; a malformed one is EIO', async t => {
  const creates = async (): Promise<number> => ((await server?.command('stats')) as { decided: Record<string, number> }).decided.create ?? 0
  const c0 = await creates()
  t.is((await sh('for i in $(seq 50); do echo x > scoped/f$i; done; cat scoped/f50')).stdout, 'x\n')
  const c1 = await creates()
  t.is(c1 - c0, 1, 'one create decision for 50 names under /scoped')
  t.is((await sh('for i in $(seq 20); do echo x > wide/f$i; done')).code, 0)
  t.is(await creates() - c1, 20, 'scope /elsewhere is not an ancestor of /wide/…: per path')
  const bad = await sh('echo x > malformed/f')
  t.not(bad.code, 0)
  t.regex(bad.stderr, /Input\/output error/)
})

test.serial('revoke: an open handle loses its decision', async t => {
  fs.writeFileSync(path.join(back, 'rv'), 'data\n')
  const flag = path.join(base, 'opened')
  const go = path.join(base, 'go')
  const reader = sh(`exec 3< rv && touch ${flag} && while [ ! -e ${go} ]; do sleep 0.05; done; cat <&3`)
  for (let i = 0; i < 100 && !fs.existsSync(flag); i++) await new Promise(resolve => setTimeout(resolve, 50))
  const rv = await server?.command('revoke') as { revoked: number }
  t.true(rv.revoked >= 1)
  fs.writeFileSync(go, '')
  const r = await reader
  t.not(r.code, 0)
  t.regex(r.stderr, /Permission denied/)
})

test.serial('notify: the kernel forgets cached attributes at once (attribute timeout 60 s)', async t => {
  const dir = path.join(base, 'mnt-cache')
  const backing = path.join(base, 'back-cache')
  const s = await serve(dir, backing, { attrTimeoutMs: 60000 })
  others.push([s, dir])
  fs.writeFileSync(path.join(backing, 'f'), '12345')
  t.is((await sh(`exec 3< ${dir}/f; stat -c %s ${dir}/f`)).stdout, '5\n')
  fs.writeFileSync(path.join(backing, 'f'), '1234567890') // behind the mount's back
  t.is((await sh(`stat -c %s ${dir}/f`)).stdout, '5\n') // the kernel's cached attributes
  t.true(typeof (await s.command('notify /f')).nodeid === 'number')
  let size = ''
  for (let i = 0; i < 20 && size !== '10\n'; i++) { // the notifier thread runs it shortly after
    size = (await sh(`stat -c %s ${dir}/f`)).stdout
    if (size !== '10\n') await new Promise(resolve => setTimeout(resolve, 50))
  }
  t.is(size, '10\n')
  await s.stop(dir)
  t.false(isMounted(dir))
})

test.serial('guarding in place: the mount covers its own backing directory', async t => {
  const dir = path.join(base, 'inplace')
  fs.mkdirSync(dir)
  fs.writeFileSync(path.join(dir, 'old'), 'before\n')
  const s = await serve(dir, dir)
  others.push([s, dir])
  const r = await sh(`cat ${dir}/old && echo new > ${dir}/n && mv ${dir}/n ${dir}/n2 && ls ${dir}`)
  t.is(r.stdout, 'before\nn2\nold\n', r.stderr)
  await s.stop(dir)
  t.false(isMounted(dir))
  t.deepEqual(fs.readdirSync(dir).sort(), ['n2', 'old'])
})

test.serial('SIGTERM unmounts cleanly', async t => {
  const dir = path.join(base, 'mnt-term')
  const s = await serve(dir, path.join(base, 'back-term'))
  others.push([s, dir])
  t.true(isMounted(dir))
  s.child.kill('SIGTERM')
  t.is(await s.exited(5000), 0)
  t.false(isMounted(dir))
})

test.serial('a SIGKILLed serving process leaves no hung mount (auto_unmount)', async t => {
  const dir = path.join(base, 'mnt-kill')
  const s = await serve(dir, path.join(base, 'back-kill'))
  others.push([s, dir])
  t.is((await sh(`echo x > ${dir}/f && cat ${dir}/f`)).stdout, 'x\n')
  s.child.kill('SIGKILL')
  t.true(await waitUnmounted(dir, 5000))
  const r = await sh(`touch ${dir}/after && ls ${dir} && echo ok`, undefined, 5000)
  t.is(r.code, 0, r.stderr)
  t.is(r.stdout.trim(), 'after\nok')
})
