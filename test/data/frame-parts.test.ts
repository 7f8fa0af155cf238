// Data batches on the wire: a frame whose body ends in a large Buffer is sent as [head, that Buffer] without copying
// it (lib/wire/frame.ts encodeFrameParts); the bytes must be exactly the one-buffer msgpack encoding, for bin 8/16/32.
// Large Buffers are compared with Buffer.equals / isDeepStrictEqual (ava's deepEqual walks them byte by byte: 40 s).
import test from 'ava'
import crypto from 'node:crypto'
import { isDeepStrictEqual } from 'node:util'
import { FLAG_REPLY, FrameSplitter, SPLIT_BIN_BYTES, decodeFrame, encodeFrameParts, pack } from '../../lib/wire/frame'
import { Op } from '../../lib/wire/opcodes'
import { checkBlocks, checkBlocksReply } from '../../lib/wire/packets'
import { BufferPool } from '../../lib/channel/buffer-pool'

/** The frame as the plain codec would lay it out: header, then msgpackr's encoding of the whole body. */
function reference (op: number, id: number, body: unknown, flags: number): Buffer {
  const payload = pack(body)
  const head = Buffer.alloc(10)
  head.writeUInt32BE(6 + payload.length, 0); head[4] = op; head[5] = flags; head.writeUInt32BE(id, 6)
  return Buffer.concat([head, payload])
}

for (const n of [...new Set([0, 1, 255, 4096, SPLIT_BIN_BYTES - 1, SPLIT_BIN_BYTES, 65535, 65536, 131072 + 32 * 40, 2 * 1024 * 1024])]) {
  test(`a body ending in a ${n}-byte Buffer encodes to the same bytes, and decodes to the same body`, t => {
    const data = crypto.randomBytes(n)
    const per = Math.max(4096, Math.ceil(n / 256)) // at most 256 blocks in a batch
    const blocks = Math.max(1, Math.ceil(n / per))
    const lens = Array.from({ length: blocks }, (_, i) => i < blocks - 1 ? per : n - per * (blocks - 1))
    const body = { grant: 'ab'.repeat(16), header: crypto.randomBytes(50), blocks: Array.from({ length: blocks }, (_, i) => i), lens, data }
    const parts = encodeFrameParts(Op.BlocksSeal, 0x01020304, body)
    t.is(parts.length, n >= SPLIT_BIN_BYTES ? 2 : 1, 'only large Buffers ride as their own part')
    if (parts.length === 2) t.is(parts[1], data, 'the bulk is the caller\'s Buffer, not a copy')
    const bytes = Buffer.concat(parts)
    t.true(bytes.equals(reference(Op.BlocksSeal, 0x01020304, body, 0)))
    const f = decodeFrame(bytes)
    t.is(f.id, 0x01020304)
    if (n > 0) t.true(isDeepStrictEqual(checkBlocks(f.body), body))
    const reply = { lens, data }
    const rb = Buffer.concat(encodeFrameParts(Op.BlocksOpen, 7, reply, FLAG_REPLY))
    t.true(rb.equals(reference(Op.BlocksOpen, 7, reply, FLAG_REPLY)))
    const got = new FrameSplitter().push(rb)
    t.is(got.length, 1)
    t.true(isDeepStrictEqual(checkBlocksReply(got[0].body), reply))
  })
}

test('a large Buffer that is not the last field, or a body that is not a map, is encoded the ordinary way', t => {
  const big = crypto.randomBytes(SPLIT_BIN_BYTES * 2)
  for (const body of [{ data: big, after: 1 }, [1, big], big, { nested: { data: big } }, { data: big, u: undefined }]) {
    const parts = encodeFrameParts(Op.Ping, 1, body)
    t.is(parts.length, 1)
    t.true(parts[0].equals(reference(Op.Ping, 1, body, 0)))
  }
})

test('with a pool, a large frame arriving in pieces is assembled in a pooled buffer; small and whole frames are not', t => {
  const pool = new BufferPool()
  const data = crypto.randomBytes(200_000)
  const big = Buffer.concat(encodeFrameParts(Op.BlocksOpen, 9, { lens: [data.length], data }, FLAG_REPLY))
  const small = Buffer.concat(encodeFrameParts(Op.BlocksOpen, 10, { lens: [3], data: Buffer.from('abc') }, FLAG_REPLY))
  const stream = Buffer.concat([small, big, small, big])
  for (let trial = 0; trial < 20; trial++) {
    const splitter = new FrameSplitter(undefined, pool)
    const frames = []
    for (let at = 0; at < stream.length;) {
      const n = 1 + crypto.randomInt(trial % 2 === 0 ? 40_000 : 17) // big pieces, and tiny ones around the headers
      frames.push(...splitter.push(stream.subarray(at, at + n)))
      at += n
    }
    t.deepEqual(frames.map(f => f.id), [10, 9, 10, 9])
    for (const f of frames) {
      const body = checkBlocksReply(f.body)
      if (f.id === 10) { t.is(f.pooled, undefined); t.deepEqual(body.data, Buffer.from('abc')); continue }
      t.not(f.pooled, undefined)
      t.is(body.data.buffer, (f.pooled as Buffer).buffer, 'the body is a view of the pooled buffer')
      t.true(body.data.equals(data))
      pool.give(f.pooled as Buffer)
    }
  }
  t.true(pool.retained > 0)
  // A frame that arrives whole in one chunk is a view of that chunk, never copied.
  const [whole] = new FrameSplitter(undefined, pool).push(big)
  t.is(whole.pooled, undefined)
})
