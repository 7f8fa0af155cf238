// spd's data service end to end: a real spd, spctl policy with apply_key, two enrolled hosts, decisions with grants,
// then FileHeader/BlocksSeal/BlocksOpen over the real channel — round trips, tampering by code, grants, compression
// on disk (du), sparse holes, batching and pipelining.
import test from 'ava'
import { execFileSync } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { attrsOf } from '../../lib/pem-fs/attrs'
import { ClusterClient, type Decision } from '../../lib/pem-fs/client'
import { hostIdentity, readCluster } from '../../lib/pem-fs/host-config'
import { decodeHeader, encodeHeader, slotOffset } from '../../lib/wire/file-format'
import type { Action } from '../../lib/wire/packets'
import { cli, initSpd, loginSpctl, startSpd, stopAll, stopSpd, tempDir, writeFile, type Spd } from '../../scripts/procs'
import { readHeader, readRange, writeBlocks } from '../helpers/crypt-file'
import { crc32 } from '../../lib/wire/crc32'

const POLICY = `format: 1
keys: [finance, hr]
guards:
  /srv/data:
    rules:
      - id: finance-z
        resources: { dirs: [/finance] }
        effect: apply_key(finance)
        compression: zstd
      - id: finance-plain
        resources: { dirs: [/plain] }
        effect: apply_key(finance)
      - id: hr
        resources: { dirs: [/hr] }
        effect: apply_key(hr)
      - id: public
        resources: { dirs: [/public] }
        effect: permit
`

let spd: Spd
let spctl: (args: string[]) => Promise<{ code: number, stdout: string, stderr: string }>
const clients: ClusterClient[] = []
const work = tempDir('data-test')

async function enrollHost (name: string): Promise<ClusterClient> {
  const token = JSON.parse((await spctl(['--json', 'host', 'add', name])).stdout).token as string
  const dir = path.join(work, name)
  const r = await cli('pemfs', ['enroll', '--cluster', spd.listen, '--token', token, '--config-dir', dir, '--name', name])
  if (r.code !== 0) throw new Error(r.stderr)
  const c = new ClusterClient(hostIdentity(dir), readCluster(dir).servers)
  clients.push(c)
  return c
}

const decide = async (c: ClusterClient, p: string, action: Action = 'write'): Promise<Decision> =>
  await c.decide({ guard: '/srv/data', path: p, action, attrs: attrsOf(process.pid, 1000, 1000) })

/** Compressible text: 4 MiB of log-like lines. */
const TEXT = Buffer.from(Array.from({ length: 60_000 }, (_, i) => `2024-05-01T10:${String(i % 60).padStart(2, '0')} INFO request ${i % 977} served in ${i % 13} ms\n`).join('')).subarray(0, 4 << 20)

let host1: ClusterClient
let host2: ClusterClient

test.before(async () => {
  spd = await initSpd('spd-data')
  await startSpd(spd)
  spctl = await loginSpctl(spd)
  const applied = await spctl(['policy', 'apply', writeFile(work, 'policy.yaml', POLICY)])
  if (applied.code !== 0) throw new Error(applied.stderr)
  host1 = await enrollHost('host-1')
  host2 = await enrollHost('host-2')
})

test.after.always(async () => {
  for (const c of clients) c.close()
  if (spd !== undefined) await stopSpd(spd)
  stopAll()
})

/** Offset of the first byte where two buffers differ (or the shorter length), for failure messages. */
function firstDifference (a: Buffer, b: Buffer): number {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i
  return n
}

/** A fresh file under `dir` with `plain` in it; returns its path and the decision used. */
async function newFile (dir: string, name: string, plain: Buffer, sparse = false): Promise<{ file: string, d: Decision }> {
  const d = await decide(host1, `${dir}/${name}`)
  const { bytes } = await host1.newHeader(d)
  const file = path.join(work, `${dir.slice(1)}-${name}`)
  await writeBlocks(host1, d, file, bytes, 0, plain, sparse)
  return { file, d }
}

test('an apply_key decision carries a grant; a bypass decision carries none', async t => {
  const d = await decide(host1, '/finance/a')
  t.true(d.ok); t.is(d.key, 'finance'); t.regex(d.grant ?? '', /^[0-9a-f]{32}$/)
  const p = await decide(host1, '/public/a')
  t.true(p.bypass); t.is(p.grant, null)
  await t.throwsAsync(host1.newHeader(p), { code: 'PEM_ERR_KEY_NOT_GRANTED' })
})

test('header from spd names the granted key, its newest version, the decision compression and a random file id', async t => {
  const d = await decide(host1, '/finance/h')
  const a = await host1.newHeader(d)
  const b = await host1.newHeader(d)
  t.is(a.header.keyName, 'finance'); t.is(a.header.keyVersion, 1); t.is(a.header.compression, 'zstd'); t.is(a.header.cipher, 'aes-256-gcm')
  t.false(a.header.fileId.equals(b.header.fileId))
  t.is((await host1.newHeader(await decide(host1, '/plain/h'))).header.compression, 'none')
  await t.throwsAsync(host1.newHeader(d, 3000), { code: 'PEM_ERR_BAD_ARGUMENT' })
})

test.serial('new-file headers come 16 to a round trip, each used once', async t => {
  const d = await decide(host1, '/finance/batch')
  const s = host1.servers.find(x => x.entry.id === d.server)
  if (s === undefined) throw new Error('no server state')
  const before = s.requests
  const ids = new Set<string>()
  for (let i = 0; i < 40; i++) ids.add((await host1.newHeader(d)).header.fileId.toString('hex'))
  t.is(ids.size, 40, 'every file gets its own file id')
  t.true(s.requests - before <= 3, `${s.requests - before} FileHeader requests for 40 headers`)
})

for (const [dir, size] of [['/plain', 0], ['/plain', 1], ['/plain', 4095], ['/plain', 4096], ['/plain', 10_000], ['/finance', 200_001], ['/finance', 65_536]] as const) {
  test(`round trip ${size} bytes under ${dir}; st_size gives the plaintext size`, async t => {
    const plain = crypto.randomBytes(size)
    const { file, d } = await newFile(dir, `rt-${size}`, plain)
    t.is(readHeader(file).size, size)
    t.deepEqual(await readRange(host1, d, file), plain)
  })
}

test('compressible data: round trip, and du shows it smaller on disk than the same data uncompressed', async t => {
  const z = await newFile('/finance', 'log.txt', TEXT)
  const p = await newFile('/plain', 'log.txt', TEXT)
  // Buffer.equals, not t.deepEqual: ava's deep comparison of 2.9 MB takes ~5 s and stalls every test of this file.
  const whole = await readRange(host1, z.d, z.file)
  t.true(whole.equals(TEXT), `read back ${whole.length} bytes of ${TEXT.length}, first difference at ${firstDifference(whole, TEXT)}`)
  t.deepEqual(await readRange(host1, p.d, p.file, 1_000_000, 70_000), TEXT.subarray(1_000_000, 1_070_000))
  const du = (f: string): number => Number(execFileSync('du', ['-k', f], { encoding: 'utf8' }).split('\t')[0])
  t.log(`du: zstd ${du(z.file)} KiB, none ${du(p.file)} KiB, plaintext ${TEXT.length >> 10} KiB`)
  t.true(du(z.file) * 3 < du(p.file), 'compressed layout takes under a third of the space')
  t.is(readHeader(z.file).size, TEXT.length)
})

test('a read touches only the slots its range covers', async t => {
  const { file, d } = await newFile('/plain', 'ra', crypto.randomBytes(20 * 4096))
  const stats = { slotsRead: [] as number[] }
  await readRange(host1, d, file, 3 * 4096 + 100, 5000, stats)
  t.deepEqual(stats.slotsRead, [3, 4])
})

test('sparse: unwritten blocks stay holes on disk and read as zeros', async t => {
  const plain = Buffer.alloc(64 * 4096)
  plain.write('head'); plain.write('tail', plain.length - 4)
  const { file, d } = await newFile('/plain', 'sparse', plain, true)
  t.deepEqual(await readRange(host1, d, file), plain)
  t.true(fs.statSync(file).blocks * 512 < 5 * 4096, `allocated ${fs.statSync(file).blocks * 512} bytes for 2 written blocks`)
})

test('tampering fails by code: bit flip, swap, block from another file, cut mid-block, key version, header', async t => {
  const plain = crypto.randomBytes(5 * 4096 + 700)
  const { file, d } = await newFile('/plain', 'victim', plain)
  const other = await newFile('/plain', 'other', crypto.randomBytes(5 * 4096))
  const h = readHeader(file).header
  const orig = fs.readFileSync(file)
  const attempt = async (mutate: (b: Buffer) => Buffer): Promise<unknown> => {
    fs.writeFileSync(file, mutate(Buffer.from(orig)))
    return await readRange(host1, d, file)
  }
  const slot = (b: Buffer, i: number): Buffer => b.subarray(slotOffset(h, i), slotOffset(h, i) + h.slotBytes)
  await t.throwsAsync(attempt(b => { b[slotOffset(h, 2) + 100] ^= 1; return b }), { code: 'PEM_ERR_AUTH_FAILED_BLOCK', message: /block 2/ })
  await t.throwsAsync(attempt(b => { const s1 = Buffer.from(slot(b, 1)); slot(b, 2).copy(slot(b, 1)); s1.copy(slot(b, 2)); return b }), { code: 'PEM_ERR_AUTH_FAILED_BLOCK' })
  await t.throwsAsync(attempt(b => { slot(fs.readFileSync(other.file), 3).copy(slot(b, 3)); return b }), { code: 'PEM_ERR_AUTH_FAILED_BLOCK', message: /block 3/ })
  await t.throwsAsync(attempt(b => b.subarray(0, b.length - 300)), { code: 'PEM_ERR_TRUNCATED' })
  await t.throwsAsync(attempt(b => b.subarray(0, slotOffset(h, 4) + 2000)), { code: 'PEM_ERR_TRUNCATED' })
  await t.throwsAsync(attempt(b => { b[20] ^= 0x10; return b }), { code: 'PEM_ERR_BAD_HEADER' })
  await t.throwsAsync(attempt(b => { b.writeUInt32BE(2, 24); b.writeUInt32BE(crc32(b.subarray(0, h.headerBytes - 4)), h.headerBytes - 4); return b }), { code: 'PEM_ERR_KEY_VERSION' })
  // A header re-checksummed with another file id: every block fails authentication (its AAD binds the file id). The
  // grant served the original file without binding (spd made that header for this host); the foreign id binds it, so
  // a second foreign id is refused, while the file spd made stays readable under it.
  await t.throwsAsync(attempt(b => { encodeHeader({ ...h, fileId: crypto.randomBytes(16) }).copy(b); return b }), { code: 'PEM_ERR_AUTH_FAILED_BLOCK' })
  await t.throwsAsync(attempt(b => { encodeHeader({ ...h, fileId: crypto.randomBytes(16) }).copy(b); return b }), { code: 'PEM_ERR_KEY_NOT_GRANTED', message: /another file/ })
  fs.writeFileSync(file, orig)
  t.deepEqual(await readRange(host1, d, file), plain, 'the untouched file still reads')
})

test.serial('a block sealed under an older key version is refused with PEM_ERR_KEY_VERSION after rotation', async t => {
  const old = await newFile('/hr', 'v1', crypto.randomBytes(3 * 4096))
  t.is(readHeader(old.file).header.keyVersion, 1)
  const r = await spctl(['key', 'rotate', 'hr'])
  t.is(r.code, 0, r.stderr)
  const d = await decide(host1, '/hr/v2')
  const fresh = await newFile('/hr', 'v2', crypto.randomBytes(3 * 4096))
  t.is(readHeader(fresh.file).header.keyVersion, 2)
  // A grant serves one file (the first header it is shown): the old file is read under a decision of its own.
  t.is((await readRange(host1, await decide(host1, '/hr/v1'), old.file)).length, 3 * 4096, 'files under version 1 stay readable')
  const h = readHeader(fresh.file).header
  const b = fs.readFileSync(fresh.file)
  const o = fs.readFileSync(old.file)
  o.copy(b, slotOffset(h, 1), slotOffset(h, 1), slotOffset(h, 2))
  fs.writeFileSync(fresh.file, b)
  await t.throwsAsync(readRange(host1, d, fresh.file), { code: 'PEM_ERR_KEY_VERSION' })
  const header99 = encodeHeader({ ...h, keyVersion: 99 })
  await t.throwsAsync(host1.sealBlocks(d, header99, [0], [Buffer.alloc(10)]), { code: 'PEM_ERR_KEY_VERSION' })
})

test('grants: another host, another key, a read-only grant, an unknown grant — all PEM_ERR_KEY_NOT_GRANTED', async t => {
  const d1 = await decide(host1, '/finance/g')
  const { bytes } = await host1.newHeader(d1)
  await t.throwsAsync(host2.sealBlocks(d1, bytes, [0], [Buffer.from('x')]), { code: 'PEM_ERR_KEY_NOT_GRANTED', message: /another host/ })
  const hr = await decide(host1, '/hr/g')
  await t.throwsAsync(host1.sealBlocks(hr, bytes, [0], [Buffer.from('x')]), { code: 'PEM_ERR_KEY_NOT_GRANTED', message: /under key 'finance'/ })
  const ro = await decide(host1, '/finance/g', 'read')
  await t.throwsAsync(host1.sealBlocks(ro, bytes, [0], [Buffer.from('x')]), { code: 'PEM_ERR_KEY_NOT_GRANTED', message: /cannot seal/ })
  const [rec] = (await host1.sealBlocks(d1, bytes, [0], [Buffer.from('x')])).parts
  t.deepEqual((await host1.openBlocks(ro, bytes, [0], [rec])).parts[0], Buffer.from('x'), 'a read grant opens')
  await t.throwsAsync(host1.openBlocks({ ...d1, grant: 'f'.repeat(32) }, bytes, [0], [rec]), { code: 'PEM_ERR_KEY_NOT_GRANTED' })
  await t.throwsAsync(host1.openBlocks(d1, Buffer.from(bytes).fill(0, 0, 4), [0], [rec]), { code: 'PEM_ERR_BAD_HEADER' })
})

test('batches beyond the per-frame limits are split, and 32 batches in flight on one channel all complete', async t => {
  const d = await decide(host1, '/plain/many')
  const { bytes } = await host1.newHeader(d)
  const nums = Array.from({ length: 700 }, (_, i) => i)
  const parts = nums.map(i => crypto.randomBytes(4096).fill(i & 0xff, 0, 1))
  const records = (await host1.sealBlocks(d, bytes, nums, parts)).parts
  t.is(records.length, 700)
  const opened = (await host1.openBlocks(d, bytes, nums, records)).parts
  t.true(opened.every((p, i) => p.equals(parts[i])))
  const results = await Promise.all(Array.from({ length: 32 }, async (_, i) => (await host1.openBlocks(d, bytes, [i], [records[i]])).parts))
  t.true(results.every(([p], i) => p.equals(parts[i])))
  t.is(decodeHeader(bytes).blockBytes, 4096)
})
