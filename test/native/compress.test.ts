// Per-block compression: zlib against node:zlib both ways; zstd/lz4/zlib round trips (compressible, incompressible,
// empty) sync and split across threads; garbage or oversized blocks are ENGINE_ERR_COMPRESS, never an overflow.
import test from 'ava'
import crypto from 'node:crypto'
import zlib from 'node:zlib'
import { CODECS, compressBatch, compressBatchSync, decompressBatch, decompressBatchSync, type Codec } from '../../lib/native/compress'
import { raw } from '../../lib/native/binding'

/** Text-like data that compresses, with some randomness so blocks differ. */
function compressible (n: number): Buffer {
  const words = ['policy', 'enforcement', 'module', 'cluster', 'block', 'cipher', 'zstd', 'lz4', ' ', '\n']
  const parts: string[] = []
  let len = 0
  while (len < n) { const w = words[crypto.randomInt(words.length)]; parts.push(w); len += w.length }
  return Buffer.from(parts.join('')).subarray(0, n)
}

interface Batch { lens: Uint32Array, input: Buffer }
function makeBatch (sizes: number[], random: (i: number) => boolean): Batch {
  return { lens: Uint32Array.from(sizes), input: Buffer.concat(sizes.map((s, i) => random(i) ? crypto.randomBytes(s) : compressible(s))) }
}

/** Compresses, then decompresses the non-raw blocks into slots of their original size; returns what it checked. */
async function roundTrip (codec: Codec, b: Batch, async: boolean): Promise<{ raw: number, packed: number, same: boolean }> {
  const out = Buffer.alloc(b.input.length)
  const outLens = new Uint32Array(b.lens.length)
  const packed = async ? await compressBatch(codec, b.input, b.lens, out, outLens) : compressBatchSync(codec, b.input, b.lens, out, outLens)
  const keep = [...outLens.keys()].filter(i => outLens[i] > 0)
  const cLens = Uint32Array.from(keep.map(i => outLens[i]))
  const rooms = Uint32Array.from(keep.map(i => b.lens[i]))
  const plain = Buffer.alloc(b.input.length)
  const total = async
    ? await decompressBatch(codec, out.subarray(0, packed), cLens, plain, rooms)
    : decompressBatchSync(codec, out.subarray(0, packed), cLens, plain, rooms)
  // Reassemble: decompressed blocks in order, raw blocks straight from the input.
  const parts: Buffer[] = []
  let inOff = 0
  let k = 0
  let plainOff = 0
  for (let i = 0; i < b.lens.length; i++) {
    if (outLens[i] > 0) { parts.push(plain.subarray(plainOff, plainOff + rooms[k])); t0(rooms[k] === b.lens[i]); plainOff += rooms[k]; k++ } else parts.push(b.input.subarray(inOff, inOff + b.lens[i]))
    inOff += b.lens[i]
  }
  t0(total === rooms.reduce((a, x) => a + x, 0))
  return { raw: outLens.length - keep.length, packed, same: Buffer.concat(parts).equals(b.input) }
}
function t0 (ok: boolean): void { if (!ok) throw new Error('round trip bookkeeping broke') }

for (const codec of CODECS) {
  for (const async of [false, true]) {
    test(`${codec} ${async ? 'async (split across threads)' : 'sync'}: round trip of compressible, incompressible and empty blocks`, async t => {
      const sizes = Array.from({ length: 200 }, (_, i) => i === 0 ? 0 : i < 100 ? i * 37 : 1 + crypto.randomInt(70000))
      const b = makeBatch(sizes, i => i % 3 === 2)
      const r = await roundTrip(codec, b, async)
      t.true(r.same)
      // Random blocks (every third) and the empty one never shrink; text blocks of 200+ bytes always do.
      t.true(r.raw >= 67 && r.raw < 120, `raw ${r.raw}`)
      t.true(r.packed < b.input.length)
    })
  }
}

test('zlib blocks are what node:zlib speaks, both ways', t => {
  const sizes = Array.from({ length: 300 }, (_, i) => 200 + i * 17)
  const b = makeBatch(sizes, () => false)
  const out = Buffer.alloc(b.input.length)
  const outLens = new Uint32Array(sizes.length)
  compressBatchSync('zlib', b.input, b.lens, out, outLens)
  let off = 0
  let inOff = 0
  let same = 0
  for (let i = 0; i < sizes.length; i++) {
    t.true(outLens[i] > 0)
    if (zlib.inflateSync(out.subarray(off, off + outLens[i])).equals(b.input.subarray(inOff, inOff + sizes[i]))) same++
    off += outLens[i]; inOff += sizes[i]
  }
  t.is(same, sizes.length)
  const theirs = sizes.map((s, i) => zlib.deflateSync(b.input.subarray(sizes.slice(0, i).reduce((a, x) => a + x, 0)).subarray(0, s), { level: 9 }))
  const plain = Buffer.alloc(b.input.length)
  const rooms = Uint32Array.from(sizes)
  t.is(decompressBatchSync('zlib', Buffer.concat(theirs), Uint32Array.from(theirs.map(x => x.length)), plain, rooms), b.input.length)
  t.true(plain.equals(b.input))
})

for (const codec of CODECS) {
  test(`${codec}: garbage, truncation and a block larger than its room are ENGINE_ERR_COMPRESS with the index`, async t => {
    const text = compressible(1000)
    const c = Buffer.alloc(1000)
    const cl = new Uint32Array(1)
    compressBatchSync(codec, text, Uint32Array.from([1000]), c, cl)
    const good = c.subarray(0, cl[0])
    const garbage = Buffer.alloc(64, 0xff)
    const plain = Buffer.alloc(4000)
    const cases: Array<[string, Buffer[], number[], number]> = [
      ['garbage', [good, garbage], [1000, 1000], 1],
      ['truncated', [good, good.subarray(0, good.length - 5)], [1000, 1000], 1],
      ['room too small', [good, good], [1000, 999], 1],
      ['empty block', [Buffer.alloc(0)], [1000], 0]
    ]
    for (const [what, blocks, rooms, index] of cases) {
      const lens = Uint32Array.from(blocks.map(x => x.length))
      const e = t.throws(() => decompressBatchSync(codec, Buffer.concat(blocks), lens, plain, Uint32Array.from(rooms)), { code: 'ENGINE_ERR_COMPRESS' }, what)
      t.is((e as unknown as { index?: number }).index, index, what)
    }
    // Async, split across threads: the bad block is in the second group and its index is rebased.
    const many = Array(40).fill(good) as Buffer[]
    many[33] = garbage
    const e = await t.throwsAsync(decompressBatch(codec, Buffer.concat(many), Uint32Array.from(many.map(x => x.length)), Buffer.alloc(40000), new Uint32Array(40).fill(1000), { syncBelowBytes: 0 }), { code: 'ENGINE_ERR_COMPRESS' })
    t.is((e as unknown as { index?: number }).index, 33)
  })
}

test('compression arguments are checked in TS and C++', t => {
  const lens = Uint32Array.from([100])
  t.throws(() => compressBatchSync('zstd', Buffer.alloc(100), lens, Buffer.alloc(99), new Uint32Array(1)), { code: 'ENGINE_ERR_BAD_LENGTH' })
  t.throws(() => compressBatchSync('zstd', Buffer.alloc(100), lens, Buffer.alloc(100), new Uint32Array(2)), { code: 'ENGINE_ERR_BAD_LENGTH' })
  t.throws(() => compressBatchSync('brotli' as Codec, Buffer.alloc(100), lens, Buffer.alloc(100), new Uint32Array(1)), { code: 'ENGINE_ERR_BAD_ARGUMENT' })
  t.throws(() => compressBatchSync('zlib', Buffer.alloc(100), lens, Buffer.alloc(100), new Uint32Array(1), { level: 10 }), { code: 'ENGINE_ERR_BAD_ARGUMENT' })
  t.throws(() => raw.compress('zstd', 3, Buffer.alloc(100), lens, Buffer.alloc(99), new Uint32Array(1)), { code: 'ENGINE_ERR_BAD_LENGTH' })
  t.throws(() => raw.decompress('lz4', Buffer.alloc(100), lens, Buffer.alloc(10), Uint32Array.from([11])), { code: 'ENGINE_ERR_BAD_LENGTH' })
  t.throws(() => raw.compress('lz4', 0, Buffer.alloc(100), lens, Buffer.alloc(100), new Uint32Array(1)), { code: 'ENGINE_ERR_BAD_ARGUMENT' })
  const buf = Buffer.alloc(300)
  t.throws(() => raw.compress('zstd', 3, buf.subarray(0, 100), lens, buf.subarray(50, 200), new Uint32Array(1)), { code: 'ENGINE_ERR_BAD_ARGUMENT' })
})
