// AEAD refusals by code: tampered nonce/ciphertext/tag, wrong AAD or key -> ENGINE_ERR_AUTH at the right index;
// bad lengths -> ENGINE_ERR_BAD_LENGTH in TS and in C++ (raw binding); misuse -> ENGINE_ERR_BAD_ARGUMENT.
import test from 'ava'
import crypto from 'node:crypto'
import { raw } from '../../lib/native/binding'
import { OVERHEAD_BYTES, createEngine, generateKey, importKey, sealedLength } from '../../lib/native/crypto-engine'
import { PemError } from '../../lib/wire/errors'
import { CIPHERS } from './node-aead'

const AAD = 16
const indexOf = (e: unknown): number | undefined => (e as { index?: number } | undefined)?.index

function sealed (engine: ReturnType<typeof createEngine>, key: ReturnType<typeof generateKey>, sizes: number[]) {
  const lens = Uint32Array.from(sizes)
  const input = crypto.randomBytes(sizes.reduce((a, b) => a + b, 0))
  const aad = crypto.randomBytes(sizes.length * AAD)
  const buf = Buffer.alloc(sealedLength(lens))
  engine.sealBatchSync(key, input, lens, aad, AAD, buf)
  const offs: number[] = []
  let o = 0
  for (const l of sizes) { offs.push(o); o += l + OVERHEAD_BYTES }
  return { lens, input, aad, buf, offs, sealedLens: lens.map(l => l + OVERHEAD_BYTES) }
}

for (const cipher of CIPHERS) {
  const where: Array<[string, (len: number) => number]> = [
    ['nonce', () => 3], ['ciphertext', len => 12 + (len >> 1)], ['tag', len => 12 + len + 15]
  ]
  for (const [part, at] of where) {
    for (const mode of ['sync', 'async'] as const) {
      test(`${cipher} ${mode}: a flipped bit in the ${part} of block 6 fails with ENGINE_ERR_AUTH index 6`, async t => {
        const engine = createEngine({ cipher })
        const key = generateKey()
        // 10 blocks of 20 KiB: the async form runs in several groups, so block 6 is not in the first one.
        const s = sealed(engine, key, Array(10).fill(20000))
        s.buf[s.offs[6] + at(20000)] ^= 0x10
        const out = Buffer.alloc(s.input.length, 0xee)
        const e = mode === 'sync'
          ? t.throws(() => engine.openBatchSync(key, s.buf, s.sealedLens, s.aad, AAD, out))
          : await t.throwsAsync(engine.openBatch(key, s.buf, s.sealedLens, s.aad, AAD, out))
        t.true(e instanceof PemError)
        t.is((e as PemError).code, 'ENGINE_ERR_AUTH')
        t.is(indexOf(e), 6)
        t.true(out.subarray(0, 6 * 20000).equals(s.input.subarray(0, 6 * 20000)), 'blocks before the bad one are opened')
        t.true(out.subarray(6 * 20000, 7 * 20000).every(b => b === 0), 'the bad block output is wiped')
      })
    }
  }

  test(`${cipher}: wrong AAD for block 3, wrong key, and the lowest of two bad blocks`, async t => {
    const engine = createEngine({ cipher })
    const key = generateKey()
    const s = sealed(engine, key, [0, 1, 500, 4096, 9, 33])
    const out = Buffer.alloc(s.input.length)
    const aad = Buffer.from(s.aad)
    aad[3 * AAD] ^= 1
    t.is(indexOf(t.throws(() => engine.openBatchSync(key, s.buf, s.sealedLens, aad, AAD, out), { code: 'ENGINE_ERR_AUTH' })), 3)
    t.is(indexOf(t.throws(() => engine.openBatchSync(generateKey(), s.buf, s.sealedLens, s.aad, AAD, out), { code: 'ENGINE_ERR_AUTH' })), 0)
    const big = sealed(engine, key, Array(12).fill(30000))
    big.buf[big.offs[9] + 40] ^= 1
    big.buf[big.offs[4] + 40] ^= 1
    const bigOut = Buffer.alloc(big.input.length)
    const e = await t.throwsAsync(engine.openBatch(key, big.buf, big.sealedLens, big.aad, AAD, bigOut), { code: 'ENGINE_ERR_AUTH' })
    t.is(indexOf(e), 4)
    // A 0-byte block carries only its tag: moving it to another block's AAD fails too.
    const swapped = Buffer.from(s.aad)
    s.aad.copy(swapped, 0, AAD, 2 * AAD)
    t.is(indexOf(t.throws(() => engine.openBatchSync(key, s.buf, s.sealedLens, swapped, AAD, out), { code: 'ENGINE_ERR_AUTH' })), 0)
  })
}

test('lengths are checked in TS: ENGINE_ERR_BAD_LENGTH', t => {
  const engine = createEngine()
  const key = generateKey()
  const lens = Uint32Array.from([10, 20])
  const input = Buffer.alloc(30)
  const aad = Buffer.alloc(2 * AAD)
  const code = { code: 'ENGINE_ERR_BAD_LENGTH' as const }
  t.throws(() => engine.sealBatchSync(key, input, lens, aad, AAD, Buffer.alloc(30 + 55)), code)
  t.throws(() => engine.sealBatchSync(key, Buffer.alloc(29), lens, aad, AAD, Buffer.alloc(100)), code)
  t.throws(() => engine.sealBatchSync(key, input, lens, Buffer.alloc(31), AAD, Buffer.alloc(100)), code)
  t.throws(() => engine.openBatchSync(key, Buffer.alloc(27), Uint32Array.from([27]), null, 0, Buffer.alloc(10)), code)
  t.throws(() => engine.sealBatchSync(key, input, lens, null, 0.5, Buffer.alloc(100)), code)
  t.throws(() => importKey(Buffer.alloc(31)), code)
})

test('lengths are checked in C++ too (raw binding, no TS checks)', t => {
  const engine = raw.createEngine('default', 'aes-256-gcm', true)
  const key = raw.generateKey()
  const lens = Uint32Array.from([10, 20])
  const aad = Buffer.alloc(0)
  const code = { code: 'ENGINE_ERR_BAD_LENGTH' }
  t.throws(() => engine.seal(key, Buffer.alloc(30), lens, aad, 0, Buffer.alloc(30 + 55)), code)
  t.throws(() => engine.seal(key, Buffer.alloc(31), lens, aad, 0, Buffer.alloc(100)), code)
  t.throws(() => engine.seal(key, Buffer.alloc(30), lens, Buffer.alloc(3), 0, Buffer.alloc(100)), code)
  t.throws(() => engine.open(key, Buffer.alloc(27), Uint32Array.from([27]), aad, 0, Buffer.alloc(10)), code)
  t.throws(() => engine.open(key, Buffer.alloc(56), Uint32Array.from([28, 28]), aad, 0, Buffer.alloc(56 + 1)), { code: 'ENGINE_ERR_AUTH' })
  const buf = Buffer.alloc(40)
  t.throws(() => engine.seal(key, buf, Uint32Array.from([13]), aad, 0, buf), code) // in place needs exactly 13 + 28
  t.throws(() => raw.createKey(Buffer.alloc(33)), code)
  t.throws(() => raw.deriveFileKey(key, Buffer.alloc(15), 1), code)
})

test('misuse is ENGINE_ERR_BAD_ARGUMENT: overlap, destroyed or foreign key, unknown cipher', t => {
  const engine = createEngine()
  const key = generateKey()
  const buf = Buffer.alloc(200)
  const code = { code: 'ENGINE_ERR_BAD_ARGUMENT' as const }
  t.throws(() => engine.sealBatchSync(key, buf.subarray(0, 10), Uint32Array.from([10]), null, 0, buf.subarray(5, 43)), code)
  t.throws(() => raw.createEngine('default', 'aes-256-gcm', true).seal(key, buf.subarray(0, 10), Uint32Array.from([10]), Buffer.alloc(0), 0, buf.subarray(5, 43)), code)
  t.throws(() => engine.sealBatchSync({ live: true, destroy () {} }, buf.subarray(0, 10), Uint32Array.from([10]), null, 0, Buffer.alloc(38)), code)
  const k2 = generateKey()
  t.true(k2.live)
  k2.destroy()
  t.false(k2.live)
  t.throws(() => engine.sealBatchSync(k2, buf.subarray(0, 10), Uint32Array.from([10]), null, 0, Buffer.alloc(38)), code)
  t.throws(() => createEngine({ cipher: 'aes-128-cbc' as 'aes-256-gcm' }), code)
  t.throws(() => engine.sealBatchSync(key, buf as unknown as Uint8Array, [10] as unknown as Uint32Array, null, 0, buf), code)
})
