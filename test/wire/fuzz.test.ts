// Fuzzing the frame decoders and body checkers with fast-check: random and mutated frames (bit flips, truncation,
// length edits, random msgpack) must decode or fail with a PemError of a known code, never crash. Then every other
// decoder (scripts/fuzz.ts targets: frame stream, cluster messages, policy sets, file headers and slots, the store)
// for a short fixed budget each; `npm run fuzz` runs the same targets at length. How long one call takes is a
// benchmark's claim, not a test's: benchmarks/wire/decoders.bench.ts.
import test from 'ava'
import fc from 'fast-check'
import fs from 'node:fs'
import path from 'node:path'
import { isErrorCode, PemError } from '../../lib/wire/errors'
import { FLAG_ERROR, FLAG_REPLY, FRAME_HEADER_BYTES, FrameSplitter, decodeFrame, encodeFrame, pack } from '../../lib/wire/frame'
import { Op } from '../../lib/wire/opcodes'
import { REPLY_CHECKS, REQUEST_CHECKS, checkErrorBody } from '../../lib/wire/packets'
import { FUZZ_TARGETS, corpusOf, fuzzTarget } from '../../scripts/fuzz'

const SEED = Number(process.env.FUZZ_SEED ?? 20261127)
const PROTO_KEYS = Object.getOwnPropertyNames(Object.prototype).sort().join()
const MAX = 64 * 1024 // frame limit for the fuzzer, so huge length fields are refused and small ones are reachable

// ---- seeds: a valid frame of every opcode (request, reply, error), plus every released fixture ----
const attrs = { uid: 1000, gids: [1000, 27], user: 'ann', groups: ['ann', 'sudo'], pid: 4242, sid: 4000, exe: '/usr/bin/cat', exeHash: 'ab'.repeat(32), auth: 1 }
const load = { total: 0.42, cpu: 0.3, nic: 0.1, crypto: 0.05 }
const SAMPLES: Partial<Record<number, { req: unknown, rep: unknown }>> = {
  [Op.Hello]: { req: { min: 1, max: 1, cur: 1, role: 'host' }, rep: { version: 1, server: 'cd'.repeat(32), name: 'spd-a', pv: 12 } },
  [Op.Enroll]: { req: { token: 'A'.repeat(43), name: 'web-01' }, rep: { host: 'ef'.repeat(32), servers: [{ id: '01'.repeat(32), key: 'ed25519:' + 'B'.repeat(43), addr: '10.0.0.1:7000', name: 'spd-a' }] } },
  [Op.Ping]: { req: null, rep: { load, weight: 20, pv: 12 } },
  [Op.Decide]: {
    req: { pv: 12, guard: '/srv/data', path: '/reports/q3.pdf', action: 'read', attrs, bytes: 65536 },
    rep: { ok: true, reason: 0, rule: 'r-finance', load, weight: 20, pv: 12, bypass: false, ttl: 5000, key: 'finance', compression: 'zstd', placement: 'host' }
  },
  [Op.FileKey]: { req: { grant: 'ab'.repeat(16), header: Buffer.alloc(50, 7) }, rep: { sealed: Buffer.alloc(106, 9), ttlMs: 5000 } }
}
const seeds: Buffer[] = []
for (const op of Object.values(Op)) {
  const s = SAMPLES[op] ?? { req: { any: [1, 'x', null] }, rep: [op, 'reply'] }
  seeds.push(encodeFrame(op, 7, s.req), encodeFrame(op, 7, s.rep, FLAG_REPLY), encodeFrame(op, 7, [10, 'bad body'], FLAG_REPLY | FLAG_ERROR))
}
const FIXTURES = path.join(__dirname, '../../../test/fixtures/wire/v1')
for (const f of fs.readdirSync(FIXTURES).filter(n => n.endsWith('.hex'))) seeds.push(Buffer.from(fs.readFileSync(path.join(FIXTURES, f), 'utf8').trim(), 'hex'))
const CHECKERS: Array<[string, (v: unknown) => unknown]> = [
  ...Object.entries(REQUEST_CHECKS).map(([op, c]) => [`request 0x${Number(op).toString(16)}`, c] as [string, (v: unknown) => unknown]),
  ...Object.entries(REPLY_CHECKS).map(([op, c]) => [`reply 0x${Number(op).toString(16)}`, c] as [string, (v: unknown) => unknown]),
  ['error body', checkErrorBody]
]
const SAMPLE_BODIES: unknown[] = Object.values(SAMPLES).flatMap(s => [s?.req, s?.rep])

// ---- mutations ----
const seedArb = fc.nat({ max: seeds.length - 1 }).map(i => seeds[i])
const flipArb = fc.tuple(seedArb, fc.array(fc.tuple(fc.nat(), fc.nat({ max: 7 })), { minLength: 1, maxLength: 8 }))
  .map(([s, flips]) => { const b = Buffer.from(s); for (const [pos, bit] of flips) b[pos % b.length] ^= 1 << bit; return b })
const truncArb = fc.tuple(seedArb, fc.nat()).map(([s, n]) => s.subarray(0, n % (s.length + 1)))
const lengthArb = fc.tuple(seedArb, fc.oneof(fc.integer({ min: -16, max: 16 }), fc.constantFrom(0, 1, 5, 6, 0x7fffffff, 0xffffffff), fc.nat()))
  .map(([s, v]) => {
    const b = Buffer.from(s)
    const len = v >= -16 && v <= 16 ? b.readUInt32BE(0) + v : v
    b.writeUInt32BE(Math.max(0, len) >>> 0, 0)
    return b
  })
const headerArb = fc.tuple(seedArb, fc.nat({ max: FRAME_HEADER_BYTES - 1 }), fc.nat({ max: 255 }))
  .map(([s, i, v]) => { const b = Buffer.from(s); b[i] = v; return b })
// random msgpack bodies (arbitrary values, and raw bytes) under a valid header of any opcode and flags
const opArb = fc.constantFrom(...Object.values(Op))
const valueArb = fc.oneof(fc.anything({ maxDepth: 4, withBigInt: false, withTypedArray: true, withDate: true, withMap: true, withSet: true, withNullPrototype: true }), fc.constantFrom(...SAMPLE_BODIES))
const msgpackArb = fc.tuple(opArb, fc.nat({ max: 3 }), fc.nat(), fc.oneof(valueArb.map(v => safePack(v)), fc.uint8Array({ maxLength: 64 }).map(u => Buffer.from(u))))
  .map(([op, flags, id, body]) => {
    const b = Buffer.allocUnsafe(FRAME_HEADER_BYTES + body.length)
    b.writeUInt32BE(FRAME_HEADER_BYTES - 4 + body.length, 0); b[4] = op; b[5] = flags; b.writeUInt32BE(id >>> 0, 6); body.copy(b, FRAME_HEADER_BYTES)
    return b
  })
const randomArb = fc.uint8Array({ maxLength: 80 }).map(u => Buffer.from(u))
const frameArb = fc.oneof(flipArb, truncArb, lengthArb, headerArb, msgpackArb, randomArb, seedArb)

function safePack (v: unknown): Buffer {
  try { return pack(v) } catch { return pack(null) }
}

// ---- properties ----
/** Run fn; it may return or throw a PemError with a code from the table. Anything else fails the property. */
function onlyPemErrors (fn: () => void): void {
  try {
    fn()
  } catch (err) {
    if (!(err instanceof PemError) || !isErrorCode(err.code)) throw new Error(`not a coded PemError: ${String((err as Error)?.stack ?? err)}`)
  }
}

function checkAll (body: unknown): void {
  for (const [, check] of CHECKERS) {
    onlyPemErrors(() => {
      const out = check(body)
      // what a checker accepts must survive a re-encode and pass the same checker again
      const again = check(decodeFrame(encodeFrame(Op.Ping, 1, out)).body)
      if (JSON.stringify(again) !== JSON.stringify(out)) throw new Error('checker output is not stable under re-encoding')
    })
  }
}

test('decodeFrame and every body checker: 60,000 random and mutated frames', t => {
  let decoded = 0
  fc.assert(fc.property(frameArb, (buf) => {
    onlyPemErrors(() => {
      const f = decodeFrame(buf, MAX)
      decoded++
      if (f.id !== buf.readUInt32BE(6) || f.op !== buf[4]) throw new Error('header fields not decoded as sent')
      checkAll(f.body)
    })
  }), { numRuns: 60_000, seed: SEED })
  t.true(decoded > 5_000, `${decoded} frames decoded`) // the mutations must not all be trivially invalid
  t.log(`${decoded} of 60000 decoded`)
  t.is(Object.getOwnPropertyNames(Object.prototype).sort().join(), PROTO_KEYS, 'Object.prototype untouched')
  t.is(({} as Record<string, unknown>).polluted, undefined)
})

test('every body checker: 20,000 arbitrary values', t => {
  fc.assert(fc.property(valueArb, (v) => { checkAll(v) }), { numRuns: 20_000, seed: SEED + 1 })
  t.pass()
})

test('FrameSplitter under random chunking: 25,000 streams of valid and mutated frames', t => {
  const streamArb = fc.tuple(fc.array(fc.oneof(seedArb, seedArb, frameArb), { minLength: 1, maxLength: 6 }), fc.array(fc.nat({ max: 40 }), { minLength: 1, maxLength: 12 }))
  let clean = 0
  fc.assert(fc.property(streamArb, ([frames, cuts]) => {
    const stream = Buffer.concat(frames)
    const splitter = new FrameSplitter(MAX)
    let off = 0; let i = 0; let got = 0; let failed = false
    while (off < stream.length && !failed) {
      const n = Math.min(stream.length - off, cuts[i++ % cuts.length] + 1)
      const chunk = stream.subarray(off, off + n)
      off += n
      onlyPemErrors(() => {
        try { got += splitter.push(chunk).length } catch (err) { failed = true; throw err }
      })
    }
    if (failed) {
      // once failed, the splitter stays failed (the channel must close)
      try { splitter.push(Buffer.from(seeds[0])); throw new Error('a failed splitter accepted more data') } catch (err) { if (!(err instanceof PemError)) throw err }
    }
    // a stream made only of valid frames yields exactly those frames, whatever the chunking
    if (frames.every(f => seeds.includes(f))) {
      clean++
      if (failed || got !== frames.length) throw new Error(`valid stream of ${frames.length} frames gave ${got} (failed=${String(failed)})`)
    }
  }), { numRuns: 25_000, seed: SEED + 2 })
  t.true(clean > 1_000, `${clean} clean streams checked`)
})

const CI_RUNS = 300 // inputs per target: a few seconds for all of them on an idle machine, however long under load

for (const target of FUZZ_TARGETS) {
  test(`decoder fuzzing, ${target.name}: ${CI_RUNS} mutated samples and corpus inputs, only coded PemErrors`, t => {
    const corpus = corpusOf(target.name)
    t.true(corpus.length > 0, `test/fixtures/fuzz/${target.name}/ holds a seed corpus`)
    for (const valid of [...target.samples(), ...corpus]) t.notThrows(() => target.run(valid), 'an unmutated sample decodes')
    const r = fuzzTarget(target, { runs: CI_RUNS }, SEED + 3)
    t.is(r.failure, undefined, r.failure === undefined ? '' : `${r.failure.error}\ninput: ${r.failure.input.toString('hex').slice(0, 512)}`)
    t.is(r.runs, CI_RUNS)
    t.true(r.accepted >= 1, 'valid inputs decode')
    t.log(`${r.runs} inputs, ${r.accepted} accepted`)
  })
}
