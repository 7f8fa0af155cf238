// Encrypted file format v1, pure parts: header codec and its refusals, size math both ways, the blocks a range
// touches, slot parsing (hole, record, short last block, cut file, key version), record placement, AAD, CRC-32,
// and the checkers of the data-service bodies.
import test from 'ava'
import crypto from 'node:crypto'
import {
  AAD_BYTES, RECORD_OVERHEAD, blockRange, cipherSize, decodeHeader, encodeHeader, makeHeader, parseSlot,
  plainSize, recordOffset, slotOffset, writeAad, writeTrailer, type FileHeader
} from '../../lib/wire/file-format'
import { LIMITS, checkBlocks, checkDecideReply } from '../../lib/wire/packets'
import { crc32 } from '../../lib/wire/crc32'

const fileId = Buffer.from('00112233445566778899aabbccddeeff', 'hex')
const plainH = makeHeader({ fileId, keyName: 'finance', keyVersion: 1, cipher: 'aes-256-gcm', compression: 'none' })
const zH = makeHeader({ fileId, keyName: 'finance', keyVersion: 1, cipher: 'aes-256-gcm', compression: 'zstd' })

test('layout: the worked example of FORMAT.md §4', t => {
  t.like(plainH, { headerBytes: 50, blockBytes: 4096, slotBytes: 4136 })
  t.like(zH, { headerBytes: 4096, blockBytes: 65536, slotBytes: 69632 })
  t.is(cipherSize(plainH, 10_000), 10_170)
  t.is(plainSize(plainH, 10_170), 10_000)
  t.is(cipherSize(zH, 200_000), 4096 + 3 * 69632 + 3392 + 40)
})

test('header round trip keeps every field', t => {
  for (const h of [plainH, zH, makeHeader({ fileId, keyName: 'ключ', keyVersion: 0xffffffff, cipher: 'chacha20-poly1305', compression: 'lz4', blockBytes: 1 << 20 })]) {
    t.deepEqual(decodeHeader(encodeHeader(h)), h)
  }
})

test('header damage anywhere is PEM_ERR_BAD_HEADER', t => {
  const good = encodeHeader(plainH)
  for (let i = 0; i < good.length; i++) {
    const b = Buffer.from(good); b[i] ^= 0x01
    t.throws(() => decodeHeader(b), { code: 'PEM_ERR_BAD_HEADER' }, `byte ${i}`)
  }
  t.throws(() => decodeHeader(good.subarray(0, 30)), { code: 'PEM_ERR_BAD_HEADER' })
  t.throws(() => decodeHeader(good.subarray(0, 49)), { code: 'PEM_ERR_BAD_HEADER' })
  const v2 = Buffer.from(good); v2.writeUInt16BE(2, 4); v2.writeUInt32BE(crc32(v2.subarray(0, 46)), 46)
  t.throws(() => decodeHeader(v2), { code: 'PEM_ERR_BAD_HEADER', message: /version 2/ })
  const slot = Buffer.from(good); slot.writeUInt32BE(4096, 34); slot.writeUInt32BE(crc32(slot.subarray(0, 46)), 46)
  t.throws(() => decodeHeader(slot), { code: 'PEM_ERR_BAD_HEADER', message: /slot size/ })
})

test('makeHeader refuses bad fields by PEM_ERR_BAD_ARGUMENT', t => {
  const base = { fileId, keyName: 'k', keyVersion: 1, cipher: 'aes-256-gcm', compression: 'none' } as const
  t.throws(() => makeHeader({ ...base, blockBytes: 3000 }), { code: 'PEM_ERR_BAD_ARGUMENT' })
  t.throws(() => makeHeader({ ...base, blockBytes: 2048 }), { code: 'PEM_ERR_BAD_ARGUMENT' })
  t.throws(() => makeHeader({ ...base, keyName: '' }), { code: 'PEM_ERR_BAD_ARGUMENT' })
  t.throws(() => makeHeader({ ...base, keyVersion: 0 }), { code: 'PEM_ERR_BAD_ARGUMENT' })
  t.throws(() => makeHeader({ ...base, fileId: Buffer.alloc(8) }), { code: 'PEM_ERR_BAD_ARGUMENT' })
})

test('plainSize inverts cipherSize for every size around block edges, in both layouts', t => {
  for (const h of [plainH, zH]) {
    const sizes = [0, 1, 2, 39, 40, 41]
    for (let k = 1; k <= 3; k++) for (const d of [-41, -40, -1, 0, 1, 40]) sizes.push(k * h.blockBytes + d)
    for (const s of sizes) t.is(plainSize(h, cipherSize(h, s)), s, `${h.compression} ${s}`)
    t.is(plainSize(h, 0), 0)
  }
})

test('random access: a range touches exactly the blocks it covers', t => {
  const B = plainH.blockBytes
  t.deepEqual(blockRange(plainH, 0, 1), { first: 0, count: 1 })
  t.deepEqual(blockRange(plainH, B - 1, 2), { first: 0, count: 2 })
  t.deepEqual(blockRange(plainH, B, B), { first: 1, count: 1 })
  t.deepEqual(blockRange(plainH, 3 * B + 100, 5000), { first: 3, count: 2 })
  t.deepEqual(blockRange(plainH, 10 * B, 0), { first: 10, count: 0 })
  t.deepEqual(blockRange(zH, 2 ** 40, 1), { first: 2 ** 40 / zH.blockBytes, count: 1 })
  t.is(slotOffset(plainH, 0), 50)
  t.is(slotOffset(plainH, 3), 50 + 3 * 4136)
  t.is(slotOffset(zH, 2) % 4096, 0, 'compressed slots start on page boundaries')
})

/** A fake record: sealed bytes (random) + trailer. */
function record (h: FileHeader, payload: number, plainLen: number, keyVersion = h.keyVersion): Buffer {
  const r = crypto.randomBytes(payload + RECORD_OVERHEAD)
  writeTrailer(r, r.length - 12, { sealedLen: payload + 28, plainLen, keyVersion })
  return r
}

test('slots: hole, full record at the slot end, short record at the slot start', t => {
  t.deepEqual(parseSlot(zH, 0, Buffer.alloc(zH.slotBytes)), { kind: 'hole' })
  const comp = record(zH, 1000, zH.blockBytes)
  t.is(recordOffset(zH, 2, comp), slotOffset(zH, 3) - comp.length)
  const slot = Buffer.alloc(zH.slotBytes); comp.copy(slot, slot.length - comp.length)
  const s = parseSlot(zH, 2, slot)
  t.is(s.kind, 'record'); t.deepEqual(s.kind === 'record' ? s.record : null, comp)
  const short = record(zH, 500, 500)
  t.is(recordOffset(zH, 5, short), slotOffset(zH, 5))
  t.is(parseSlot(zH, 5, short).kind, 'record')
})

test('slots: a cut last block is PEM_ERR_TRUNCATED; a wrong version PEM_ERR_KEY_VERSION; garbage PEM_ERR_AUTH_FAILED_BLOCK', t => {
  const short = record(plainH, 700, 700)
  t.throws(() => parseSlot(plainH, 4, short.subarray(0, 600)), { code: 'PEM_ERR_TRUNCATED' })
  t.throws(() => parseSlot(plainH, 4, short.subarray(0, 10)), { code: 'PEM_ERR_TRUNCATED' })
  t.throws(() => parseSlot(plainH, 4, record(plainH, 700, 700, 2)), { code: 'PEM_ERR_KEY_VERSION' })
  const full = record(plainH, 4096, 4096)
  t.is(parseSlot(plainH, 1, full).kind, 'record')
  t.throws(() => parseSlot(plainH, 1, full.subarray(0, 4000)), { code: 'PEM_ERR_TRUNCATED' })
  const noTrailer = Buffer.alloc(plainH.slotBytes); noTrailer[5] = 1
  t.throws(() => parseSlot(plainH, 1, noTrailer), { code: 'PEM_ERR_AUTH_FAILED_BLOCK' })
  const badLen = Buffer.from(full); badLen.writeUInt32BE(99_999, badLen.length - 12)
  t.throws(() => parseSlot(plainH, 1, badLen), { code: 'PEM_ERR_AUTH_FAILED_BLOCK' })
  t.throws(() => parseSlot(plainH, 1, record(plainH, 4096, 4096 + 1)), { code: 'PEM_ERR_AUTH_FAILED_BLOCK' })
  t.throws(() => parseSlot(plainH, 1, record(plainH, 4096, 4000)), { code: 'PEM_ERR_AUTH_FAILED_BLOCK' })
})

test('AAD differs in every bound field', t => {
  const aad = (h: FileHeader, block = 7, kv = 1, len = 4096): string => { const b = Buffer.alloc(AAD_BYTES); writeAad(h, block, kv, len, b); return b.toString('hex') }
  const base = aad(plainH)
  const variants = [
    aad(plainH, 8), aad(plainH, 7 + 2 ** 32), aad(plainH, 7, 2), aad(plainH, 7, 1, 4095),
    aad({ ...plainH, fileId: Buffer.alloc(16) }), aad({ ...plainH, cipher: 'chacha20-poly1305' }),
    aad({ ...plainH, compression: 'lz4' }), aad({ ...plainH, blockBytes: 8192 })
  ]
  t.is(new Set([base, ...variants]).size, variants.length + 1)
})

test('crc32 matches the standard check value', t => { t.is(crc32(Buffer.from('123456789')), 0xcbf43926) })

test('data-service bodies: limits and shapes by PEM_ERR_BAD_BODY; a v1 decide reply without grant reads as null', t => {
  const ok = { grant: 'g', header: Buffer.alloc(50), blocks: [0, 1], lens: [1, 2], data: Buffer.alloc(3) }
  t.deepEqual(checkBlocks(ok), ok)
  t.throws(() => checkBlocks({ ...ok, lens: [1, 1] }), { code: 'PEM_ERR_BAD_BODY' })
  t.throws(() => checkBlocks({ ...ok, blocks: [] }), { code: 'PEM_ERR_BAD_BODY' })
  t.throws(() => checkBlocks({ ...ok, blocks: Array(LIMITS.blocksPerBatch + 1).fill(0) }), { code: 'PEM_ERR_BAD_BODY' })
  t.throws(() => checkBlocks({ ...ok, header: Buffer.alloc(5000) }), { code: 'PEM_ERR_BAD_BODY' })
  t.throws(() => checkBlocks({ ...ok, data: 'abc' }), { code: 'PEM_ERR_BAD_BODY' })
  t.throws(() => checkBlocks({ ...ok, blocks: [0, -1] }), { code: 'PEM_ERR_BAD_BODY' })
  const big = LIMITS.batchBytes + 2 * RECORD_OVERHEAD + 1
  t.throws(() => checkBlocks({ ...ok, lens: [big, 0], data: Buffer.alloc(big) }), { code: 'PEM_ERR_BAD_BODY' })
  const reply = { ok: true, reason: 0, rule: 'r', load: { total: 0, cpu: 0, nic: 0, crypto: 0 }, weight: 5, pv: 1, bypass: false, ttl: 1, key: 'k', compression: 'none' }
  t.is(checkDecideReply(reply).grant, null)
  t.is(checkDecideReply({ ...reply, grant: 'ab' }).grant, 'ab')
})
