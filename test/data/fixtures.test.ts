// Golden files of encrypted-file format v1 (test/fixtures/files/v1, sealed under the checked-in key.hex as key
// 'fixture' version 3) must keep opening: each is decrypted here with the engine directly, block by block,
// independently of spd's batch handler, and its plaintext digest compared with manifest.json.
import test from 'ava'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { decompressBatchSync, type Codec } from '../../lib/native/compress'
import { createEngine, deriveFileKey, importKey } from '../../lib/native/crypto-engine'
import {
  AAD_BYTES, NONCE_BYTES, TAG_BYTES, blockCount, decodeHeader, isCompressed, parseSlot, plainSize, slotOffset, writeAad
} from '../../lib/wire/file-format'

const DIR = path.join(__dirname, '../../../test/fixtures/files/v1')
interface Entry { file: string, cipher: 'aes-256-gcm' | 'chacha20-poly1305', compression: string, blockBytes: number, keyName: string, keyVersion: number, plainBytes: number, sha256: string }
const manifest = JSON.parse(fs.readFileSync(path.join(DIR, 'manifest.json'), 'utf8')) as Entry[]
const baseKey = importKey(Buffer.from(fs.readFileSync(path.join(DIR, 'key.hex'), 'utf8').trim(), 'hex'))

function open (bytes: Buffer): Buffer {
  const h = decodeHeader(bytes)
  const engine = createEngine({ cipher: h.cipher })
  const key = deriveFileKey(baseKey, h.fileId, h.keyVersion)
  const size = plainSize(h, bytes.length)
  const out = Buffer.alloc(size)
  for (let b = 0; b < blockCount(h, bytes.length); b++) {
    const s = parseSlot(h, b, bytes.subarray(slotOffset(h, b), Math.min(bytes.length, slotOffset(h, b) + h.slotBytes)))
    if (s.kind === 'hole') continue
    const { record, trailer } = s
    const aad = Buffer.alloc(AAD_BYTES)
    writeAad(h, b, trailer.keyVersion, trailer.plainLen, aad)
    const payload = Buffer.alloc(trailer.sealedLen - NONCE_BYTES - TAG_BYTES)
    engine.openBatchSync(key, record.subarray(0, trailer.sealedLen), new Uint32Array([trailer.sealedLen]), aad, AAD_BYTES, payload)
    const dst = out.subarray(b * h.blockBytes, b * h.blockBytes + trailer.plainLen)
    if (isCompressed(trailer)) {
      const lens = new Uint32Array([trailer.plainLen])
      decompressBatchSync(h.compression as Codec, payload, new Uint32Array([payload.length]), dst, lens)
    } else payload.copy(dst)
  }
  return out
}

test('the v1 fixture set covers both ciphers, every codec, a hole and an empty file', t => {
  t.deepEqual(new Set(manifest.map(e => e.cipher)), new Set(['aes-256-gcm', 'chacha20-poly1305']))
  t.deepEqual(new Set(manifest.map(e => e.compression)), new Set(['none', 'zstd', 'lz4', 'zlib']))
  t.true(manifest.some(e => e.plainBytes === 0))
  t.true(manifest.some(e => e.file.includes('sparse')))
})

for (const e of manifest) {
  test(`fixture ${e.file} decodes and decrypts to its recorded digest`, t => {
    const bytes = fs.readFileSync(path.join(DIR, e.file))
    const h = decodeHeader(bytes)
    t.like(h, { keyName: e.keyName, keyVersion: e.keyVersion, cipher: e.cipher, compression: e.compression, blockBytes: e.blockBytes })
    t.is(plainSize(h, bytes.length), e.plainBytes, 'the plaintext size comes from the file size alone')
    t.is(crypto.createHash('sha256').update(open(bytes)).digest('hex'), e.sha256)
  })
}

test('a fixture with a flipped ciphertext bit no longer opens', t => {
  const bytes = fs.readFileSync(path.join(DIR, 'aes-none-10000.pemf'))
  bytes[bytes.length - 100] ^= 4
  t.throws(() => open(bytes), { code: 'ENGINE_ERR_AUTH' })
})
