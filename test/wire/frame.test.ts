// Frame codec tests: round trips, released fixtures, and each header/body refusal by its code.
import test from 'ava'
import fs from 'node:fs'
import path from 'node:path'
import { decodeFrame, encodeFrame, FrameSplitter, FLAG_REPLY, MAX_FRAME_BYTES } from '../../lib/wire/frame'
import { Op } from '../../lib/wire/opcodes'
import { REPLY_CHECKS, REQUEST_CHECKS } from '../../lib/wire/packets'

const FIXTURES = path.join(__dirname, '../../../test/fixtures/wire/v1')
const fixtureNames = fs.readdirSync(FIXTURES).filter(f => f.endsWith('.hex')).map(f => f.slice(0, -4))

test('there are v1 fixtures to decode', t => { t.true(fixtureNames.length >= 6) })

for (const name of fixtureNames) {
  test(`v1 fixture ${name} still decodes to its recorded value`, t => {
    const bytes = Buffer.from(fs.readFileSync(path.join(FIXTURES, `${name}.hex`), 'utf8').trim(), 'hex')
    const want = JSON.parse(fs.readFileSync(path.join(FIXTURES, `${name}.json`), 'utf8'))
    const frame = decodeFrame(bytes)
    t.deepEqual({ op: frame.op, id: frame.id, flags: frame.flags, body: frame.body }, want)
    if ((frame.flags & 2) === 0) {
      const check = ((frame.flags & FLAG_REPLY) !== 0 ? REPLY_CHECKS : REQUEST_CHECKS)[frame.op as Op]
      t.truthy(check, 'every fixture opcode has a checker')
      t.notThrows(() => check?.(frame.body))
    }
    t.deepEqual(encodeFrame(frame.op, frame.id, frame.body, frame.flags), bytes, 'encoding is stable')
  })
}

test('round trip keeps op, id, flags and body', t => {
  const body = { a: [1, 2, 3], b: Buffer.from('xyz'), c: null, d: 'é' }
  const f = decodeFrame(encodeFrame(Op.Decide, 0xfffffffe, body, FLAG_REPLY))
  t.is(f.op, Op.Decide); t.is(f.id, 0xfffffffe); t.is(f.flags, FLAG_REPLY)
  t.deepEqual(f.body, { ...body, b: Buffer.from('xyz') })
})

const refusals: Array<[string, (b: Buffer) => Buffer, string]> = [
  ['length below the header', b => { b.writeUInt32BE(5, 0); return b }, 'PEM_ERR_BAD_FRAME'],
  ['length above the limit', b => { b.writeUInt32BE(MAX_FRAME_BYTES + 1, 0); return b }, 'PEM_ERR_FRAME_TOO_LARGE'],
  ['length disagrees with the bytes', b => { b.writeUInt32BE(b.readUInt32BE(0) + 1, 0); return b }, 'PEM_ERR_BAD_FRAME'],
  ['unknown opcode', b => { b[4] = 0xee; return b }, 'PEM_ERR_BAD_OPCODE'],
  ['unknown flag', b => { b[5] = 0x80; return b }, 'PEM_ERR_BAD_FRAME'],
  ['trailing byte after the body', b => { const c = Buffer.concat([b, Buffer.from([0])]); c.writeUInt32BE(c.length - 4, 0); return c }, 'PEM_ERR_BAD_FRAME'],
  ['truncated body', b => { const c = b.subarray(0, b.length - 2); c.writeUInt32BE(c.length - 4, 0); return Buffer.from(c) }, 'PEM_ERR_BAD_FRAME'],
  ['extension type in the body', () => { const c = Buffer.from('0000000910000000000fd4ff00', 'hex'); c.writeUInt32BE(c.length - 4, 0); return c }, 'PEM_ERR_BAD_FRAME'],
  ['shorter than a header', b => b.subarray(0, 7), 'PEM_ERR_BAD_FRAME']
]
for (const [what, mutate, code] of refusals) {
  test(`refused by code: ${what}`, t => {
    const good = encodeFrame(Op.Decide, 9, { x: 'hello', y: [1, 2] })
    t.throws(() => decodeFrame(mutate(Buffer.from(good))), { code })
  })
}

test('splitter reassembles frames cut at every byte boundary', t => {
  const frames = [encodeFrame(Op.Ping, 1, null), encodeFrame(Op.Decide, 2, { p: '/a'.repeat(100) }), encodeFrame(Op.Hello, 3, { v: 1 })]
  const all = Buffer.concat(frames)
  for (let cut = 1; cut < all.length; cut++) {
    const s = new FrameSplitter()
    const got = [...s.push(all.subarray(0, cut)), ...s.push(all.subarray(cut))]
    t.deepEqual(got.map(f => f.id), [1, 2, 3])
  }
})

test('splitter refuses an oversized header before the body arrives', t => {
  const s = new FrameSplitter(1024)
  const head = Buffer.alloc(10); head.writeUInt32BE(1_000_000, 0); head[4] = Op.Decide
  t.throws(() => s.push(head), { code: 'PEM_ERR_FRAME_TOO_LARGE' })
  t.throws(() => s.push(Buffer.alloc(1)), { code: 'PEM_ERR_BAD_FRAME' }, 'a failed stream stays failed')
})

test('64-bit integers decode as numbers, never bigint', t => {
  const body = Buffer.from('cf0000000100000000', 'hex')
  const f = Buffer.concat([Buffer.from('0000000f10000000000a', 'hex'), body])
  t.is(decodeFrame(f).body, 2 ** 32)
})

test('a body nested deeper than the limit is refused', t => {
  let v: unknown = 1
  for (let i = 0; i < 40; i++) v = [v]
  t.throws(() => decodeFrame(encodeFrame(Op.Decide, 1, v)), { code: 'PEM_ERR_BAD_FRAME' })
})
