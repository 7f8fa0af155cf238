// Reaching a denied file by another name or an older handle (CHECKLIST I.36), on real mounts: a hard link or rename
// out of a denied directory, a symlink into it, a bind mount of the guard point, O_PATH and a re-open through
// /proc/self/fd, and a descriptor (read, mmap) opened before a deny rule — each decided as docs/PEMFS.md says.
import test from 'ava'
import fs from 'node:fs'
import path from 'node:path'
import { applyPolicy, clusterWithHost, mountOrThrow, sh, tearDown, tempDir, type Cluster } from '../helpers/mounts'

let c: Cluster
let byp: string
let enc: string
let bind: string | undefined

const policy = (later: boolean): string => `format: 1
ttl: 500ms
keys: [k1]
guards:
${[['byp', 'permit'], ['enc', 'apply_key(k1)']].map(([g, effect]) => `  ${g === 'byp' ? byp : enc}:
    rules:
      - id: ${g}-secret
        resources: { dirs: [/secret] }
        effect: deny
${later ? `      - id: ${g}-later
        resources: { dirs: [/later] }
        effect: deny
` : ''}      - id: ${g}-rest
        effect: ${effect}`).join('\n')}
`

test.before(async () => {
  const root = tempDir('names')
  byp = path.join(root, 'byp'); enc = path.join(root, 'enc')
  for (const d of [byp, enc]) {
    for (const sub of ['secret', 'pub', 'later']) fs.mkdirSync(path.join(d, sub), { recursive: true })
    fs.writeFileSync(path.join(d, 'secret', 'x'), 'secret\n')
  }
  c = await clusterWithHost('pemfs-names', () => policy(false))
  await mountOrThrow(c, byp)
  await mountOrThrow(c, enc)
  // Files the later tests read through old handles: 2 MiB, written through the mounts (encrypted under enc).
  for (const d of [byp, enc]) {
    const r = await sh(`head -c 2097152 /dev/urandom > '${d}/later/f' && head -c 4 '${d}/later/f' > /dev/null`)
    if (r.code !== 0) throw new Error(r.stderr)
  }
})

test.after.always(async () => {
  if (bind !== undefined) await sh(`umount '${bind}' || umount -l '${bind}'`, { timeoutMs: 5000 })
  await tearDown(c)
})

for (const kind of ['bypass', 'encrypted'] as const) {
  const dir = (): string => kind === 'bypass' ? byp : enc
  test.serial(`${kind}: a hard link or a rename out of a denied directory is refused; a symlink into it reads as the target`, async t => {
    const d = dir()
    t.regex((await sh(`ln '${d}/secret/x' '${d}/pub/x'`)).stderr, /Permission denied/)
    t.regex((await sh(`mv '${d}/secret/x' '${d}/pub/x'`)).stderr, /Permission denied/)
    t.is((await sh(`echo y > '${d}/pub/y' && ln -s ../secret/x '${d}/pub/rel' && ln -s '${d}/secret/x' '${d}/pub/abs'`)).code, 0)
    t.regex((await sh(`mv '${d}/pub/y' '${d}/secret/y'`)).stderr, /Permission denied/, 'nor into it')
    for (const l of ['rel', 'abs']) {
      const r = await sh(`cat '${d}/pub/${l}'`)
      t.not(r.code, 0); t.regex(r.stderr, /Permission denied/, `${l}: decided as the target's path`)
    }
    t.is((await sh(`cat '${d}/pub/y'`)).stdout, 'y\n')
  })

  test.serial(`${kind}: O_PATH cannot reach a denied file, and a re-open through /proc/self/fd is decided again`, async t => {
    const d = dir()
    const r = await sh(`python3 -c "
import os, sys
try:
    os.open(sys.argv[1] + '/secret/x', os.O_PATH); print('opath-ok')
except OSError as e: print('opath', e.errno)
fd = os.open(sys.argv[1] + '/pub/y', os.O_PATH)
print(open('/proc/self/fd/%d' % fd).read().strip())
try:
    os.open(sys.argv[1] + '/secret', os.O_PATH); print('opath-dir-ok')
except OSError as e: print('opath-dir', e.errno)
" '${d}'`)
    t.is(r.stdout, 'opath 13\ny\nopath-dir 13\n', r.stderr)
  })
}

test.serial('a bind mount of the guard point is the same mount: denied paths stay denied through it', async t => {
  bind = path.join(tempDir('bind'), 'view')
  fs.mkdirSync(bind)
  const m = await sh(`mount --bind '${byp}' '${bind}'`)
  t.is(m.code, 0, m.stderr)
  const r = await sh(`cat '${bind}/secret/x'`)
  t.not(r.code, 0); t.regex(r.stderr, /Permission denied/)
  t.is((await sh(`cat '${bind}/pub/y'`)).stdout, 'y\n')
  await sh(`umount '${bind}'`, { timeoutMs: 5000 })
  bind = undefined
})

test.serial('a descriptor opened before a deny rule: bypass keeps its open\'s decision (fd and mmap), encrypted decides again when its grant ends', async t => {
  // Each reader opens later/f, reads 4 KiB at 512 KiB (not from the start: no readahead), waits 6 s (the new policy
  // lands meanwhile; the grant of the open lives ttl + 2 s = 2.5 s), then reads at 0 through the same descriptor and
  // at 1.5 MiB through an mmap of it (neither cached yet). An encrypted page the handle may no longer open is a
  // SIGBUS for the mapping, as for any read error of a mapped file.
  // The reader tells it has opened by creating a marker file outside the mounts.
  const marks = tempDir('names-marks')
  const reader = (d: string, mark: string): Promise<{ stdout: string, stderr: string }> => sh(`python3 -c "
import mmap, os, sys, time
fd = os.open(sys.argv[1] + '/later/f', os.O_RDONLY)
first = len(os.pread(fd, 4096, 1 << 19))
m = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
open(sys.argv[2], 'w').close()
time.sleep(6)
try:
    again = 'read %d' % len(os.pread(fd, 4096, 0))
except OSError as e: again = 'read errno %d' % e.errno
print(first, again)
sys.stdout.flush()
print('mmap', len(m[1572864:1572864 + 4096]))
" '${d}' '${mark}'`, { timeoutMs: 30000 })
  const readers = [reader(byp, path.join(marks, 'b')), reader(enc, path.join(marks, 'e'))]
  for (let i = 0; i < 200 && !(fs.existsSync(path.join(marks, 'b')) && fs.existsSync(path.join(marks, 'e'))); i++) await new Promise(resolve => setTimeout(resolve, 50))
  await applyPolicy(c, policy(true))
  const [b, e] = await Promise.all(readers)
  t.is(b.stdout, '4096 read 4096\nmmap 4096\n', `bypass: ${b.stderr}`)
  t.is(e.stdout, '4096 read errno 13\n', `encrypted: ${e.stdout} ${e.stderr}`)
  // A new open is refused on both.
  for (const d of [byp, enc]) t.regex((await sh(`head -c 1 '${d}/later/f'`)).stderr, /Permission denied/)
})
