// `pemfs encrypt | rekey | decrypt` on a real `--embedded` mount: a tree of plaintext from before (0 B, 1 B, block
// size ± 1, sparse, a symlink, a hard link, a file with its own owner, mode, times, xattr and ACL, a directory the
// policy keeps plaintext) is converted while a reader holds a file open and a writer appends to one underneath;
// kill -9 of the converter at random points and reruns end with every file whole; rekey after a key rotation and
// decrypt of a subtree. Checked by SHA-256 through the mount (from child processes) and on the bytes underneath
// (through the daemon's descriptor of its backing dir). Also: a running conversion in pemfs status and the metrics,
// --max-load, the policy's admin-level action convert, and pemfs's own names hidden by the mount (root and setpriv).
import test from 'ava'
import { spawn, type ChildProcess } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { cli, ROOT } from '../../scripts/procs'
import { raw } from '../../lib/native/binding'
import { decodeHeader, FILE_MAGIC } from '../../lib/wire/file-format'
import { isMounted, sh, tempDir } from '../helpers/mounts'

const root = tempDir('convert')
const dir = path.join(root, 'data')
const cfg = path.join(root, 'config')
const stopFile = path.join(root, 'stop-appending')
const expected = new Map<string, string>() // relative path → SHA-256 of its plaintext
const sha = (b: Buffer): string => crypto.createHash('sha256').update(b).digest('hex')
const children: ChildProcess[] = []
// user::rw- user:4321:r-- group::r-- mask::r-- other::--- (the kernel's xattr form: version 2, then tag, perm, id)
const ownedAcl = Buffer.concat([Buffer.from([2, 0, 0, 0]), ...[[1, 6, -1], [2, 4, 4321], [4, 4, -1], [0x10, 4, -1], [0x20, 0, -1]].map(([tag, perm, id]) => {
  const e = Buffer.alloc(8); e.writeUInt16LE(tag, 0); e.writeUInt16LE(perm, 2); e.writeInt32LE(id, 4); return e
})])

function put (rel: string, data: Buffer): void {
  fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true })
  fs.writeFileSync(path.join(dir, rel), data)
  expected.set(rel, sha(data))
}

/** The backing directory as the mount daemon holds it (the guard point is mounted over it). */
function backing (): string {
  const pid = fs.readFileSync(path.join(cfg, 'run', fs.readdirSync(path.join(cfg, 'run')).find(f => f.endsWith('.pid')) as string), 'utf8').trim()
  const mountDev = fs.statSync(dir).dev // stat of the mount root from this process: answered by the kernel's cache or the daemon
  for (const n of fs.readdirSync(`/proc/${pid}/fd`)) {
    const link = `/proc/${pid}/fd/${n}`
    try { if (fs.readlinkSync(link) === dir && fs.statSync(link).dev !== mountDev) return link } catch {}
  }
  throw new Error('no backing descriptor')
}

/** SHA-256 of each file read through the mount, by a child process. */
async function mountSums (rels: string[]): Promise<Map<string, string>> {
  const r = await sh(`cd '${dir}' && sha256sum ${rels.map(p => `'${p}'`).join(' ')}`, { timeoutMs: 30000 })
  return new Map(r.stdout.trim().split('\n').filter(Boolean).map(l => { const [h, ...p] = l.split('  '); return [p.join('  '), h] }))
}

interface Run { code: number | null, events: Array<Record<string, unknown>>, stderr: string }

/** `pemfs MODE PATH --json …` as a child; with killMs, SIGKILLed that long after it printed its plan. */
async function convert (mode: string, target: string, extra: string[] = [], killMs?: number): Promise<Run> {
  const child = spawn(process.execPath, [path.join(ROOT, 'bin', 'pemfs.js'), mode, target, '--config-dir', cfg, '--json', ...extra], { stdio: ['ignore', 'pipe', 'pipe'] })
  children.push(child)
  let out = ''
  let err = ''
  let kill: NodeJS.Timeout | undefined
  child.stdout.on('data', (c: Buffer) => {
    out += c.toString()
    if (killMs !== undefined && kill === undefined && out.includes('"event":"plan"')) kill = setTimeout(() => child.kill('SIGKILL'), killMs)
  })
  child.stderr.on('data', (c: Buffer) => { err += c.toString() })
  const timer = setTimeout(() => child.kill('SIGKILL'), 25000)
  const code = await new Promise<number | null>(resolve => child.on('exit', c => resolve(c)))
  clearTimeout(timer)
  clearTimeout(kill)
  return { code, events: out.split('\n').filter(Boolean).map(l => JSON.parse(l) as Record<string, unknown>), stderr: err }
}
const done = (r: Run): Record<string, unknown> | undefined => r.events.find(e => e.event === 'done')

test.before(async () => {
  fs.chmodSync(root, 0o755) // other users reach the mount (the ACL check)
  fs.mkdirSync(dir)
  put('empty', Buffer.alloc(0))
  put('one', Buffer.from('x'))
  for (const n of [4095, 4096, 4097]) put(`b${n}`, crypto.randomBytes(n))
  const sparse = Buffer.alloc(6 << 20) // 6 MiB with three words in it; only their pages are allocated underneath
  const words: Array<[string, number]> = [['start', 0], ['middle', 3 << 20], ['end', (6 << 20) - 3]]
  const fd = fs.openSync(path.join(dir, 'sparse'), 'w')
  fs.ftruncateSync(fd, sparse.length)
  for (const [w, at] of words) { sparse.write(w, at); fs.writeSync(fd, w, at) }
  fs.closeSync(fd)
  expected.set('sparse', sha(sparse))
  put('sub/deep/x', Buffer.from('deep\n'))
  put('owned', Buffer.from('owned by 1234\n'))
  fs.chownSync(path.join(dir, 'owned'), 1234, 1234)
  fs.chmodSync(path.join(dir, 'owned'), 0o640)
  fs.utimesSync(path.join(dir, 'owned'), 1700000000, 1700000000.5)
  raw.xattrSet(path.join(dir, 'owned'), 'user.note', Buffer.from('kept'))
  raw.xattrSet(path.join(dir, 'owned'), 'system.posix_acl_access', ownedAcl)
  put('busy', crypto.randomBytes(300000))
  put('public/readme', Buffer.from('plaintext by policy\n'))
  put('hard', Buffer.from('linked\n')) // three names of one file, in two directories
  for (const other of ['hard2', 'sub/hard3']) { fs.linkSync(path.join(dir, 'hard'), path.join(dir, other)); expected.set(other, expected.get('hard') as string) }
  fs.symlinkSync('one', path.join(dir, 'link'))
  for (let i = 0; i < 16; i++) put(`bulk/f${String(i).padStart(2, '0')}`, crypto.randomBytes((256 << 10) + i * 4097))
  fs.writeFileSync(path.join(dir, 'appended'), 'first line\n')
  // A writer that opened its file before the guard point existed (its descriptor is the backing file's) and appends
  // until told to stop: the conversion must wait for it, never lose a line.
  const appender = spawn('sh', ['-c', `exec 3>>'${path.join(dir, 'appended')}'; i=0; while [ ! -e '${stopFile}' ]; do echo "line $i" >&3; i=$((i+1)); sleep 0.02; done; echo $i`], { stdio: ['ignore', 'pipe', 'ignore'] })
  children.push(appender)
  appenderLines = new Promise(resolve => { let o = ''; appender.stdout.on('data', (c: Buffer) => { o += c.toString() }); appender.on('exit', () => resolve(Number(o.trim()))) })
  // the default policy (everything sealed under key default, on the host), except /public: plaintext by policy
  const policy = path.join(root, 'policy.yaml')
  fs.writeFileSync(policy, `format: 1
keys: [default]
guards:
  ${dir}:
    rules:
      - id: store-file
        resources: { files: [/.pemfs-embedded, /.pemfs-embedded.tmp] }
        effect: deny
      - id: no-convert-public
        actions: [convert]
        resources: { dirs: [/public] }
        effect: deny
      - id: convert-as-root
        actions: [convert]
        users: { uids: [0] }
        effect: permit
      - id: public-plain
        resources: { dirs: [/public] }
        effect: permit
      - id: sealed
        effect: apply_key(default)
        placement: host
`)
  const m = await cli('pemfs', ['mount', dir, '--embedded', '--policy', policy, '--config-dir', cfg, '--json'], {}, 30000)
  if (m.code !== 0) throw new Error(`mount: ${m.stderr}`)
})
let appenderLines: Promise<number>

test.after.always(async () => {
  fs.writeFileSync(stopFile, '')
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL')
  if (isMounted(dir)) await cli('pemfs', ['unmount', dir, '--config-dir', cfg, '--lazy'], {}, 30000)
  if (isMounted(dir)) await sh(`umount -l '${dir}'`)
  const spd = path.join(cfg, 'embedded')
  for (const p of fs.readdirSync('/proc').filter(p => /^\d+$/.test(p))) {
    try { if (fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(spd)) process.kill(Number(p), 'SIGKILL') } catch {}
  }
})

test.serial('encrypt: every plaintext file becomes ciphertext underneath and reads back identical; a reader and a writer keep their data; a hard-linked file is converted once and keeps its names', async t => {
  const reader = sh(`exec 3<'${path.join(dir, 'busy')}'; sleep 2; sha256sum <&3`, { timeoutMs: 20000 }) // open across the rename
  await new Promise(resolve => setTimeout(resolve, 300))
  setTimeout(() => fs.writeFileSync(stopFile, ''), 1500)
  const r = await convert('encrypt', dir, ['--wait', '15'])
  const summary = done(r)
  t.truthy(summary, r.stderr)
  t.is(r.code, 0, r.stderr)
  t.is(summary?.failed, 0, JSON.stringify(r.events.filter(e => e.state === 'failed')))
  t.is(summary?.skipped, 0, JSON.stringify(r.events.filter(e => e.state === 'skipped')))
  t.is(summary?.converted, [...expected.keys(), 'appended'].filter(p => !['empty', 'public/readme', 'hard2', 'sub/hard3'].includes(p)).length, 'every non-empty file once, the appended one included')
  t.deepEqual(r.events.find(e => e.path === 'hard')?.links, ['hard2', 'sub/hard3'], 'the hard-linked file is one conversion, its other names follow')
  t.like(r.events.find(e => e.path === 'public/readme'), { state: 'plaintext' }, 'the policy keeps /public plaintext')
  t.is(summary?.plaintext, 1)
  t.is((await reader).stdout.split(' ')[0], expected.get('busy') ?? '', 'the reader\'s open handle kept reading the same bytes')

  const lines = await appenderLines
  const appended = `first line\n${Array.from({ length: lines }, (_, i) => `line ${i}\n`).join('')}`
  expected.set('appended', sha(Buffer.from(appended)))
  t.true(lines > 10, `the appender wrote ${lines} lines`)
  const sums = await mountSums([...expected.keys()])
  for (const [rel, h] of expected) t.is(sums.get(rel), h, `${rel} reads back identical through the mount`)

  const b = backing()
  for (const rel of expected.keys()) {
    const stored = fs.readFileSync(path.join(b, rel))
    if (rel === 'empty') { t.is(stored.length, 0); continue }
    if (rel === 'public/readme') { t.is(stored.toString(), 'plaintext by policy\n'); continue }
    t.true(stored.subarray(0, 4).equals(FILE_MAGIC), `${rel} is ciphertext underneath`)
  }
  t.false(fs.readFileSync(path.join(b, 'sparse')).includes('middle'))
  t.true(fs.statSync(path.join(b, 'sparse')).blocks * 512 < 1 << 20, 'the sparse file stays sparse underneath')
  const links = ['hard', 'hard2', 'sub/hard3'].map(rel => fs.statSync(path.join(b, rel)))
  t.true(links.every(st => st.ino === links[0].ino && st.nlink === 3), 'its three names are still one inode underneath')
  t.is((await sh(`stat -c %h '${path.join(dir, 'hard2')}'`)).stdout, '3\n', 'and through the mount: link count unchanged')
  t.is(fs.lstatSync(path.join(b, 'link')).isSymbolicLink(), true)
  const st = await sh(`stat -c '%u %g %a %Y' '${path.join(dir, 'owned')}'; readlink '${path.join(dir, 'link')}'`)
  t.is(st.stdout, '1234 1234 640 1700000000\none\n', 'owner, group, mode and mtime kept; the symlink untouched')
  t.is(fs.statSync(path.join(b, 'owned')).mtimeMs, 1700000000500)
  t.is(raw.xattrGet(path.join(b, 'owned'), 'user.note').toString(), 'kept', 'extended attributes carried over')
  t.deepEqual(raw.xattrGet(path.join(b, 'owned'), 'system.posix_acl_access'), ownedAcl, 'the ACL too')
  const as = async (uid: number): Promise<number> => (await sh(`setpriv --reuid ${uid} --regid ${uid} --clear-groups cat '${path.join(dir, 'owned')}'`)).code
  t.is(await as(4321), 0, 'the ACL entry still lets uid 4321 read it through the mount')
  t.not(await as(4322), 0, 'and nobody else')

  const again = await convert('encrypt', dir)
  t.like(done(again), { converted: 0, failed: 0, leftoversRemoved: 0 })
})

test.serial('kill -9 at random points, then a rerun: every file is whole, no temporary copy is left', async t => {
  const bulk = [...expected.keys()].filter(p => p.startsWith('bulk/'))
  // back to plaintext underneath, so that there is something to encrypt again
  const d = await convert('decrypt', path.join(dir, 'bulk'))
  t.like(done(d), { converted: bulk.length, failed: 0 })
  let kills = 0
  let converted = 0
  let leftovers = 0
  for (let i = 0; i < 10; i++) {
    const r = await convert('encrypt', path.join(dir, 'bulk'), ['--rate', '0.5'], 150 + Math.floor(Math.random() * 850))
    if (r.code === null) kills++
    converted += r.events.filter(e => e.event === 'file' && e.state === 'converted').length
    leftovers += Number(r.events.find(e => e.event === 'plan')?.leftoversRemoved ?? 0)
  }
  const last = await convert('encrypt', path.join(dir, 'bulk'))
  leftovers += Number(last.events.find(e => e.event === 'plan')?.leftoversRemoved ?? 0)
  t.log(`${kills} of 10 runs killed; ${converted} files converted by them; ${leftovers} half-made copies removed by the next run`)
  t.true(kills >= 8) // at 0.5 MB/s a run converts a quarter MiB or so before its kill: 4.4 MiB outlast the loop
  t.true(leftovers >= 1, 'some kills landed in the middle of a copy')
  t.is(last.code, 0, last.stderr)
  const s = done(last) as { converted: number, current: number, failed: number }
  t.is(s.failed, 0)
  t.true(converted + s.converted <= bulk.length, 'no file converted twice (a kill may have lost a report)')
  t.deepEqual(fs.readdirSync(path.join(backing(), 'bulk')).sort(), bulk.map(p => path.basename(p)).sort(), 'no temporary copy left')
  const sums = await mountSums(bulk)
  for (const rel of bulk) {
    t.is(sums.get(rel), expected.get(rel), `${rel} identical`)
    t.true(fs.readFileSync(path.join(backing(), rel)).subarray(0, 4).equals(FILE_MAGIC), `${rel} encrypted`)
  }
})

const mountStatus = async (): Promise<Record<string, any>> => {
  const r = await cli('pemfs', ['status', dir, '--config-dir', cfg, '--json'])
  if (r.code !== 0) throw new Error(r.stderr)
  return JSON.parse(r.stdout)
}
const sleep = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms))

test.serial('a running conversion: pemfs status and the metrics show it, its temporary copies are hidden from others, --max-load backs off', async t => {
  const bulk = [...expected.keys()].filter(p => p.startsWith('bulk/'))
  t.like(done(await convert('decrypt', path.join(dir, 'bulk'))), { converted: bulk.length, failed: 0 })
  const bulkBytes = bulk.reduce((n, rel) => n + fs.statSync(path.join(backing(), rel)).size, 0) // plaintext now
  const before = await mountStatus()
  const running = convert('encrypt', path.join(dir, 'bulk'), ['--rate', '1']) // about 4.4 s
  let seen: Record<string, any> | undefined
  let copiesUnderneath = 0
  let plain = ''
  for (let i = 0; i < 6; i++) {
    await sleep(500)
    if (i === 1) plain = (await cli('pemfs', ['status', dir, '--config-dir', cfg])).stdout
    const st = await mountStatus()
    if (st.conversions.length > 0 && st.conversions[0].bytes > 0) seen = st.conversions[0]
    copiesUnderneath += fs.readdirSync(path.join(backing(), 'bulk')).filter(n => n.startsWith('.pemfs-convert.')).length
    const listed = await sh(`ls -a '${path.join(dir, 'bulk')}'`)
    t.notRegex(listed.stdout, /\.pemfs-convert\./, 'another process does not see the copies being made')
  }
  const r = await running
  t.is(r.code, 0, r.stderr)
  t.true(copiesUnderneath > 0, 'the copies were there underneath meanwhile')
  t.like(seen, { mode: 'encrypt', path: path.join(dir, 'bulk'), totalFiles: bulk.length, totalBytes: bulkBytes, paused: null }, JSON.stringify(seen))
  t.true(seen?.bytesPerSecond > 0 && seen?.etaSeconds > 0, 'rate and ETA')
  t.regex(plain, /running conversions[\s\S]*encrypt/, 'the plain status prints it too')
  const after = await mountStatus()
  t.deepEqual(after.conversions, [], 'ended: no longer shown')
  t.is(after.convertedFiles - before.convertedFiles, bulk.length, 'files counted once each')
  t.is(after.convertedBytes - before.convertedBytes, bulkBytes)
  const prom = await cli('pemfs', ['status', dir, '--config-dir', cfg, '--prometheus'])
  t.regex(prom.stdout, new RegExp(`pemfs_converted_files_total\\{guard="${dir}"\\} ${after.convertedFiles as number}\n`))
  t.regex(prom.stdout, /pemfs_conversions_running\{[^}]*\} 0\n/)

  // A threshold below any load the host can have: the run copies its first chunk, then waits, and says why.
  t.like(done(await convert('decrypt', path.join(dir, 'bulk'))), { converted: bulk.length, failed: 0 })
  const paused = convert('encrypt', path.join(dir, 'bulk'), ['--max-load', '0.000001'])
  let st: Record<string, any> = {}
  for (let i = 0; i < 20 && st.conversions?.[0]?.paused == null; i++) { await sleep(250); st = await mountStatus() }
  t.regex(String(st.conversions?.[0]?.paused), /host load .* is above --max-load/)
  await sleep(1500)
  const later = (await mountStatus()).conversions[0]
  t.true(later.bytes <= 1 << 20 && later.bytes < bulkBytes, `it waits (${later.bytes as number} bytes copied)`)
  t.regex((await cli('pemfs', ['status', dir, '--config-dir', cfg, '--prometheus'])).stdout, /pemfs_conversions_paused\{[^}]*\} 1\n/)
  const child = children[children.length - 1]
  child.kill('SIGKILL')
  t.is((await paused).code, null)
  const rest = await convert('encrypt', path.join(dir, 'bulk'))
  t.like(done(rest), { failed: 0, converted: bulk.length })
  t.deepEqual((await mountStatus()).conversions, [], 'a killed run is gone from the status with its connection')
})

test.serial('a run killed between the renames of a hard-linked file leaves a journal: the next run links the other names to the new file', async t => {
  // The state such a kill leaves, made underneath: `jlink` already a new inode, `jlink2` still the old one, the journal.
  const b = backing()
  fs.writeFileSync(path.join(b, 'jlink'), 'journaled\n')
  fs.linkSync(path.join(b, 'jlink'), path.join(b, 'jlink2'))
  const oldIno = fs.statSync(path.join(b, 'jlink'), { bigint: true }).ino
  fs.copyFileSync(path.join(b, 'jlink'), path.join(b, 'jlink.new'))
  fs.renameSync(path.join(b, 'jlink.new'), path.join(b, 'jlink'))
  const newIno = fs.statSync(path.join(b, 'jlink'), { bigint: true }).ino
  fs.writeFileSync(path.join(b, '.pemfs-convert.links.0123abcd'), JSON.stringify({ names: ['jlink', 'jlink2'], oldIno: String(oldIno), newIno: String(newIno) }))
  for (const rel of ['jlink', 'jlink2']) expected.set(rel, sha(Buffer.from('journaled\n')))

  const r = await convert('encrypt', dir)
  t.is(r.code, 0, r.stderr)
  t.like(done(r), { linksCompleted: 1, converted: 1, failed: 0 })
  const [one, two] = ['jlink', 'jlink2'].map(rel => fs.statSync(path.join(b, rel)))
  t.true(one.ino === two.ino && one.nlink === 2, 'one inode with both names again')
  t.true(fs.readFileSync(path.join(b, 'jlink2')).subarray(0, 4).equals(FILE_MAGIC), 'and converted once, under both')
  t.false(fs.readdirSync(b).some(n => n.startsWith('.pemfs-convert.')), 'the journal is gone')
  const sums = await mountSums(['jlink', 'jlink2'])
  t.is(sums.get('jlink2'), expected.get('jlink2'))
})

test.serial('rekey moves every file to the rotated key version (waiting for a writer through the mount); decrypt leaves plaintext underneath', async t => {
  const store = fs.readdirSync(path.join(cfg, 'embedded'))[0]
  const base = path.join(cfg, 'embedded', store)
  const info = JSON.parse(fs.readFileSync(path.join(base, 'embedded.json'), 'utf8')) as { id: string, admin: string }
  const env = { SPCTL_CONFIG: path.join(root, 'spctl.json') }
  const spctl = async (args: string[]): Promise<string> => {
    const r = await cli('spctl', ['--endpoint', `https://${info.admin}`, '--server-id', info.id, '--json', ...args], env)
    if (r.code !== 0) throw new Error(r.stderr)
    return r.stdout
  }
  await spctl(['login', '--password-file', path.join(base, 'admin-password')])
  const version = (JSON.parse(await spctl(['key', 'rotate', 'default'])) as { version: number }).version
  const versionOf = (rel: string): number => decodeHeader(fs.readFileSync(path.join(backing(), rel)).subarray(0, 4096)).keyVersion
  t.true(versionOf('one') < version)

  const writer = sh(`exec 3>>'${path.join(dir, 'sub/deep/x')}'; sleep 1.5; echo more >&3`, { timeoutMs: 20000 })
  await new Promise(resolve => setTimeout(resolve, 300))
  const r = await convert('rekey', dir, ['--wait', '15'])
  t.is(r.code, 0, r.stderr)
  t.is((await writer).code, 0)
  t.like(done(r), { failed: 0, skipped: 0 })
  expected.set('sub/deep/x', sha(Buffer.from('deep\nmore\n')))
  for (const rel of expected.keys()) if (rel !== 'empty' && rel !== 'public/readme') t.is(versionOf(rel), version, `${rel} under version ${version}`)

  const dec = await convert('decrypt', path.join(dir, 'sub'))
  t.like(done(dec), { converted: 1, failed: 0, skipped: 1 })
  t.regex(String(dec.events.find(e => e.path === 'sub/hard3')?.reason), /3 hard links, 2 of them not under/, 'a name of a file linked from outside the path is not split from the others')
  t.is(fs.readFileSync(path.join(backing(), 'sub/deep/x'), 'utf8'), 'deep\nmore\n', 'plaintext underneath')
  const sums = await mountSums([...expected.keys()])
  for (const [rel, h] of expected) t.is(sums.get(rel), h, `${rel} identical`)
})

test.serial('a path outside any pemfs mount is refused with a usage error and changes nothing', async t => {
  const r = await cli('pemfs', ['encrypt', root, '--config-dir', cfg])
  t.is(r.code, 2)
  t.regex(r.stderr, /not inside a pemfs mount.*PEM_ERR_BAD_ARGUMENT/)
  const bad = await cli('pemfs', ['encrypt', dir, '--config-dir', cfg, '--rate', 'fast'])
  t.is(bad.code, 2)
  t.regex(bad.stderr, /--rate/)
})

test.serial('starting a conversion is the policy\'s admin-level action `convert`: a rule can refuse it, and then nothing is touched', async t => {
  const b = backing()
  fs.writeFileSync(path.join(b, 'public', 'new-plain'), 'left as it is\n') // plaintext: encrypt would take it
  const r = await cli('pemfs', ['encrypt', path.join(dir, 'public'), '--config-dir', cfg])
  t.not(r.code, 0)
  t.regex(r.stderr, /refused the conversion: convert \/public: denied by no-convert-public.*PEM_ERR_POLICY_DENY/)
  t.is(fs.readFileSync(path.join(b, 'public', 'new-plain'), 'utf8'), 'left as it is\n')
  const other = await convert('encrypt', path.join(dir, 'sub'))
  t.is(other.code, 0, 'elsewhere root is permitted by convert-as-root')
  const info = JSON.parse(fs.readFileSync(path.join(cfg, 'embedded', fs.readdirSync(path.join(cfg, 'embedded'))[0], 'embedded.json'), 'utf8')) as { id: string, admin: string }
  const tail = await cli('spctl', ['--endpoint', `https://${info.admin}`, '--server-id', info.id, '--json', 'audit', 'tail', '-n', '200', '--rule', 'no-convert-public'], { SPCTL_CONFIG: path.join(root, 'spctl.json') })
  t.is(tail.code, 0, tail.stderr)
  t.regex(tail.stdout, /"action":"convert"/, 'the refusal is in the audit log')
})

test.serial('pemfs\'s own names are hidden natively: not listed, not found, not created, linked, renamed or removed through the mount, by root or anyone', async t => {
  const b = backing()
  fs.writeFileSync(path.join(b, '.pemfs-convert.0badf00d.one'), 'a leftover\n')
  fs.mkdirSync(path.join(dir, 'mine'))
  fs.chownSync(path.join(dir, 'mine'), 4321, 4321)
  fs.writeFileSync(path.join(b, 'mine', '.pemfs-convert.0badf00d.x'), 'x\n')
  for (const who of ['', 'setpriv --reuid 4321 --regid 4321 --clear-groups ']) {
    const listed = await sh(`${who}ls -a '${dir}' '${path.join(dir, 'mine')}'`)
    t.is(listed.code, 0, listed.stderr)
    t.notRegex(listed.stdout, /\.pemfs-(convert|embedded)/, `${who || 'root'}: not listed`)
    t.regex(listed.stdout, /\bone\b/)
    for (const name of ['.pemfs-embedded', '.pemfs-convert.0badf00d.one', 'mine/.pemfs-convert.0badf00d.x']) {
      const r = await sh(`${who}stat '${path.join(dir, name)}'`)
      t.regex(r.stderr, /No such file/, `${who || 'root'}: ${name} is not found`)
    }
    const m = path.join(dir, 'mine')
    const tries: Array<[string, RegExp]> = [
      [`touch '${m}/.pemfs-convert.12345678.new'`, /Permission denied/],
      [`mkdir '${m}/.pemfs-convert.12345678.d'`, /Permission denied/],
      [`ln -s one '${m}/.pemfs-convert.12345678.s'`, /Permission denied/],
      [`mv '${m}/.pemfs-convert.0badf00d.x' '${m}/taken'`, /No such file/],
      [`rm '${m}/.pemfs-convert.0badf00d.x'`, /No such file/]
    ]
    if (who === '') tries.push([`ln '${path.join(dir, 'one')}' '${dir}/.pemfs-convert.12345678.l'`, /Permission denied/], [`echo x > '${dir}/.pemfs-embedded.tmp'`, /Permission denied/])
    for (const [cmd, why] of tries) {
      const r = await sh(`${who}sh -c "${cmd.replace(/"/g, '\\"')}"`)
      t.not(r.code, 0, `${who || 'root'}: ${cmd} must fail`)
      t.regex(r.stderr, why, `${who || 'root'}: ${cmd}`)
    }
    const control = await sh(`${who}sh -c "touch '${m}/ordinary' && rm '${m}/ordinary'"`)
    t.is(control.code, 0, `an ordinary name in the same directory works: ${control.stderr}`)
  }
  t.deepEqual(fs.readdirSync(path.join(b, 'mine')), ['.pemfs-convert.0badf00d.x'], 'nothing was made or removed underneath')
  t.true(fs.existsSync(path.join(b, '.pemfs-embedded')), 'the store file is there underneath')
  t.false(fs.readdirSync(b).some(n => n.startsWith('.pemfs-convert.1')))
})
