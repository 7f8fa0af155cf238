// Host placement (docs/PEMFS.md "Host placement"): encrypted files served by the native worker threads with the key
// the io hook hands over. On a real mount served by a child (test/helpers/host-crypt-serve.ts): the v1 fixtures
// read bit for bit; natively written files read back and open with the engine straight from the backing bytes (the
// format is FORMAT.md §4); damage is EIO; the io hook sees no data calls; an expired key is asked for once, and a
// refusal fails the handle; the serving process is not dumpable. Mounts are freed in after.always.
import test from 'ava'
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { createEngine, deriveFileKey, importKey } from '../../lib/native/crypto-engine'
import { crc32 } from '../../lib/wire/crc32'
import { decompressBatchSync, type Codec } from '../../lib/native/compress'
import { AAD_BYTES, NONCE_BYTES, TAG_BYTES, TRAILER_BYTES, blockCount, cipherSize, decodeHeader, isCompressed, parseSlot, plainSize, slotOffset, writeAad, writeTrailer } from '../../lib/wire/file-format'
import { ServeChild, isMounted } from '../helpers/serve-child'

const HELPER = path.join(__dirname, '..', 'helpers', 'host-crypt-serve.js')
const FIXTURES = path.join(__dirname, '../../../test/fixtures/files/v1')
const KEY_HEX = fs.readFileSync(path.join(FIXTURES, 'key.hex'), 'utf8').trim()
interface Entry { file: string, compression: string, plainBytes: number, sha256: string }
const manifest = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'manifest.json'), 'utf8')) as Entry[]

const base = fs.mkdtempSync(path.join(os.tmpdir(), 'pemfs-host-'))
const back = path.join(base, 'back')
const mnt = path.join(base, 'mnt')
const back2 = path.join(base, 'back2')
const mnt2 = path.join(base, 'mnt2')
let server: ServeChild | undefined
let short: ServeChild | undefined // keys of 300 ms

const sha = (b: Buffer): string => crypto.createHash('sha256').update(b).digest('hex')
const stats = async (s: ServeChild | undefined): Promise<Record<string, any>> => await (s as ServeChild).command('stats')

const fileKey = (fileId: Buffer, version: number): ReturnType<typeof deriveFileKey> => deriveFileKey(importKey(Buffer.from(KEY_HEX, 'hex')), fileId, version)

/** The plaintext of an encrypted backing file, opened block by block with the engine (no mount involved). */
function decrypt (file: string): Buffer {
  const bytes = fs.readFileSync(file)
  const h = decodeHeader(bytes)
  const engine = createEngine({ cipher: h.cipher })
  const key = fileKey(h.fileId, h.keyVersion)
  const out = Buffer.alloc(plainSize(h, bytes.length))
  for (let b = 0; b < blockCount(h, bytes.length); b++) {
    const s = parseSlot(h, b, bytes.subarray(slotOffset(h, b), Math.min(bytes.length, slotOffset(h, b) + h.slotBytes)))
    if (s.kind === 'hole') continue
    const aad = Buffer.alloc(AAD_BYTES)
    writeAad(h, b, s.trailer.keyVersion, s.trailer.plainLen, aad)
    const plain = Buffer.alloc(s.trailer.sealedLen - NONCE_BYTES - TAG_BYTES)
    engine.openBatchSync(key, s.record.subarray(0, s.trailer.sealedLen), new Uint32Array([s.trailer.sealedLen]), aad, AAD_BYTES, plain)
    const dst = out.subarray(b * h.blockBytes, b * h.blockBytes + s.trailer.plainLen)
    if (isCompressed(s.trailer)) {
      compressed++
      decompressBatchSync(h.compression as Codec, plain, new Uint32Array([plain.length]), dst, new Uint32Array([s.trailer.plainLen]))
    } else plain.copy(dst)
  }
  return out
}
let compressed = 0 // records decrypt() found compressed

/** Data that compresses (text) or not (random), by turns. */
let turn = 0
const bytesOf = (n: number): Buffer => turn++ % 2 === 0 ? crypto.randomBytes(n) : Buffer.from('host placement compresses this text. '.repeat(Math.ceil(n / 37)).slice(0, n))

/** Mount and backing agree with the model: size, bytes read through the mount, bytes the engine opens. */
async function same (t: any, name: string, model: Buffer, dir = mnt, backing = back): Promise<void> {
  t.is((await fs.promises.stat(path.join(dir, name))).size, model.length, `${name}: size`)
  t.true((await fs.promises.readFile(path.join(dir, name))).equals(model), `${name}: read through the mount`)
  t.true(decrypt(path.join(backing, name)).equals(model), `${name}: opened by the engine from the backing file`)
}

test.before(async () => {
  for (const d of [back, mnt, back2, mnt2]) fs.mkdirSync(d)
  fs.mkdirSync(path.join(back, 'fix'))
  for (const e of manifest) fs.copyFileSync(path.join(FIXTURES, e.file), path.join(back, 'fix', e.file))
  server = await ServeChild.start(HELPER, { dir: mnt, backing: back, masterKeyHex: KEY_HEX })
  short = await ServeChild.start(HELPER, { dir: mnt2, backing: back2, masterKeyHex: KEY_HEX, ttlMs: 300, cipher: 'chacha20-poly1305' })
})

test.after.always(async () => {
  await server?.stop(mnt)
  await short?.stop(mnt2)
  if (!isMounted(mnt) && !isMounted(mnt2)) fs.rmSync(base, { recursive: true, force: true })
})

for (const e of manifest) {
  test.serial(`fixture ${e.file} reads natively bit for bit`, async t => {
    const p = path.join(mnt, 'fix', e.file)
    t.is((await fs.promises.stat(p)).size, e.plainBytes, 'size of the closed file, natively')
    t.is(sha(await fs.promises.readFile(p)), e.sha256)
  })
}

test.serial('files of every edge size written natively read back and open with the engine', async t => {
  for (const n of [0, 1, 4095, 4096, 4097, 8192, (1 << 20) + 3]) {
    const data = crypto.randomBytes(n)
    await fs.promises.writeFile(path.join(mnt, `size-${n}`), data)
    await same(t, `size-${n}`, data)
  }
})

for (const dir of ['', 'zstd/', 'lz4/', 'zlib/']) {
test.serial(`random overwrites, holes, appends and truncations up and down match a model (${dir === '' ? 'no compression' : dir.slice(0, -1)})`, async t => {
  let model = Buffer.alloc(0)
  const name = `${dir}model`
  if (dir !== '') await fs.promises.mkdir(path.join(mnt, dir))
  compressed = 0
  const fh = await fs.promises.open(path.join(mnt, name), 'w+')
  const app = await fs.promises.open(path.join(mnt, name), 'a')
  try {
    const put = async (at: number, data: Buffer): Promise<void> => {
      await fh.write(data, 0, data.length, at)
      if (at + data.length > model.length) model = Buffer.concat([model, Buffer.alloc(at + data.length - model.length)])
      data.copy(model, at)
    }
    const cut = (n: number): void => { model = n <= model.length ? Buffer.from(model.subarray(0, n)) : Buffer.concat([model, Buffer.alloc(n - model.length)]) }
    await put(0, bytesOf(100))
    await put(50_000, bytesOf(10)) // a hole of whole blocks, the short block 0 grown to full
    await put(200_003, bytesOf(5000))
    await same(t, name, model)
    let seed = 7
    const rnd = (n: number): number => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n }
    for (let i = 0; i < 60; i++) await put(rnd(model.length + 9000), bytesOf(1 + rnd(i % 10 === 0 ? 70_000 : 9000)))
    await same(t, name, model)
    for (const n of [150_001, 150_001 - 4096, 122_880, 200_000, 204_800 + 77, 10, 0, 4097]) { // inside blocks, on boundaries, up, down
      await fh.truncate(n)
      cut(n)
      await same(t, name, model)
    }
    await fs.promises.truncate(path.join(mnt, name), 9000) // by path, on a node held natively
    cut(9000)
    await same(t, name, model)
    for (const n of [1, 4000, 5000]) { // O_APPEND lands at the true end
      const d = bytesOf(n)
      await app.write(d, 0, n, 0)
      model = Buffer.concat([model, d])
    }
    await fh.sync()
    await same(t, name, model)
  } finally { await fh.close(); await app.close() }
  await same(t, name, model) // closed: sized from the header natively
  if (dir !== '') t.true(compressed > 0, 'some records were written compressed')
})
}

test.serial('a flipped bit or swapped blocks in the backing file are EIO, the untouched blocks still read', async t => {
  const data = crypto.randomBytes(4 * 4096)
  await fs.promises.writeFile(path.join(mnt, 'good'), data)
  const bytes = fs.readFileSync(path.join(back, 'good'))
  const h = decodeHeader(bytes)
  const flipped = Buffer.from(bytes)
  flipped[slotOffset(h, 1) + 100] ^= 1
  fs.writeFileSync(path.join(back, 'flipped'), flipped)
  const swapped = Buffer.from(bytes)
  bytes.copy(swapped, slotOffset(h, 0), slotOffset(h, 2), slotOffset(h, 3))
  bytes.copy(swapped, slotOffset(h, 2), slotOffset(h, 0), slotOffset(h, 1))
  fs.writeFileSync(path.join(back, 'swapped'), swapped)
  const cutShort = bytes.subarray(0, bytes.length - 7)
  fs.writeFileSync(path.join(back, 'cut'), cutShort)
  // Block by block (a read across a bad block returns the good pages before it, as a short read).
  const blocks = async (name: string): Promise<Array<string | boolean>> => {
    const fh = await fs.promises.open(path.join(mnt, name), 'r')
    try {
      const out: Array<string | boolean> = []
      for (let b = 0; b < 4; b++) {
        const buf = Buffer.alloc(4096)
        try {
          const { bytesRead } = await fh.read(buf, 0, 4096, b * 4096)
          out.push(buf.subarray(0, bytesRead).equals(data.subarray(b * 4096, (b + 1) * 4096)))
        } catch (err) { out.push((err as NodeJS.ErrnoException).code as string) }
      }
      return out
    } finally { await fh.close() }
  }
  t.deepEqual(await blocks('flipped'), [true, 'EIO', true, true])
  t.deepEqual(await blocks('swapped'), ['EIO', true, 'EIO', true])
  t.deepEqual(await blocks('cut'), [true, true, true, 'EIO'])
  t.deepEqual(await blocks('good'), [true, true, true, true])
})

test.serial('the io hook is not called for the data calls of a host-mode handle', async t => {
  const data = crypto.randomBytes(300_000)
  await fs.promises.writeFile(path.join(mnt, 'quiet'), data)
  await server?.command('reset')
  const before = await stats(server)
  const fh = await fs.promises.open(path.join(mnt, 'quiet'), 'r+')
  try {
    for (let i = 0; i < 10; i++) await fh.write(crypto.randomBytes(1000), 0, 1000, i * 20_000)
    await fh.read(Buffer.alloc(100_000), 0, 100_000, 150_000)
    await fh.truncate(250_000)
    await fh.stat()
    await fh.sync()
  } finally { await fh.close() }
  const after = await stats(server)
  await fs.promises.stat(path.join(mnt, 'quiet')) // closed: sized from its header natively
  t.deepEqual((await stats(server)).hooked, { open: 1 }, 'only the open asked JS')
  t.true(after.hostWrites - before.hostWrites >= 10)
  t.true(after.hostReads > before.hostReads)
  t.is(after.hostNodes, 0, 'the last release dropped the node')
  t.false(after.dumpable, 'the serving process is not dumpable')
})

test.serial('an expired key is asked for once; a refusal fails the handle with EACCES', async t => {
  const data = crypto.randomBytes(8 << 20)
  await fs.promises.writeFile(path.join(mnt2, 'k'), data)
  const fh = await fs.promises.open(path.join(mnt2, 'k'), 'r+')
  try {
    await short?.command('reset')
    await fh.write(Buffer.from('a'), 0, 1, 10)
    await new Promise(resolve => setTimeout(resolve, 400))
    await fh.write(Buffer.from('b'), 0, 1, 20)
    await fh.write(Buffer.from('c'), 0, 1, 30)
    t.is((await stats(short)).hooked.key, 1, 'one key question after the ttl')
    await short?.command('keyerr EACCES')
    await new Promise(resolve => setTimeout(resolve, 400))
    await t.throwsAsync(fh.read(Buffer.alloc(4096), 0, 4096, 6 << 20), { code: 'EACCES' })
    await t.throwsAsync(fh.write(Buffer.from('d'), 0, 1, 40), { code: 'EACCES' }, 'revoked')
  } finally { await fh.close(); await short?.command('keyerr none') }
  Buffer.from('abc').forEach((c, i) => { data[10 * (i + 1)] = c })
  await same(t, 'k', data, mnt2, back2) // written natively under chacha20-poly1305
})

test.serial('a truncation a crash left behind (a redo record at the end) is finished when the file is loaded', async t => {
  const data = crypto.randomBytes(4 * 4096)
  await fs.promises.writeFile(path.join(mnt, 'redo-src'), data)
  const bytes = fs.readFileSync(path.join(back, 'redo-src'))
  const h = decodeHeader(bytes)
  // The record of the new short block 2 (10,000 bytes in all), sealed as spd would, and the redo record of §4.8.
  const plain = data.subarray(8192, 10_000)
  const aad = Buffer.alloc(AAD_BYTES)
  writeAad(h, 2, h.keyVersion, plain.length, aad)
  const rec = Buffer.alloc(plain.length + NONCE_BYTES + TAG_BYTES + TRAILER_BYTES)
  createEngine({ cipher: h.cipher }).sealBatchSync(fileKey(h.fileId, h.keyVersion), plain, new Uint32Array([plain.length]), aad, AAD_BYTES, rec.subarray(0, rec.length - TRAILER_BYTES))
  writeTrailer(rec, rec.length - TRAILER_BYTES, { sealedLen: rec.length - TRAILER_BYTES, plainLen: plain.length, keyVersion: h.keyVersion })
  const entry = Buffer.alloc(12)
  entry.writeBigUInt64BE(BigInt(slotOffset(h, 2)))
  entry.writeUInt32BE(rec.length, 8)
  const target = cipherSize(h, 10_000)
  const foot = Buffer.alloc(12)
  foot.writeBigUInt64BE(BigInt(target))
  foot.writeUInt32BE(entry.length + rec.length, 8)
  const crc = Buffer.alloc(4)
  crc.writeUInt32BE(crc32(Buffer.concat([entry, rec, foot])))
  fs.writeFileSync(path.join(back, 'redo'), Buffer.concat([bytes, entry, rec, foot, crc, Buffer.from('PEMFredo')]))
  const fh = await fs.promises.open(path.join(mnt, 'redo'), 'r')
  try {
    t.is(fs.statSync(path.join(back, 'redo')).size, target, 'cut to the target size')
    const buf = Buffer.alloc(10_000)
    t.is((await fh.read(buf, 0, 10_000, 0)).bytesRead, 10_000)
    t.true(buf.equals(data.subarray(0, 10_000)))
  } finally { await fh.close() }
  t.true(decrypt(path.join(back, 'redo')).equals(data.subarray(0, 10_000)))
  await new Promise(resolve => setTimeout(resolve, 1100)) // the lookup before the open (the io hook's size) is cached
  t.is((await fs.promises.stat(path.join(mnt, 'redo'))).size, 10_000)
})
