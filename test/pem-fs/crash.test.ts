// Crash consistency of truncation on a real encrypted mount: a second mount of the same backing directory runs with a
// failpoint (PEM_FAILPOINT, lib/server/failpoint.ts) that SIGKILLs its daemon between the steps of a truncation that
// replaces a record in place (cut inside a block, growth from a short last block); the first mount then reads the
// file: every byte written and fsynced before, below the new size, is there, the size is the new one (the redo record
// was complete), and nothing reads as EIO. Also a crash while a later load finishes the truncation. The failpoints
// are in crypt-file.ts, so the crashing daemon keeps appliance placement on the JS path (PEMFS_BLOCK_PATH=js); the
// view reads through the native block path (docs/CHANNEL.md §8), which finishes a redo record in crypt_node.
import test from 'ava'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { cli } from '../../scripts/procs'
import { cipherSize, decodeHeader, HEADER_MAX_BYTES } from '../../lib/wire/file-format'
import { clusterWithHost, daemonLogs, isMounted, mountOrThrow, sh, tearDown, tempDir, unmount, type Cluster } from '../helpers/mounts'

let c: Cluster
let root: string
let view: string // served by a daemon that never crashes
let crashing: string // served by a daemon with a failpoint, over the same backing directory
let back: string
const REDO_MAGIC = Buffer.from('PEMFredo', 'latin1')

const policy = (guards: string[]): string => `format: 1
ttl: 2s
keys: [k1]
guards:
${guards.map((g, i) => `  ${g}:
    rules:
      - id: zipped-${i}
        resources: { dirs: [/z] }
        effect: apply_key(k1)
        compression: zstd
      - id: encrypt-${i}
        effect: apply_key(k1)
`).join('')}`

test.before(async () => {
  root = tempDir('crash')
  view = path.join(root, 'view')
  crashing = path.join(root, 'crashing')
  back = path.join(root, 'back')
  for (const d of [view, crashing, back, path.join(back, 'z')]) fs.mkdirSync(d)
  c = await clusterWithHost('pemfs-crash', () => policy([view, crashing]))
  await mountOrThrow(c, view, ['--backing', back])
})

test.after.always(async () => {
  if (c !== undefined && isMounted(crashing)) await unmount(c, crashing)
  if (isMounted(crashing)) await sh(`umount -l '${crashing}'`, { timeoutMs: 5000 })
  await tearDown(c)
})

/** Mounts `crashing` with its daemon armed to die at `step`. */
async function mountCrashing (step: string): Promise<void> {
  const r = await cli('pemfs', ['mount', crashing, '--config-dir', c.hostDir, '--json', '--backing', back], { PEM_FAILPOINT: step, PEMFS_BLOCK_PATH: 'js' }, 30000)
  if (r.code !== 0) throw new Error(`mount with ${step}: ${r.stderr}`)
}

const endsWithRedo = (name: string): boolean => {
  const b = fs.readFileSync(path.join(back, name))
  return b.subarray(b.length - REDO_MAGIC.length).equals(REDO_MAGIC)
}
const headerOf = (name: string): ReturnType<typeof decodeHeader> => {
  const b = Buffer.alloc(HEADER_MAX_BYTES)
  const fd = fs.openSync(path.join(back, name), 'r')
  try { return decodeHeader(b.subarray(0, fs.readSync(fd, b, 0, b.length, 0))) } finally { fs.closeSync(fd) }
}

/** Compressible text (zstd records leave the front of their slots empty) or random bytes. */
const content = (n: number, text: boolean): Buffer => text
  ? Buffer.from(Array.from({ length: Math.ceil(n / 24) }, (_, i) => `line ${String(i).padStart(8, '0')} of text\n`).join('')).subarray(0, n)
  : crypto.randomBytes(n)

/**
 * Writes `data` to `name` through the crashing mount (fsynced: durable), truncates it to `size` there, and checks that
 * the daemon died at `step` with the redo record complete at the end of the backing file.
 */
async function crashInTruncate (t: import('ava').ExecutionContext, name: string, data: Buffer, size: number, step: string): Promise<void> {
  const src = path.join(root, `src-${path.basename(name)}`)
  fs.writeFileSync(src, data)
  await mountCrashing(step)
  const r = await sh(`dd if='${src}' of='${path.join(crashing, name)}' bs=65536 conv=fsync status=none && truncate -s ${size} '${path.join(crashing, name)}'`, { timeoutMs: 30000 })
  t.not(r.code, 0, 'the truncation did not return: its daemon died')
  t.regex(r.stderr, /truncate: .*(Transport endpoint is not connected|Software caused connection abort)/, r.stderr)
  t.true(endsWithRedo(name), 'the crash came after the redo record')
  t.is((await unmount(c, crashing)).code, 0, 'the dead mount is detached')
}

/** Through the mount that never crashed: the size, every byte (zeros past the old end), no EIO, no redo record left. */
async function checkFinished (t: import('ava').ExecutionContext, name: string, data: Buffer, size: number): Promise<void> {
  const want = Buffer.alloc(size)
  data.copy(want, 0, 0, Math.min(size, data.length))
  const expected = path.join(root, `want-${path.basename(name)}`)
  fs.writeFileSync(expected, want)
  const r = await sh(`stat -c %s '${path.join(view, name)}' && cmp '${expected}' '${path.join(view, name)}' && echo same`, { timeoutMs: 30000 })
  t.is(r.stdout, `${size}\nsame\n`, `${r.stderr}\n${daemonLogs(c)}`)
  t.false(endsWithRedo(name), 'the redo record is gone')
  t.is(fs.statSync(path.join(back, name)).size, cipherSize(headerOf(name), size))
}

const cases: Array<{ title: string, name: string, old: number, size: number, text: boolean, step: string }> = [
  { title: 'cut inside a full block (4 KiB), crash after the redo record', name: 'cut-full-redo', old: 20000, size: 10000, text: false, step: 'pemfs:truncate:after-redo' },
  { title: 'cut inside a full block (4 KiB), crash after the record was rewritten in place', name: 'cut-full-rewrite', old: 20000, size: 10000, text: false, step: 'pemfs:truncate:after-rewrite' },
  { title: 'cut inside the old short last block (4 KiB), crash after the redo record', name: 'cut-short-redo', old: 10000, size: 9000, text: false, step: 'pemfs:truncate:after-redo' },
  { title: 'cut inside a compressed block (zstd 64 KiB), crash after the rewrite', name: 'z/cut-zstd-rewrite', old: 200000, size: 100000, text: true, step: 'pemfs:truncate:after-rewrite' },
  { title: 'growth from a short last block past its slot (4 KiB), crash after the redo record', name: 'grow-past-redo', old: 10000, size: 30001, text: false, step: 'pemfs:truncate:after-redo' },
  { title: 'growth inside the short last block (4 KiB), crash after the rewrite', name: 'grow-inside-rewrite', old: 10000, size: 11000, text: false, step: 'pemfs:truncate:after-rewrite' },
  { title: 'growth from a short compressed block to a whole block (zstd 64 KiB), crash after the redo record', name: 'z/grow-zstd-redo', old: 100000, size: 131072, text: true, step: 'pemfs:truncate:after-redo' }
]

for (const k of cases) {
  test.serial(`truncation, ${k.title}: the next load finishes it, every durable byte below the new size is intact`, async t => {
    const data = content(k.old, k.text)
    await crashInTruncate(t, k.name, data, k.size, k.step)
    await checkFinished(t, k.name, data, k.size)
  })
}

test.serial('a crash while a load finishes an interrupted truncation: the load after that finishes it', async t => {
  const data = content(20000, false)
  await crashInTruncate(t, 'twice', data, 10000, 'pemfs:truncate:after-redo')
  await mountCrashing('pemfs:redo:after-rewrite')
  const r = await sh(`stat -c %s '${path.join(crashing, 'twice')}'`, { timeoutMs: 30000 })
  t.not(r.code, 0, 'the stat did not return: the daemon died finishing the truncation')
  t.true(endsWithRedo('twice'), 'the crash came before the cut')
  t.is((await unmount(c, crashing)).code, 0)
  await checkFinished(t, 'twice', data, 10000)
})
