// Decoder fuzzing: every decoder of bytes that arrive from outside (frames and the frame stream, cluster messages,
// encrypted policy sets, encrypted file headers and slots, the configuration store) is fed mutated valid samples
// and random bytes by fast-check, for a time budget per target. Only a PemError with a code from the table (or a
// clean false from a signature or AEAD check) may come out; at length (`npm run fuzz`) no single input may take SLOW_MS
// or more either (a hang). CI checks the outcomes only, for a fixed number of inputs; the time a call takes is
// measured by benchmarks/wire/decoders.bench.ts.
// `npm run fuzz [-- --budget-ms N --only NAME --seed N]` (env FUZZ_BUDGET_MS, FUZZ_SEED) runs it at length; CI
// runs it briefly (test/wire/fuzz.test.ts). Seed corpus: test/fixtures/fuzz/<target>/*.hex (`--write-corpus`
// rewrites it from the samples built here); failing inputs are written to fuzz-failures/.
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import fc from 'fast-check'
import { openPolicySetRow, signClusterMsg, verifyClusterMsg, verifyPolicySet } from '../lib/crypto/cluster-auth'
import { generateIdentity, type Identity } from '../lib/crypto/identity'
import { buildSet } from '../lib/server/cluster/set-codec'
import { emptyState, type ConfigState } from '../lib/server/state'
import { decodeStoreFile, encodeStoreFile } from '../lib/server/store'
import {
  ClusterMsgType, ClusterStatus, MemberState, PendingPhase, checkChecksum, decodeHeartbeatBody, decodeListFetchBody, decodeSetFetchBody,
  encodeHeartbeatBody, encodeListFetchBody, encodeSetFetchBody, encodeUnsigned, splitClusterMsg, type HeartbeatBody
} from '../lib/wire/cluster-msg'
import { crc32 } from '../lib/wire/crc32'
import { isErrorCode, PemError } from '../lib/wire/errors'
import { encodeHeader, makeHeader, decodeHeader, parseSlot, plainSize } from '../lib/wire/file-format'
import { FLAG_REPLY, FrameSplitter, PREAUTH_FRAME_BYTES, decodeFrame, encodeFrame, pack, type FrameHeader } from '../lib/wire/frame'
import { Op } from '../lib/wire/opcodes'
import { parsePolicySet } from '../lib/wire/policy-set'
import { REPLY_CHECKS, REQUEST_CHECKS, checkErrorBody } from '../lib/wire/packets'

const ROOT = path.resolve(__dirname, '../..') // from dist/scripts
export const CORPUS_DIR = path.join(ROOT, 'test/fixtures/fuzz')
/** One decode taking this long counts as a hang (`npm run fuzz`; the benchmark reports the slowest call). */
export const SLOW_MS = 250
/** Frame limit while fuzzing, so that huge length fields are refused and small ones are reachable. */
const FUZZ_FRAME_BYTES = 64 * 1024

export interface FuzzTarget {
  name: string
  /** Valid samples built here (what --write-corpus writes), mutated by the fuzzer with the corpus files. */
  samples: () => Buffer[]
  /** Released fixtures of the format, mutated too (not copied into the corpus). */
  fixtures?: () => Buffer[]
  /** Repairs a checksum after a mutation, so that mutations also reach what the checksum guards. */
  fixup?: (input: Buffer) => Buffer
  /** Decodes one input; may return or throw a PemError with a code from the table. */
  run: (input: Buffer) => void
}

// ---- fixed actors and samples ----
const CLUSTER = crypto.createHash('sha256').update('fuzz cluster').digest()
let actors: { a: Identity, b: Identity } | undefined
const actor = (): { a: Identity, b: Identity } => (actors ??= { a: generateIdentity(), b: generateIdentity() })
const STORE_KEY = Buffer.alloc(32, 0x5a)
const digest = (s: string): Buffer => crypto.createHash('sha256').update(s).digest()

function sampleState (version: number): ConfigState {
  const { a, b } = actor()
  const member = (i: Identity, name: string): ConfigState['members'][string] => ({ id: i.id, key: 'ed25519:' + i.publicKey.toString('base64url'), name, addr: `10.0.0.1:7700`, clusterAddr: `10.0.0.1:7701`, state: 'active' })
  return {
    ...emptyState(),
    version,
    policyText: 'format: 1\nguards: {}\n',
    keys: { finance: [{ version: 1, material: Buffer.alloc(32, 7), created: '2026-01-01T00:00:00.000Z' }] },
    hosts: { ['ab'.repeat(32)]: { id: 'ab'.repeat(32), name: 'web-1', key: 'ed25519:' + 'A'.repeat(43), enrolled: '2026-01-01T00:00:00.000Z' } },
    admins: { admin: { hash: 'scrypt$32768$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' } },
    members: { [a.id]: member(a, 'spd-a'), [b.id]: member(b, 'spd-b') },
    changedAt: '2026-01-01T00:00:00.000Z'
  }
}

function heartbeat (over: Partial<HeartbeatBody> = {}): HeartbeatBody {
  const { a, b } = actor()
  return {
    status: ClusterStatus.SyncDone, installedVersion: 4, installedDigest: digest('v4'), pendingVersion: 5, pendingDigest: digest('v5'), phase: PendingPhase.Held, bar: [3, digest('v3')],
    members: [a, b].map((m, i) => ({ digest: Buffer.from(m.id, 'hex'), addr: `10.0.0.${i + 1}:7701`, state: MemberState.Active })),
    listDigest: Buffer.alloc(32),
    ...over
  }
}

function clusterMsg (type: ClusterMsgType, body: Buffer, counter: number): Buffer {
  const { a } = actor()
  const unsigned = encodeUnsigned(type, Buffer.from(a.id, 'hex'), 3, counter, body)
  return signClusterMsg(CLUSTER, unsigned, a.signKey)
}

function hexFiles (dir: string): Buffer[] {
  if (!fs.existsSync(dir)) return []
  return fs.readdirSync(dir).filter(f => f.endsWith('.hex')).sort().map(f => Buffer.from(fs.readFileSync(path.join(dir, f), 'utf8').trim(), 'hex'))
}

const onlyCodes = (fn: () => unknown): void => {
  try { fn() } catch (err) { if (!(err instanceof PemError)) throw err }
}

const CHECKERS: Array<(v: unknown) => unknown> = [...Object.values(REQUEST_CHECKS), ...Object.values(REPLY_CHECKS), checkErrorBody]

// ---- targets ----
export const FUZZ_TARGETS: FuzzTarget[] = [
  {
    name: 'frame',
    samples: () => [
      encodeFrame(Op.Hello, 1, { min: 1, max: 1, cur: 1, role: 'host' }),
      encodeFrame(Op.Enroll, 2, { token: 'pem1.' + 'A'.repeat(43) + '.' + 'ab'.repeat(32), name: 'web-1' }),
      encodeFrame(Op.Decide, 3, { pv: 4, guard: '/srv/data', path: '/a/b', action: 'read', attrs: { uid: 1, gids: [1, 2], pid: 9, sid: 9, exe: '/bin/cat', exeHash: 'ab'.repeat(32), auth: 1 } }),
      encodeFrame(Op.BlocksSeal, 4, { grant: '0'.repeat(32), header: Buffer.alloc(64, 1), blocks: [0, 1], lens: [3, 2], data: Buffer.from('abcde') }),
      encodeFrame(Op.Ping, 5, { load: { total: 0.5, cpu: 0.5, nic: 0, crypto: 0 }, weight: 5, pv: 4 }, FLAG_REPLY),
      encodeFrame(Op.FileKey, 6, { grant: '0'.repeat(32), header: Buffer.alloc(50, 2) }),
      encodeFrame(Op.FileKey, 6, { sealed: Buffer.alloc(106, 3), ttlMs: 30_000 }, FLAG_REPLY)
    ],
    fixtures: () => hexFiles(path.join(ROOT, 'test/fixtures/wire/v1')),
    run: input => {
      const f = decodeFrame(input, FUZZ_FRAME_BYTES)
      for (const check of CHECKERS) onlyCodes(() => check(f.body))
    }
  },
  {
    // The server side of a channel: the first frame must be a small Hello; after it, as on an enrollment channel,
    // only Enroll is decoded and anything else is skipped unread (lib/channel/channel.ts admit()).
    name: 'frame-stream',
    samples: () => [Buffer.concat([
      encodeFrame(Op.Hello, 1, { min: 1, max: 1, cur: 1, role: 'enroll' }),
      encodeFrame(Op.Decide, 2, { junk: Buffer.alloc(40, 0xc1) }),
      encodeFrame(Op.Enroll, 3, { token: 't', name: 'web-1' })
    ])],
    run: input => {
      let frames = 0
      const gate = (h: FrameHeader): 'decode' | 'skip' => {
        if (frames === 0 && (h.length > PREAUTH_FRAME_BYTES || h.op !== Op.Hello)) throw new PemError('PEM_ERR_BAD_FRAME', 'first frame')
        return frames === 0 || h.op === Op.Enroll ? 'decode' : 'skip'
      }
      const splitter = new FrameSplitter(FUZZ_FRAME_BYTES, undefined, gate)
      const cut = input.length === 0 ? 0 : input[input.length - 1] % (input.length + 1) // chunking taken from the input
      for (const chunk of [input.subarray(0, cut), input.subarray(cut)]) {
        splitter.feed(chunk)
        for (let f = splitter.next(); f !== null; f = splitter.next()) frames++
      }
    }
  },
  {
    name: 'cluster-msg',
    samples: () => [
      clusterMsg(ClusterMsgType.Heartbeat, encodeHeartbeatBody(heartbeat()), 1),
      clusterMsg(ClusterMsgType.Heartbeat, encodeHeartbeatBody(heartbeat({ members: null, listDigest: digest('list'), pendingVersion: 0, pendingDigest: null, phase: PendingPhase.None, bar: null })), 2),
      clusterMsg(ClusterMsgType.SetFetch, encodeSetFetchBody({ version: 5, digest: digest('v5') }), 3),
      clusterMsg(ClusterMsgType.ListFetch, encodeListFetchBody({ listDigest: digest('list') }), 4)
    ],
    fixup: input => {
      if (input.length < 51) return input
      const b = Buffer.from(input)
      const end = Math.min(b.length, 51 + b.readUInt32BE(47))
      b.writeUInt32BE(crc32(b.subarray(51, end)), 43)
      return b
    },
    run: input => {
      const raw = splitClusterMsg(input)
      onlyCodes(() => checkChecksum(raw))
      verifyClusterMsg(CLUSTER, raw, actor().a.publicKey) // false for any change; must not throw
      // past the signature, as a member would after verifying: the strict body decoders
      const decode = raw.header.type === ClusterMsgType.Heartbeat ? decodeHeartbeatBody : raw.header.type === ClusterMsgType.SetFetch ? decodeSetFetchBody : decodeListFetchBody
      decode(raw.body)
    }
  },
  {
    name: 'heartbeat-body',
    samples: () => [encodeHeartbeatBody(heartbeat()), encodeHeartbeatBody(heartbeat({ members: null, listDigest: digest('x') })), encodeSetFetchBody({ version: 1, digest: digest('v1') })],
    run: input => { // accepted when any of the three decoders takes it
      for (const decode of [decodeHeartbeatBody, decodeSetFetchBody]) {
        try { decode(input); return } catch (err) { if (!(err instanceof PemError)) throw err }
      }
      decodeListFetchBody(input)
    }
  },
  {
    name: 'policy-set',
    samples: () => {
      const { a } = actor()
      return [buildSet(CLUSTER, a, pack(sampleState(5)), a.id)]
    },
    run: input => {
      const raw = parsePolicySet(input)
      const { a, b } = actor()
      verifyPolicySet(CLUSTER, raw, a.publicKey) // a clean false for anything altered
      for (let row = 0; row < Math.min(raw.index.length, 4); row++) openPolicySetRow(b, raw, row)
    }
  },
  {
    name: 'file',
    samples: () => [encodeHeader(makeHeader({ fileId: Buffer.alloc(16, 3), keyName: 'finance', keyVersion: 2, cipher: 'chacha20-poly1305', compression: 'zstd' }))],
    fixtures: () => { // the released encrypted files of up to 16 KiB: headers, records, holes, a short last block
      const dir = path.join(ROOT, 'test/fixtures/files/v1')
      return fs.readdirSync(dir).filter(f => f.endsWith('.pemf')).map(f => fs.readFileSync(path.join(dir, f))).filter(f => f.length <= 16 * 1024)
    },
    fixup: input => { // the header's CRC-32 over [0, H-4) at H-4
      if (input.length < 8) return input
      const h = input.readUInt16BE(6)
      if (h < 8 || h > input.length) return input
      const b = Buffer.from(input)
      b.writeUInt32BE(crc32(b.subarray(0, h - 4)), h - 4)
      return b
    },
    run: input => {
      const h = decodeHeader(input)
      plainSize(h, input.length)
      for (let block = 0, at = h.headerBytes; at < input.length && block < 64; block++, at += h.slotBytes) {
        onlyCodes(() => parseSlot(h, block, input.subarray(at, Math.min(input.length, at + h.slotBytes))))
      }
    }
  },
  {
    name: 'store-file',
    samples: () => [Buffer.concat(encodeStoreFile(STORE_KEY, 3, pack(sampleState(3))))],
    run: input => { decodeStoreFile(STORE_KEY, input, 'store.bin') }
  },
  {
    // The content behind the store's AEAD (as if written with the key): sealed here, then decoded.
    name: 'store-content',
    samples: () => [pack(sampleState(1)), pack({ ...emptyState(), version: 1 })],
    run: input => { decodeStoreFile(STORE_KEY, Buffer.concat(encodeStoreFile(STORE_KEY, 1, input)), 'store.bin') }
  }
]

// ---- mutations ----
const INTERESTING_U32 = [0, 1, 6, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x10000, PREAUTH_FRAME_BYTES + 1, 0x7fffffff, 0x80000000, 0xffffffff]
type Mutation =
  | { kind: 'flip', at: number, bit: number } | { kind: 'byte', at: number, value: number } | { kind: 'u32', at: number, value: number }
  | { kind: 'truncate', at: number } | { kind: 'insert', at: number, bytes: Uint8Array } | { kind: 'delete', at: number, n: number }
  | { kind: 'duplicate', at: number, n: number }
const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.nat({ max: 7 }) }),
  fc.record({ kind: fc.constant('byte' as const), at: fc.nat(), value: fc.oneof(fc.constantFrom(0, 0x7f, 0x80, 0xc0, 0xc1, 0xdc, 0xdd, 0xde, 0xdf, 0xff), fc.nat({ max: 255 })) }),
  fc.record({ kind: fc.constant('u32' as const), at: fc.nat(), value: fc.oneof(fc.constantFrom(...INTERESTING_U32), fc.nat()) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }),
  fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), n: fc.integer({ min: 1, max: 16 }) }),
  fc.record({ kind: fc.constant('duplicate' as const), at: fc.nat(), n: fc.integer({ min: 1, max: 64 }) })
)

function mutate (seed: Buffer, ms: Mutation[]): Buffer {
  let b = Buffer.from(seed)
  for (const m of ms) {
    if (b.length === 0) break
    const at = m.at % b.length
    if (m.kind === 'flip') b[at] ^= 1 << m.bit
    else if (m.kind === 'byte') b[at] = m.value
    else if (m.kind === 'u32') { if (b.length >= 4) b.writeUInt32BE(m.value >>> 0, Math.min(at, b.length - 4)) }
    else if (m.kind === 'truncate') b = b.subarray(0, at)
    else if (m.kind === 'insert') b = Buffer.concat([b.subarray(0, at), m.bytes, b.subarray(at)])
    else if (m.kind === 'delete') b = Buffer.concat([b.subarray(0, at), b.subarray(at + m.n)])
    else b = Buffer.concat([b.subarray(0, at + m.n), b.subarray(at)])
  }
  return b
}

/** The corpus files of a target (hex, one input per file). */
export function corpusOf (target: string): Buffer[] { return hexFiles(path.join(CORPUS_DIR, target)) }

function inputArb (t: FuzzTarget, seeds: Buffer[]): fc.Arbitrary<Buffer> {
  const seedArb = fc.nat({ max: seeds.length - 1 }).map(i => seeds[i])
  const mutated = fc.tuple(seedArb, fc.array(mutationArb, { minLength: 1, maxLength: 4 }), fc.boolean())
    .map(([s, ms, fix]) => { const b = mutate(s, ms); return fix && t.fixup !== undefined ? t.fixup(b) : b })
  const spliced = fc.tuple(seedArb, seedArb, fc.nat(), fc.nat()).map(([x, y, i, j]) => Buffer.concat([x.subarray(0, i % (x.length + 1)), y.subarray(j % (y.length + 1))]))
  const random = fc.uint8Array({ maxLength: 512 }).map(u => Buffer.from(u))
  return fc.oneof({ weight: 8, arbitrary: mutated }, { weight: 1, arbitrary: spliced }, { weight: 1, arbitrary: random }, { weight: 1, arbitrary: seedArb })
}

export interface FuzzResult {
  target: string
  runs: number
  /** Inputs that decoded without an error (mutations that stayed valid, or were repaired by fixup). */
  accepted: number
  slowestMs: number
  failure?: { input: Buffer, error: string }
}

/** A slow input is timed twice more: a GC pause or a busy machine does not repeat, a decoder's own cost does. */
function slowAgain (t: FuzzTarget, input: Buffer, hangMs: number): boolean {
  for (let i = 0; i < 2; i++) {
    const t0 = performance.now()
    try { t.run(input) } catch { /* the outcome was judged already */ }
    if (performance.now() - t0 < hangMs) return false
  }
  return true
}

/** How long a target is fuzzed: for about `ms` milliseconds, or for exactly `runs` inputs (whatever the machine's speed). */
export type FuzzBudget = { ms: number } | { runs: number }

/**
 * Fuzz one target within `budget`; a failure ends the run (no shrinking, to keep to the budget). With `hangMs`, an
 * input that takes that long three times over is a failure too.
 */
export function fuzzTarget (t: FuzzTarget, budget: FuzzBudget, seed: number, hangMs?: number): FuzzResult {
  const seeds = [...t.samples(), ...(t.fixtures?.() ?? []), ...corpusOf(t.name)]
  const r: FuzzResult = { target: t.name, runs: 0, accepted: 0, slowestMs: 0 }
  const details = fc.check(fc.property(inputArb(t, seeds), input => {
    r.runs++
    const t0 = performance.now()
    let error: unknown
    try { t.run(input); r.accepted++ } catch (err) { error = err }
    const ms = performance.now() - t0
    r.slowestMs = Math.max(r.slowestMs, ms)
    if (error !== undefined && !(error instanceof PemError && isErrorCode(error.code))) {
      r.failure = { input, error: String((error as Error)?.stack ?? error) }
      return false
    }
    if (hangMs !== undefined && ms >= hangMs && slowAgain(t, input, hangMs)) { r.failure = { input, error: `one input took ${ms.toFixed(0)} ms, and as long twice more` }; return false }
    return true
  }), 'runs' in budget
    ? { numRuns: budget.runs, endOnFailure: true, seed }
    : { numRuns: Number.MAX_SAFE_INTEGER, interruptAfterTimeLimit: budget.ms, markInterruptAsFailure: false, endOnFailure: true, seed })
  if (details.failed && r.failure === undefined) r.failure = { input: Buffer.alloc(0), error: String(details.errorInstance ?? 'property failed') }
  return r
}

// ---- command line ----
function main (): void {
  const args = process.argv.slice(2)
  const flag = (name: string): string | undefined => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : undefined }
  const targets = FUZZ_TARGETS.filter(t => flag('--only') === undefined || t.name === flag('--only'))
  if (targets.length === 0) throw new Error(`no target ${String(flag('--only'))}; targets: ${FUZZ_TARGETS.map(t => t.name).join(', ')}`)
  if (args.includes('--write-corpus')) {
    for (const t of targets) {
      const dir = path.join(CORPUS_DIR, t.name)
      fs.mkdirSync(dir, { recursive: true })
      t.samples().forEach((s, i) => fs.writeFileSync(path.join(dir, `sample-${i}.hex`), s.toString('hex') + '\n'))
    }
    return
  }
  const budgetMs = Number(flag('--budget-ms') ?? process.env.FUZZ_BUDGET_MS ?? 10_000)
  const seed = Number(flag('--seed') ?? process.env.FUZZ_SEED ?? Date.now() % 0x7fffffff)
  console.log(`fuzzing ${targets.length} targets for ${budgetMs} ms each, seed ${seed}`)
  let failed = 0
  for (const t of targets) {
    const r = fuzzTarget(t, { ms: budgetMs }, seed, SLOW_MS)
    console.log(`${t.name.padEnd(16)} ${String(r.runs).padStart(9)} inputs ${String(r.accepted).padStart(8)} accepted  slowest ${r.slowestMs.toFixed(2)} ms  ${r.failure === undefined ? 'ok' : 'FAILED'}`)
    if (r.failure !== undefined) {
      failed++
      const file = path.join('fuzz-failures', `${t.name}-${crypto.createHash('sha256').update(r.failure.input).digest('hex').slice(0, 12)}.hex`)
      fs.mkdirSync(path.dirname(file), { recursive: true })
      fs.writeFileSync(file, r.failure.input.toString('hex') + '\n')
      console.log(`  ${r.failure.error.split('\n').slice(0, 4).join('\n  ')}\n  input: ${file} (once fixed, add it to test/fixtures/fuzz/${t.name}/)`)
    }
  }
  process.exitCode = failed === 0 ? 0 : 1
}

if (require.main === module) main()
