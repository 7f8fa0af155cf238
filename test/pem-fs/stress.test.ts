// Random operations from two processes at once on a bypass and an encrypted mount (test/helpers/fs-stress.py:
// writes, truncation, renames, links, xattrs, fallocate, copy_file_range, flock, ... on colliding names), bounded in
// time: the daemon keeps serving (no ENOTCONN/ECONNABORTED, no EIO), and afterwards what the mount shows agrees with
// what is underneath — for bypass byte for byte, for encrypted every file reads whole at the size it reports.
import test from 'ava'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { clusterWithHost, isMounted, mountOrThrow, sh, tearDown, tempDir, type Cluster } from '../helpers/mounts'

const STRESS = path.resolve(__dirname, '../../../test/helpers/fs-stress.py') // from dist/test/pem-fs
const SECONDS = 4

let c: Cluster
let byp: string
let back: string // byp's backing directory (--backing), read directly to compare
let enc: string

test.before(async () => {
  const root = tempDir('stress')
  byp = path.join(root, 'byp'); back = path.join(root, 'byp-back'); enc = path.join(root, 'enc')
  for (const d of [byp, back, enc]) fs.mkdirSync(d)
  c = await clusterWithHost('pemfs-stress', () => `format: 1
ttl: 2s
keys: [k1]
guards:
  ${byp}:
    rules: [{ id: byp, effect: permit }]
  ${enc}:
    rules: [{ id: enc, effect: apply_key(k1) }]
`)
  await mountOrThrow(c, byp, ['--backing', back])
  await mountOrThrow(c, enc)
})

test.after.always(async () => { await tearDown(c) })

/** Every entry under dir (lstat, no following): relative path → 'dir' | 'link:TARGET' | sha256 of the bytes. */
function tree (dir: string, read: (p: string) => Buffer): Map<string, string> {
  const out = new Map<string, string>()
  const walk = (rel: string): void => {
    for (const name of fs.readdirSync(path.join(dir, rel)).sort()) {
      const r = path.join(rel, name)
      const st = fs.lstatSync(path.join(dir, r))
      if (st.isDirectory()) { out.set(r, 'dir'); walk(r) } else if (st.isSymbolicLink()) out.set(r, `link:${fs.readlinkSync(path.join(dir, r))}`)
      else out.set(r, crypto.createHash('sha256').update(read(path.join(dir, r))).digest('hex'))
    }
  }
  walk('')
  return out
}

for (const kind of ['bypass', 'encrypted'] as const) {
  test.serial(`${kind}: two processes of random operations for ${SECONDS} s: the mount keeps serving and agrees with the disk`, async t => {
    const dir = kind === 'bypass' ? byp : enc
    const seeds = [crypto.randomInt(1e9), crypto.randomInt(1e9)] // new ones each run; a failure names them
    const runs = await Promise.all(seeds.map(async seed => await sh(`python3 '${STRESS}' '${dir}' ${SECONDS} ${seed}`, { timeoutMs: 60000 })))
    for (const r of runs) {
      t.is(r.code, 0, `seeds ${seeds.join(', ')}: ${r.stdout}${r.stderr}`)
      t.true(Number(r.stdout.trim()) > 100, `operations made: ${r.stdout.trim()}`)
    }
    t.true(isMounted(dir), 'still mounted')
    // Through the mount, each file reads whole at the size stat reports (the read is through another process, as
    // a mount must never be touched synchronously from the process that serves it — here that is pemfs, not us).
    const check = await sh(`python3 -c "
import os, sys
bad = []
for top, dirs, files in os.walk(sys.argv[1]):
    for f in files:
        p = os.path.join(top, f)
        if os.path.islink(p): continue
        with open(p, 'rb') as h: data = h.read()
        if len(data) != os.stat(p).st_size: bad.append((p, len(data), os.stat(p).st_size))
print(bad)
" '${dir}'`, { timeoutMs: 30000 })
    t.is(check.code, 0, check.stderr)
    t.is(check.stdout.trim(), '[]', 'every file reads whole at its size')
    if (kind === 'bypass') {
      // The mount shows the backing directory as it is (read here directly: it is not under the mount).
      const through = await sh(`cd '${dir}' && find . -mindepth 1 \\( -type l -printf '%p link:%l\\n' \\) -o \\( -type d -printf '%p dir\\n' \\) -o \\( -type f -exec sha256sum {} + \\) | sort`, { timeoutMs: 30000 })
      t.is(through.code, 0, through.stderr)
      const seen = new Map(through.stdout.trim().split('\n').filter(l => l !== '').map(l => {
        const m = /^([0-9a-f]{64}) {2}\.\/(.*)$/.exec(l)
        if (m !== null) return [m[2], m[1]]
        const [p, what] = l.split(' ')
        return [p.replace(/^\.\//, ''), what]
      }))
      const sorted = (m: Map<string, string>): string[] => [...m].map(([p, what]) => `${p} ${what}`).sort()
      t.deepEqual(sorted(seen), sorted(tree(back, p => fs.readFileSync(p))), 'the mount and the directory underneath agree')
    }
  })
}
