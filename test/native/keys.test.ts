// Key handles and per-file keys: deriveFileKey equals node:crypto hkdfSync over the documented info layout.
import test from 'ava'
import crypto from 'node:crypto'
import {
  HKDF_INFO_FILE_KEY, copyKeyInto, createEngine, deriveFileKey, importKey, sealedLength, type KeyHandle
} from '../../lib/native/crypto-engine'
import { fixture, nodeOpen, nodeSeal } from './node-aead'

function nodeFileKey (key: Buffer, fileId: Buffer, version: number): Buffer {
  const v = Buffer.alloc(4)
  v.writeUInt32BE(version)
  const info = Buffer.concat([Buffer.from(HKDF_INFO_FILE_KEY), fileId, v])
  return Buffer.from(crypto.hkdfSync('sha256', key, Buffer.alloc(0), info, 32))
}

/** Proves which bytes a handle holds without exporting them: the engine seals, node:crypto opens with `bytes`. */
function holds (handle: KeyHandle, bytes: Buffer): boolean {
  const engine = createEngine()
  const lens = Uint32Array.from([64])
  const pt = crypto.randomBytes(64)
  const out = Buffer.alloc(sealedLength(lens))
  engine.sealBatchSync(handle, pt, lens, null, 0, out)
  const back = nodeOpen('aes-256-gcm', bytes, out, Buffer.alloc(0))
  return back !== null && back.equals(pt)
}

test('the info label is the documented one', t => {
  t.is(HKDF_INFO_FILE_KEY, 'pem/v1 file key')
})

test('deriveFileKey matches node:crypto hkdfSync for random keys, file ids and versions', t => {
  for (let i = 0; i < 50; i++) {
    const k = crypto.randomBytes(32)
    const fid = crypto.randomBytes(16)
    const version = i < 3 ? [0, 1, 0xffffffff][i] : crypto.randomInt(2 ** 32)
    const derived = deriveFileKey(importKey(k), fid, version)
    t.true(holds(derived, nodeFileKey(k, fid, version)), `version ${version}`)
  }
})

test('deriveFileKey matches the frozen vector, and node:crypto can open what a derived key seals both ways', t => {
  const v = fixture<{ vectors: Array<{ key: string, fileId: string, version: number, derived: string }> }>('hkdf-file-key.json').vectors[0]
  const handle = deriveFileKey(importKey(Buffer.from(v.key, 'hex')), Buffer.from(v.fileId, 'hex'), v.version)
  const d = Buffer.from(v.derived, 'hex')
  t.true(holds(handle, d))
  t.deepEqual(nodeFileKey(Buffer.from(v.key, 'hex'), Buffer.from(v.fileId, 'hex'), v.version), d)
  const block = nodeSeal('aes-256-gcm', d, crypto.randomBytes(12), Buffer.from('file data'), Buffer.alloc(0))
  const out = Buffer.alloc(9)
  createEngine().openBatchSync(handle, block, Uint32Array.from([block.length]), null, 0, out)
  t.is(out.toString(), 'file data')
})

test('another version, file id or named key gives another key', t => {
  const k = crypto.randomBytes(32)
  const fid = crypto.randomBytes(16)
  const named = importKey(k)
  const want = nodeFileKey(k, fid, 7)
  t.true(holds(deriveFileKey(named, fid, 7), want))
  t.false(holds(deriveFileKey(named, fid, 8), want))
  t.false(holds(deriveFileKey(named, crypto.randomBytes(16), 7), want))
  t.false(holds(deriveFileKey(importKey(crypto.randomBytes(32)), fid, 7), want))
  t.false(holds(named, want))
})

test('bad file ids and versions are refused by code', t => {
  const named = importKey(crypto.randomBytes(32))
  t.throws(() => deriveFileKey(named, Buffer.alloc(15), 1), { code: 'ENGINE_ERR_BAD_LENGTH' })
  for (const v of [-1, 2 ** 32, 1.5, NaN]) t.throws(() => deriveFileKey(named, Buffer.alloc(16), v), { code: 'ENGINE_ERR_BAD_ARGUMENT' })
  named.destroy()
  t.throws(() => deriveFileKey(named, Buffer.alloc(16), 1), { code: 'ENGINE_ERR_BAD_ARGUMENT' })
})

test('copyKeyInto writes a derived key\'s bytes (the HKDF output) into exactly 32 bytes; bad buffers and dead handles throw', t => {
  const k = crypto.randomBytes(32)
  const fid = crypto.randomBytes(16)
  const derived = deriveFileKey(importKey(k), fid, 7)
  const out = Buffer.alloc(32)
  copyKeyInto(derived, out)
  t.true(out.equals(nodeFileKey(k, fid, 7)))
  t.throws(() => copyKeyInto(derived, Buffer.alloc(31)), { code: 'ENGINE_ERR_BAD_LENGTH' })
  t.throws(() => copyKeyInto(derived, 'x' as unknown as Buffer), { code: 'ENGINE_ERR_BAD_ARGUMENT' })
  derived.destroy()
  t.throws(() => copyKeyInto(derived, out), { code: 'ENGINE_ERR_BAD_ARGUMENT' })
})
