// Unix permissions and POSIX behaviour through real mounts, side by side with a plain directory of the same backing
// file system: the same operations as root and as two unprivileged users (setpriv, in separate processes) must give
// the same errno and the same mode/owner/size on a bypass mount and on an encrypted mount as on the plain directory;
// then the policy on top: a deny refuses even root where the mode bits would allow, and the audit names what refused.
import test from 'ava'
import { execFile } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { ROOT } from '../../scripts/procs'
import { runFiles } from '../../lib/pem-fs/daemon'
import { FILE_MAGIC } from '../../lib/wire/file-format'
import { clusterWithHost, mountOrThrow, tearDown, tempDir, type Cluster } from '../helpers/mounts'

const OP = path.join(ROOT, 'test', 'helpers', 'posix-op.py')
type Who = 'root' | 'a' | 'b'
// a: uid 2001, also in group 3000 (the team); b: uid 2002, in no shared group. Neither needs a passwd entry.
const AS: Record<Who, string[]> = {
  root: [],
  a: ['setpriv', '--reuid=2001', '--regid=2001', '--groups=2001,3000'],
  b: ['setpriv', '--reuid=2002', '--regid=2002', '--groups=2002']
}
type Step = [Who, string, ...string[]]
type Result = Record<string, unknown>

async function runStep (root: string, [who, op, ...args]: Step): Promise<Result> {
  const argv = [...AS[who], '/usr/bin/python3', OP, root, op, ...args]
  return await new Promise(resolve => {
    execFile(argv[0], argv.slice(1), { timeout: 15000 }, (err, stdout, stderr) => {
      try { resolve(JSON.parse(stdout) as Result) } catch { resolve({ crashed: `${String(err?.message)} ${stderr}` }) }
    })
  })
}

const long = (c: string, n: number): string => c.repeat(n)
// The longest path a mount serves is 4,095 bytes below its root (PATH_MAX less its NUL). The suite works in t/, so
// 16 directories of 254 bytes and a short name make a path of 4,093 bytes from t/ (4,095 from the mount), and three
// bytes more make one of 4,096, which no caller can pass at all (ENAMETOOLONG everywhere).
const DEEP = Array.from({ length: 16 }, (_, i) => long(String.fromCharCode(97 + i), 254))
const deepDirs = DEEP.map((_, i) => DEEP.slice(0, i + 1).join('/'))
const deepFile = `${deepDirs[15]}/${long('z', 4093 - deepDirs[15].length - 1)}`

const STEPS: Step[] = [
  // issue 14's exploit: root's 0600 file is neither readable, appendable nor re-moded by another user
  ['root', 'write', 'f', 'secret\n'], ['root', 'chmod', 'f', '600'],
  ['a', 'read', 'f'], ['a', 'append', 'f', 'pwned\n'], ['a', 'chmod', 'f', '777'], ['a', 'chown', 'f', '2001', '-1'],
  ['a', 'truncate', 'f', '0'], ['a', 'utime-now', 'f'], ['a', 'utime-set', 'f', '1000000'], ['a', 'access', 'f', 'r'],
  ['root', 'read', 'f'], ['root', 'access', 'f', 'rw'], ['root', 'chmod', 'f', '644'],
  ['a', 'read', 'f'], ['a', 'overwrite', 'f', 'x'], ['a', 'access', 'f', 'r'], ['a', 'access', 'f', 'w'], ['a', 'stat', 'f'],
  // a shared directory, then sticky
  ['root', 'mkdir', 'pub', '777'], ['root', 'chmod', 'pub', '777'], ['a', 'create', 'pub/a1', '666'],
  ['a', 'write', 'pub/a1', 'from a\n'], ['b', 'unlink', 'pub/a1'], ['root', 'chmod', 'pub', '1777'],
  ['a', 'create', 'pub/a2', '600'], ['b', 'unlink', 'pub/a2'], ['b', 'rename', 'pub/a2', 'pub/b2'],
  ['b', 'create', 'pub/b1', '644'], ['a', 'rename', 'pub/a2', 'pub/b1'], ['root', 'unlink', 'pub/b1'],
  ['a', 'rename', 'pub/a2', 'pub/a3'], ['b', 'mkdir', 'pub/bd', '777'], ['a', 'rmdir', 'pub/bd'], ['a', 'ls', 'pub'],
  // a setgid directory of group 3000: a is a member, b is not
  ['root', 'mkdir', 'team', '775'], ['root', 'chown', 'team', '0', '3000'], ['root', 'chmod', 'team', '2775'],
  ['a', 'create', 'team/doc', '664'], ['a', 'mkdir', 'team/sub', '775'], ['a', 'create', 'team/sub/deeper', '600'],
  ['b', 'create', 'team/nope', '644'], ['a', 'create', 'team/sgid', '644'], ['a', 'chmod', 'team/sgid', '2755'],
  ['b', 'read', 'team/doc'], ['b', 'overwrite', 'team/doc', 'no'],
  // chown: the owner only to a group it is in; root anything
  ['a', 'create', 'pub/mine', '644'], ['a', 'chown', 'pub/mine', '-1', '3000'], ['a', 'chown', 'pub/mine', '-1', '2002'],
  ['a', 'chown', 'pub/mine', '2002', '-1'], ['b', 'chown', 'pub/mine', '-1', '2002'], ['root', 'chown', 'pub/mine', '2002', '2002'],
  ['b', 'chmod', 'pub/mine', '2600'], ['b', 'stat', 'pub/mine'],
  // set-id bits: cleared by a write and by chown, as ext4 clears them
  ['a', 'create', 'pub/tool', '755'], ['a', 'chmod', 'pub/tool', '6755'], ['a', 'stat', 'pub/tool'],
  ['a', 'append', 'pub/tool', 'x'], ['a', 'stat', 'pub/tool'], ['a', 'chmod', 'pub/tool', '6755'],
  ['root', 'chown', 'pub/tool', '2001', '2001'], ['root', 'stat', 'pub/tool'],
  // ... by a truncate and an O_TRUNC open of a caller without CAP_FSETID (the daemon clears them: killpriv.h), by
  // another user's write; setgid without group-execute only for a writer outside the file's group; root keeps them
  ['a', 'chmod', 'pub/tool', '6777'], ['a', 'truncate', 'pub/tool', '1'], ['a', 'stat', 'pub/tool'],
  ['a', 'chmod', 'pub/tool', '6777'], ['a', 'overwrite', 'pub/tool', 'y'], ['a', 'stat', 'pub/tool'],
  ['a', 'chmod', 'pub/tool', '6777'], ['b', 'append', 'pub/tool', 'b'], ['b', 'stat', 'pub/tool'],
  ['a', 'chmod', 'pub/tool', '2766'], ['a', 'append', 'pub/tool', 'a'], ['a', 'stat', 'pub/tool'],
  ['b', 'append', 'pub/tool', 'b'], ['b', 'stat', 'pub/tool'],
  ['a', 'chmod', 'pub/tool', '6777'], ['root', 'append', 'pub/tool', 'r'], ['root', 'truncate', 'pub/tool', '2'],
  ['root', 'stat', 'pub/tool'],
  // search permission on the way
  ['root', 'mkdir', 'closed', '700'], ['root', 'write', 'closed/in', 'x'], ['a', 'stat', 'closed/in'],
  ['a', 'chmod', 'closed/in', '777'], ['a', 'read', 'closed/in'], ['a', 'ls', 'closed'], ['a', 'access', 'closed', 'x'],
  ['root', 'chmod', 'closed', '711'], ['a', 'stat', 'closed/in'], ['a', 'ls', 'closed'],
  // FIFOs, sockets, device nodes (root only)
  ['a', 'mknod', 'pub/fifo', 'fifo', '644'], ['a', 'mknod', 'pub/sock', 'sock', '600'], ['a', 'mknod', 'pub/dev', 'chr', '600'],
  ['root', 'mknod', 'dev0', 'chr', '600'], ['root', 'mknod', 'pub/reg', 'reg', '640'], ['a', 'unlink', 'pub/fifo'],
  // extended attributes
  ['a', 'setxattr', 'pub/a3', 'user.color', 'blue'], ['a', 'getxattr', 'pub/a3', 'user.color'], ['a', 'listxattr', 'pub/a3'],
  ['b', 'getxattr', 'pub/a3', 'user.color'], ['a', 'chmod', 'pub/a3', '644'], ['b', 'getxattr', 'pub/a3', 'user.color'],
  ['b', 'setxattr', 'pub/a3', 'user.x', '1'], ['a', 'setxattr', 'pub/a3', 'trusted.x', '1'], ['root', 'setxattr', 'pub/a3', 'trusted.x', '1'],
  ['a', 'removexattr', 'pub/a3', 'user.color'], ['a', 'getxattr', 'pub/a3', 'user.color'], ['a', 'removexattr', 'pub/a3', 'user.none'],
  ['a', 'setxattr', 'team', 'user.x', '1'], ['root', 'setxattr', 'team', 'user.x', '1'], ['b', 'listxattr', 'team'],
  // names of 255 bytes, paths of 4,095
  ['a', 'create', `pub/${long('n', 255)}`, '644'], ['a', 'create', `pub/${long('n', 256)}`, '644'],
  ...deepDirs.map((d): Step => ['root', 'mkdir', d, '755']),
  ['root', 'write', deepFile, 'deep'], ['a', 'read', deepFile], ['a', 'stat', deepFile], ['root', 'create', `${deepFile}qqq`, '644'],
  // timestamps, st_blocks, sizes and link counts through every path, holes, truncation across blocks
  ['a', 'times', 'pub/tm'], ['b', 'times', 'pub/tm'], ['a', 'blocks', 'pub/sp'],
  ['a', 'write', 'pub/sz', 'hello'], ['a', 'fstat-sequence', 'pub/sz'], ['a', 'link', 'pub/sz', 'pub/sz2'], ['a', 'stat', 'pub/sz2'],
  ['a', 'truncate', 'pub/sz', '8193'], ['a', 'stat', 'pub/sz2'], ['a', 'truncate', 'pub/sz2', '4095'], ['a', 'stat', 'pub/sz'],
  ['a', 'truncate', 'pub/sz', '0'], ['a', 'stat', 'pub/sz2'], ['a', 'symlink', 'sz', 'pub/ln'], ['a', 'read', 'pub/ln'],
  ['b', 'unlink', 'pub/ln'], ['a', 'rmdir', 'pub'], ['a', 'unlink', 'pub'], ['a', 'rename', 'pub/sz', 'pub/sz2'], ['a', 'stat', 'pub/sz2']
]

const label = (s: Step): string => s.map(x => x.length > 40 ? `${x.slice(0, 12)}…(${x.length})` : x).join(' ')

let c: Cluster
let plain: string
let bypass: string
let crypt: string
type Target = 'plain' | 'bypass' | 'crypt'
/** The suite's results on each target; the three runs go at once (each in its own directory, step after step). */
let runs: Record<Target, Promise<Result[]>> | undefined

async function runAll (root: string): Promise<Result[]> {
  const out: Result[] = []
  for (const s of STEPS) out.push(await runStep(root, s))
  return out
}

const policy = (b: string, e: string): string => `format: 1
ttl: 2s
keys: [k1]
guards:
${[b, e].map(g => `  ${g}:
    rules:
      - id: ${g === e ? 'enc' : 'byp'}-vault-closed
        resources: { dirs: [/vault] }
        effect: deny
        audit: true
      - id: ${g === e ? 'enc' : 'byp'}-staff
        users: { uids: [0, 2001] }
        effect: ${g === e ? 'apply_key(k1)' : 'permit'}
      - id: ${g === e ? 'enc' : 'byp'}-suite
        resources: { dirs: [/t] }
        effect: ${g === e ? 'apply_key(k1)' : 'permit'}
      - id: ${g === e ? 'enc' : 'byp'}-metadata
        actions: metadata
        effect: permit`).join('\n')}
`

function guardDir (parent: string, name: string): string {
  const d = path.join(parent, name)
  fs.mkdirSync(path.join(d, 't'), { recursive: true })
  fs.mkdirSync(path.join(d, 'vault'))
  fs.writeFileSync(path.join(d, 'vault', 'v.txt'), 'vault\n')
  fs.mkdirSync(path.join(d, 'private'))
  fs.writeFileSync(path.join(d, 'private', 'p.txt'), 'private\n', { mode: 0o644 })
  for (const x of [d, path.join(d, 't'), path.join(d, 'vault'), path.join(d, 'private')]) fs.chmodSync(x, 0o755)
  return d
}

test.before(async () => {
  const root = tempDir('posix')
  fs.chmodSync(root, 0o755) // the unprivileged users must reach every target
  plain = path.join(root, 'plain', 't')
  fs.mkdirSync(plain, { recursive: true })
  fs.chmodSync(path.dirname(plain), 0o755); fs.chmodSync(plain, 0o755)
  bypass = guardDir(root, 'bypass')
  crypt = guardDir(root, 'crypt')
  c = await clusterWithHost('pemfs-posix', () => policy(bypass, crypt))
  await mountOrThrow(c, bypass)
  await mountOrThrow(c, crypt)
})

test.after.always(async () => { await tearDown(c) })

const compare = test.macro(async (t, target: Exclude<Target, 'plain'>) => {
  t.timeout(240000) // the three runs share the machine: about 450 processes as three users
  runs ??= { plain: runAll(plain), bypass: runAll(path.join(bypass, 't')), crypt: runAll(path.join(crypt, 't')) }
  const want = await runs.plain
  t.true(want.every(r => r.crashed === undefined), 'the plain directory run itself works')
  t.true(want.some(r => r.errno !== undefined) && want.some(r => r.ok === true), 'the suite has refusals and successes')
  const got = await runs[target]
  const diffs = STEPS.map((s, i) => ({ s, want: want[i], got: got[i] }))
    .filter(d => JSON.stringify(d.want) !== JSON.stringify(d.got))
    .map(d => `${label(d.s)}\n    plain: ${JSON.stringify(d.want)}\n    pemfs: ${JSON.stringify(d.got)}`)
  t.deepEqual(diffs, [], `steps that differ from the plain directory:\n${diffs.join('\n')}`)
  // The exploit of issue 14, spelled out: refused through pemfs as on the plain directory.
  t.is(got[2].errno, 'EACCES', 'another user cannot read root\'s 0600 file')
  t.is(got[3].errno, 'EACCES', 'another user cannot append to it')
  t.is(got[4].errno, 'EPERM', 'another user cannot chmod it')
})

test.serial('bypass mount: every step gives what the plain directory gives (errno, mode, owner, size)', compare, 'bypass')
test.serial('encrypted mount: every step gives what the plain directory gives (errno, mode, owner, size)', compare, 'crypt')

test.serial('encrypted mount: the suite\'s files are ciphertext underneath, the bypass mount\'s are not', async t => {
  // The mount daemon holds the backing directory open (lib/pem-fs/mount.ts, opened before the mount covered it):
  // /proc/PID/fd/N of that fd reaches the bytes underneath the mount without going through it.
  const under = (dir: string, p: string): Buffer => {
    const pid = fs.readFileSync(runFiles(c.hostDir, dir).pid, 'utf8').trim()
    const fds = path.join('/proc', pid, 'fd')
    const backing = fs.readdirSync(fds).find(n => { try { return fs.readlinkSync(path.join(fds, n)) === dir } catch { return false } })
    if (backing === undefined) throw new Error(`pemfs pid ${pid} holds no fd of ${dir}`)
    return fs.readFileSync(path.join(fds, backing, 't', p))
  }
    const enc = under(crypt, 'f')
  t.true(enc.subarray(0, 4).equals(FILE_MAGIC), 'encrypted file header underneath')
  t.false(enc.includes('secret'), 'no plaintext underneath')
  t.is(under(bypass, 'f').toString(), 'secret\n')
})

test.serial('the policy on top: a deny refuses even root where the mode bits allow, and the audit names the rule', async t => {
  for (const dir of [bypass, crypt]) {
    const root = await runStep(dir, ['root', 'read', 'vault/v.txt'])
    t.is(root.errno, 'EACCES', `${dir}: root is refused by the deny rule`)
    const w = await runStep(dir, ['root', 'write', 'vault/new', 'x'])
    t.is(w.errno, 'EACCES')
    // no rule matches b reading /private (staff and suite do not cover it): refused although the mode is 0644
    const b = await runStep(dir, ['b', 'read', 'private/p.txt'])
    t.is(b.errno, 'EACCES', `${dir}: no matching rule denies`)
    const a = await runStep(dir, ['a', 'read', 'private/p.txt'])
    t.true(a.ok, `${dir}: staff may read: ${JSON.stringify(a)}`)
  }
  const audit = await c.spctl(['--json', 'audit', 'tail', '-n', '1000'])
  t.is(audit.code, 0, audit.stderr)
  const denied = audit.stdout.trim().split('\n').map(l => JSON.parse(l) as Record<string, unknown>).filter(r => r.effect === 'deny')
  t.true(denied.some(r => String(r.rule).endsWith('-vault-closed') && String(r.path).startsWith('/vault')), 'the deny rule is named')
  t.true(denied.some(r => (r.rule === null || r.rule === undefined) && r.path === '/private/p.txt'), 'a refusal with no matching rule names none')
})
