// Real workloads on an encrypted pemfs mount: fio write+verify (crc32c) sequential, random 4 KiB and random unaligned
// 3 KiB, and a tar of a tree into the mount and back out, compared byte for byte; underneath, every file is ciphertext.
// The mount serves VIEW over BACKING (--backing) so this process can read the bytes underneath; every command that
// touches the mount runs in its own process (helpers/mounts.ts sh()). fio is required: without it the tests fail.
import test from 'ava'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { FILE_MAGIC, decodeHeader, plainSize } from '../../lib/wire/file-format'
import { clusterWithHost, mountOrThrow, sh, tearDown, tempDir, type Cluster } from '../helpers/mounts'

let c: Cluster
let root: string
let view: string
let back: string
const MARKER = 'WORKLOAD-PLAINTEXT-MARKER'

const policy = (guard: string): string => `format: 1
keys: [k1]
guards:
  ${guard}:
    rules:
      - id: encrypt
        effect: apply_key(k1)
`

/** Every regular file under dir (relative paths, sorted). */
function filesUnder (dir: string, rel = ''): string[] {
  const out: string[] = []
  for (const e of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
    const p = path.join(rel, e.name)
    if (e.isDirectory()) out.push(...filesUnder(dir, p)); else if (e.isFile()) out.push(p)
  }
  return out.sort()
}

/** A backing file is ciphertext: empty, or a valid header whose plaintext size is `plain`, and no marker inside. */
function assertCipher (t: { true: (v: boolean, m?: string) => void, is: (a: unknown, b: unknown, m?: string) => void }, file: string, plain: number): void {
  const raw = fs.readFileSync(file)
  if (plain === 0 && raw.length === 0) return
  t.true(raw.subarray(0, 4).equals(FILE_MAGIC), `${file}: starts with the header magic`)
  t.is(plainSize(decodeHeader(raw.subarray(0, Math.min(raw.length, 4096))), raw.length), plain, `${file}: plaintext size from the format`)
  t.true(!raw.includes(MARKER), `${file}: no plaintext marker underneath`)
}

test.before(async () => {
  root = tempDir('workloads')
  view = path.join(root, 'view')
  back = path.join(root, 'back')
  fs.mkdirSync(view); fs.mkdirSync(back)
  c = await clusterWithHost('pemfs-workloads', () => policy(view))
  await mountOrThrow(c, view, ['--backing', back])
})

test.after.always(async () => {
  await tearDown(c)
  if (root !== undefined) fs.rmSync(root, { recursive: true, force: true })
})

test.serial('fio is installed (the workloads below need it)', async t => {
  const r = await sh('fio --version')
  t.is(r.code, 0, `fio --version: ${r.stderr}`)
  t.regex(r.stdout, /^fio-/)
})

const fioJobs: Array<[string, string, number]> = [
  ['sequential 128 KiB write, then verify', '--rw=write --bs=128k --size=8m', 8 << 20],
  ['random 4 KiB writes, then verify', '--rw=randwrite --bs=4k --size=4m', 4 << 20],
  ['random unaligned 3 KiB writes (read-modify-write of blocks), then verify', '--rw=randwrite --bs=3k --size=3m', 3 << 20],
  ['sequential 4 KiB writes with 2 jobs on one file at distinct offsets, then verify', '--rw=write --bs=4k --size=2m --numjobs=2 --offset_increment=2m', 4 << 20]
]

for (const [title, args, bytes] of fioJobs) {
  test.serial(`fio --verify=crc32c: ${title}`, async t => {
    const name = `fio-${crypto.randomBytes(4).toString('hex')}`
    const file = path.join(view, name)
    // Blocks are the marker repeated plus fio's crc32c header: a plaintext leak underneath would show the marker.
    const pattern = `0x${Buffer.from(MARKER).toString('hex')}`
    const r = await sh(`fio --name=w --filename='${file}' ${args} --ioengine=psync --verify=crc32c --verify_state_save=0 --do_verify=1 --verify_fatal=1 --verify_pattern=${pattern} --output-format=json --group_reporting`, { timeoutMs: 300000 })
    t.is(r.code, 0, `fio exit ${r.code}: ${r.stderr.slice(0, 2000)}`)
    const job = JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))).jobs[0]
    t.is(job.error, 0, 'fio reports no error')
    t.true(job.write.io_bytes >= bytes, `${job.write.io_bytes} bytes written`)
    t.true(job.read.io_bytes >= bytes, `${job.read.io_bytes} bytes read back and verified`)
    const st = await sh(`stat -c %s '${file}'`)
    t.is(Number(st.stdout), bytes)
    assertCipher(t, path.join(back, name), bytes)
    // A second, separate verify pass: fio reads the file back cold through a new open and checks every block.
    const v = await sh(`fio --name=w --filename='${file}' ${args} --ioengine=psync --verify=crc32c --verify_state_save=0 --verify_only=1 --verify_fatal=1 --verify_pattern=${pattern} --output-format=json --group_reporting`, { timeoutMs: 300000 })
    t.is(v.code, 0, `verify_only exit ${v.code}: ${v.stderr.slice(0, 2000)}`)
    t.is(JSON.parse(v.stdout.slice(v.stdout.indexOf('{'))).jobs[0].error, 0)
    t.is((await sh(`rm '${file}'`)).code, 0)
  })
}

test.serial('tar a tree into the mount and back out: same bytes, links and modes; ciphertext underneath', async t => {
  const src = path.join(root, 'src')
  const out = path.join(root, 'out')
  fs.mkdirSync(out)
  const sizes = [0, 1, 100, 4095, 4096, 4097, 65536, 131071, 131073, 1 << 20, (3 << 20) + 17]
  const made: Record<string, number> = {}
  for (const [i, size] of sizes.entries()) {
    const rel = path.join(`d${i % 3}`, i % 2 === 0 ? 'deep/er' : '', `f${i}-${size}.bin`)
    fs.mkdirSync(path.join(src, path.dirname(rel)), { recursive: true })
    const b = crypto.randomBytes(size)
    if (size >= MARKER.length * 2) b.write(MARKER, Math.floor(size / 2)) // plaintext that must not appear underneath
    fs.writeFileSync(path.join(src, rel), b, { mode: i % 2 === 0 ? 0o640 : 0o755 })
    made[rel] = size
  }
  fs.writeFileSync(path.join(src, 'notes.txt'), `${MARKER}\n`.repeat(2000))
  made['notes.txt'] = (MARKER.length + 1) * 2000
  fs.symlinkSync('d0/notes-link-target', path.join(src, 'dangling-link'))
  fs.symlinkSync('notes.txt', path.join(src, 'notes-link'))
  fs.mkdirSync(path.join(src, 'empty-dir'))

  const into = await sh(`mkdir '${view}/tree' && tar -C '${src}' -cf - . | tar -C '${view}/tree' -xpf -`, { timeoutMs: 120000 })
  t.is(into.code, 0, into.stderr)
  const outOf = await sh(`tar -C '${view}/tree' -cf - . | tar -C '${out}' -xpf -`, { timeoutMs: 120000 })
  t.is(outOf.code, 0, outOf.stderr)
  const diff = await sh(`diff -r --no-dereference '${src}' '${out}' && echo same`, { timeoutMs: 60000 })
  t.is(diff.stdout, 'same\n', diff.stdout + diff.stderr)
  for (const rel of filesUnder(src)) {
    t.true(fs.readFileSync(path.join(out, rel)).equals(fs.readFileSync(path.join(src, rel))), rel)
    t.is(fs.statSync(path.join(out, rel)).mode & 0o777, fs.statSync(path.join(src, rel)).mode & 0o777, `${rel}: mode`)
  }
  t.is(fs.readlinkSync(path.join(out, 'notes-link')), 'notes.txt')
  t.true(fs.statSync(path.join(out, 'empty-dir')).isDirectory())
  // Underneath: every regular file is ciphertext of the right plaintext size; names and links are as they were.
  t.deepEqual(filesUnder(path.join(back, 'tree')), Object.keys(made).sort())
  for (const [rel, size] of Object.entries(made)) assertCipher(t, path.join(back, 'tree', rel), size)
  t.is(fs.readlinkSync(path.join(back, 'tree', 'notes-link')), 'notes.txt')
})
