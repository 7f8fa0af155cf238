// A racing symlink swapper in the backing tree (issue 15, finding 5; CHECKLIST I.33): with `--backing` on storage a
// local user can write, a directory swapped for a symlink to outside the backing root, back and forth, while root
// creates, writes, reads, lists and removes through the mount. pemfs reaches backing files only through O_PATH fds
// and *at calls relative to its parent's fd (O_NOFOLLOW, O_EXCL on create), so it never resolves a path and never
// leaves the root: nothing it does lands in, or reads from, the directory the symlink points at.
import test from 'ava'
import fs from 'node:fs'
import path from 'node:path'
import { clusterWithHost, mountOrThrow, sh, tearDown, tempDir, type Cluster } from '../helpers/mounts'

let c: Cluster
let root: string

// The link is relative: read in the backing tree (ROOT/<kind>/back/u/d) it reaches ROOT/<kind>/outside; read at the
// mount (ROOT/<kind>/m/view/u/d) it reaches ROOT/<kind>/m/outside, which does not exist. So a file of `outside` can
// only be reached, or made, by a process that resolved the backing path itself: the kernel's own resolution of the
// link at the mount (which is the caller's, as on any file system) finds nothing.
const LINK = '../../outside'

const policy = (): string => `format: 1
ttl: 500ms
keys: [k1]
guards:
  ${path.join(root, 'bypass', 'm', 'view')}:
    rules: [{ id: byp, effect: permit }]
  ${path.join(root, 'encrypted', 'm', 'view')}:
    rules: [{ id: enc, effect: apply_key(k1) }]
`

test.before(async () => {
  root = tempDir('backing-race')
  for (const kind of ['bypass', 'encrypted']) {
    const k = path.join(root, kind)
    for (const d of ['back/u/d', 'outside', 'm/view']) fs.mkdirSync(path.join(k, d), { recursive: true })
    fs.writeFileSync(path.join(k, 'outside', 'secret'), 'OUTSIDE\n')
    fs.symlinkSync(LINK, path.join(k, 'back/u/link'))
    fs.chmodSync(path.join(k, 'back/u'), 0o777) // a directory "a local user can write": the swapper's
  }
  c = await clusterWithHost('pemfs-backing-race', policy)
  for (const kind of ['bypass', 'encrypted']) await mountOrThrow(c, path.join(root, kind, 'm/view'), ['--backing', path.join(root, kind, 'back')])
})

test.after.always(async () => { await tearDown(c) })

// Swaps u/d with the link (renameat2 RENAME_EXCHANGE: the name always exists, a directory half of the time) until
// the caller is done; the caller works as root through the mount for at least `secs` and until one of its reads
// saw a file it made (the kernel keeps what a lookup found for the entry timeout, 1 s, so that can take a few
// seconds), at most 20 s. Prints how many steps it made and every distinct thing a read returned.
const RACE = String.raw`
import ctypes, errno, os, sys, time
back, view, secs = sys.argv[1], sys.argv[2], float(sys.argv[3])
libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD, RENAME_EXCHANGE = -100, 2
start = time.monotonic()
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(w)
    os.set_blocking(r, False)
    u = os.path.join(back, 'u')
    a, b = os.path.join(u, 'd').encode(), os.path.join(u, 'link').encode()
    while True:
        libc.renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE)
        try:
            if os.read(r, 1) == b'': break
        except BlockingIOError: pass
    os._exit(0)
os.close(r)
steps, seen = 0, set()
d = os.path.join(view, 'u', 'd')
while (time.monotonic() - start < secs or "inside\n" not in seen) and time.monotonic() - start < 20:
    n = 'f%d' % (steps % 7)
    for op in ('create', 'read', 'secret', 'list', 'mkdir', 'unlink'):
        try:
            if op == 'create':
                with open(os.path.join(d, n), 'w') as f: f.write('inside\n')
            elif op == 'read':
                with open(os.path.join(d, n)) as f: seen.add(f.read())
            elif op == 'secret':
                with open(os.path.join(d, 'secret')) as f: seen.add(f.read())
            elif op == 'list':
                seen.update('name:' + x for x in os.listdir(d) if x == 'secret')
            elif op == 'mkdir':
                os.mkdir(os.path.join(d, 'sub' + n))
            else:
                os.unlink(os.path.join(d, n))
        except OSError as e:
            if e.errno not in (errno.ENOENT, errno.ENOTDIR, errno.EEXIST, errno.ESTALE, errno.ELOOP): raise
        steps += 1
os.close(w)
os.waitpid(pid, 0)
print(steps)
for s in sorted(seen): print(repr(s))
`

for (const kind of ['bypass', 'encrypted'] as const) {
  test.serial(`${kind}: a directory swapped for a symlink to outside the backing root, while root works through the mount: nothing outside is read or made`, async t => {
    const k = path.join(root, kind)
    const r = await sh(`python3 -c '${RACE.replace(/'/g, "'\\''")}' '${path.join(k, 'back')}' '${path.join(k, 'm/view')}' 3`, { timeoutMs: 40000 })
    t.is(r.code, 0, r.stderr)
    const [steps, ...seen] = r.stdout.trim().split('\n')
    t.true(Number(steps) > 50, `the caller made ${steps} steps`)
    t.deepEqual(seen.filter(s => s !== "'inside\\n'"), [], 'every read gave what was written through the mount')
    t.deepEqual(fs.readdirSync(path.join(k, 'outside')), ['secret'], 'nothing was made outside the backing root')
    t.is(fs.readFileSync(path.join(k, 'outside', 'secret'), 'utf8'), 'OUTSIDE\n')
    t.false(fs.existsSync(path.join(k, 'm', 'outside')), 'the link, read at the mount, reaches nothing')
    t.true(seen.includes("'inside\\n'"), 'reads through the mount saw the files it made')
  })
}
