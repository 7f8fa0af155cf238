// AEAD engine vs node:crypto: every size 0..5000 and random larger ones, with AAD, sync/async, in place, concurrent.
import test, { type ExecutionContext } from 'ava'
import crypto from 'node:crypto'
import {
  OVERHEAD_BYTES, createEngine, importKey, openedLength, sealedLength, type AeadCipher
} from '../../lib/native/crypto-engine'
import { CIPHERS, blocks, nodeOpen, nodeSeal } from './node-aead'

const AAD_LEN = 24

function batch (sizes: number[], aadLen = AAD_LEN): { lens: Uint32Array, input: Buffer, aad: Buffer } {
  const lens = Uint32Array.from(sizes)
  return { lens, input: crypto.randomBytes(sizes.reduce((a, b) => a + b, 0)), aad: crypto.randomBytes(sizes.length * aadLen) }
}

const ALL_SIZES = Array.from({ length: 5001 }, (_, i) => i)

function checkSealedByNode (t: ExecutionContext, cipher: AeadCipher, key: Buffer, sealed: Uint8Array, input: Buffer, lens: Uint32Array, aad: Buffer, aadLen: number): void {
  let bad = 0
  let off = 0
  const nonces = new Set<string>()
  for (const [i, blk] of blocks(sealed, lens, OVERHEAD_BYTES)) {
    const pt = nodeOpen(cipher, key, blk, aad.subarray(i * aadLen, (i + 1) * aadLen))
    if (pt === null || !pt.equals(input.subarray(off, off + lens[i]))) bad++
    nonces.add(Buffer.from(blk.subarray(0, 12)).toString('hex'))
    off += lens[i]
  }
  t.is(bad, 0, 'blocks node:crypto could not open or that differ')
  t.is(nonces.size, lens.length, 'every block has its own nonce')
}

for (const cipher of CIPHERS) {
  for (const mode of ['sync', 'async'] as const) {
    test(`${cipher} ${mode}: every size 0..5000 with AAD seals to what node:crypto opens, and opens what it seals`, async t => {
      const engine = createEngine({ cipher })
      const keyBytes = crypto.randomBytes(32)
      const key = importKey(keyBytes)
      const { lens, input, aad } = batch(ALL_SIZES)
      const sealed = Buffer.alloc(sealedLength(lens))
      const n = mode === 'sync'
        ? engine.sealBatchSync(key, input, lens, aad, AAD_LEN, sealed)
        : await engine.sealBatch(key, input, lens, aad, AAD_LEN, sealed)
      t.is(n, sealed.length)
      checkSealedByNode(t, cipher, keyBytes, sealed, input, lens, aad, AAD_LEN)

      // node:crypto seals, the engine opens.
      const parts: Buffer[] = []
      let off = 0
      for (let i = 0; i < lens.length; i++) {
        parts.push(nodeSeal(cipher, keyBytes, crypto.randomBytes(12), input.subarray(off, off + lens[i]), aad.subarray(i * AAD_LEN, (i + 1) * AAD_LEN)))
        off += lens[i]
      }
      const sealedLens = Uint32Array.from(parts.map(p => p.length))
      const out = Buffer.alloc(openedLength(sealedLens))
      const m = mode === 'sync'
        ? engine.openBatchSync(key, Buffer.concat(parts), sealedLens, aad, AAD_LEN, out)
        : await engine.openBatch(key, Buffer.concat(parts), sealedLens, aad, AAD_LEN, out)
      t.is(m, input.length)
      t.true(out.equals(input))
    })
  }

  test(`${cipher}: random larger blocks (to 3 MiB), no AAD, round trip and node:crypto agree`, async t => {
    const engine = createEngine({ cipher })
    const keyBytes = crypto.randomBytes(32)
    const key = importKey(keyBytes)
    const sizes = Array.from({ length: 12 }, () => 5001 + crypto.randomInt(3 << 20))
    const { lens, input } = batch(sizes, 0)
    const sealed = Buffer.alloc(sealedLength(lens))
    await engine.sealBatch(key, input, lens, null, 0, sealed)
    checkSealedByNode(t, cipher, keyBytes, sealed, input, lens, Buffer.alloc(0), 0)
    const sealedLens = lens.map(l => l + OVERHEAD_BYTES)
    const out = Buffer.alloc(input.length)
    t.is(await engine.openBatch(key, sealed, sealedLens, null, 0, out), input.length)
    t.true(out.equals(input))
  })

  test(`${cipher}: in place (one buffer as input and out), sync and split across threads`, async t => {
    const engine = createEngine({ cipher })
    const keyBytes = crypto.randomBytes(32)
    const key = importKey(keyBytes)
    for (const sizes of [[0, 1, 100, 4096, 5000], Array.from({ length: 64 }, () => crypto.randomInt(40000))]) {
      const { lens, input, aad } = batch(sizes)
      const buf = Buffer.alloc(sealedLength(lens))
      let off = 0
      for (const [i, blk] of blocks(buf, lens, OVERHEAD_BYTES)) { input.copy(blk, 12, off, off + lens[i]); off += lens[i] }
      const async = buf.length > 65536
      if (async) await engine.sealBatch(key, buf, lens, aad, AAD_LEN, buf)
      else engine.sealBatchSync(key, buf, lens, aad, AAD_LEN, buf)
      checkSealedByNode(t, cipher, keyBytes, buf, input, lens, aad, AAD_LEN)
      const sealedLens = lens.map(l => l + OVERHEAD_BYTES)
      const n = async ? await engine.openBatch(key, buf, sealedLens, aad, AAD_LEN, buf) : engine.openBatchSync(key, buf, sealedLens, aad, AAD_LEN, buf)
      t.is(n, input.length)
      off = 0
      let same = 0
      for (const [i, blk] of blocks(buf, lens, OVERHEAD_BYTES)) { if (Buffer.from(blk.subarray(12, 12 + lens[i])).equals(input.subarray(off, off + lens[i]))) same++; off += lens[i] }
      t.is(same, lens.length)
    }
  })

  test(`${cipher}: 48 async batches at once, each with its own key, all correct`, async t => {
    const engine = createEngine({ cipher })
    const jobs = Array.from({ length: 48 }, () => {
      const keyBytes = crypto.randomBytes(32)
      const b = batch(Array.from({ length: 16 }, () => 1 + crypto.randomInt(32768)))
      return { keyBytes, key: importKey(keyBytes), ...b, sealed: Buffer.alloc(sealedLength(b.lens)) }
    })
    await Promise.all(jobs.map(async j => await engine.sealBatch(j.key, j.input, j.lens, j.aad, AAD_LEN, j.sealed)))
    for (const j of jobs) checkSealedByNode(t, cipher, j.keyBytes, j.sealed, j.input, j.lens, j.aad, AAD_LEN)
    const outs = await Promise.all(jobs.map(async j => {
      const out = Buffer.alloc(j.input.length)
      await engine.openBatch(j.key, j.sealed, j.lens.map(l => l + OVERHEAD_BYTES), j.aad, AAD_LEN, out)
      return out
    }))
    t.is(outs.filter((o, i) => o.equals(jobs[i].input)).length, jobs.length)
  })
}
