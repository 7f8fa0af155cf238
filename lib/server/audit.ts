// Append-only, hash-chained audit log: one JSON line per decision that asks for audit and per admin change, each
// naming the SHA-256 of the line before it, with checkpoints signed by the member's key (format: lib/wire/FORMAT.md §7).
// The event loop only serializes: a tick's records go, as one string, to a writer thread that chains, signs and
// appends them with one write (lib/server/audit-chain.worker.ts), at most one batch in flight.
import fs from 'node:fs'
import path from 'node:path'
import { Worker } from 'node:worker_threads'
import type { Identity } from '../crypto/identity'
import { AUDIT_FORMAT, GENESIS_HASH, lineHash } from '../wire/audit-record'
import { type AuditChainOp, type AuditChainStart, AUDIT_STATE, newAuditState, publishHead, readHead } from './audit-chain-state'

export interface AuditEvent {
  kind: 'decision' | 'admin' | 'security' | 'audit'
  [field: string]: unknown
}

/** Where a restart finds the chain when audit.log was rotated away (docs/OPERATIONS.md, Logs). */
export const ROTATED_SUFFIX = '.1'

export interface AuditOptions {
  /** A signed checkpoint after this many records... */
  checkpointEvery?: number
  /** ...and every this many milliseconds while some record is not covered by one. */
  checkpointMs?: number
}

/** What a restart found cut at the end of the log (a crash mid-write). */
export interface TornTail { offset: number, bytes: number, sha256: string }

interface ChainHead { seq: number, hash: string, torn: TornTail | null }

/**
 * Batches handed to the writer thread and not yet written, at most: what a kill of the process can lose beyond the
 * tick's own records (docs/OPERATIONS.md, Logs). With one in flight the event loop waited for the thread often enough
 * to cost about 5 % (0.88x against 0.91 to 0.96x, benchmarks/decisions/audit.bench.ts); four absorb its wake-up delays.
 */
const MAX_IN_FLIGHT = 4
/** How long a wait for the writer thread may take before spd reports it stuck. */
const WRITER_TIMEOUT_MS = 30_000

export class AuditLog {
  private readonly fd: number
  private readonly worker: Worker
  private readonly state: Int32Array
  private pending: string[] = []
  private scheduled = false
  private closed = false
  /** Messages posted to the writer thread; `state[done]` counts those it has written. */
  private posted = 0
  private stampMs = -1
  private stamp = ''
  private readonly timer: NodeJS.Timeout
  private readonly drainAtExit = (): void => { this.drain() }
  /** Set when this start found a torn last line; the `torn` record names it. */
  readonly torn: TornTail | null

  constructor (readonly file: string, identity: Identity, options: AuditOptions = {}) {
    const found = readChainHead(file)
    const fd = this.fd = fs.openSync(file, 'a', 0o600)
    this.torn = found.torn
    if (found.torn !== null) fs.writeSync(fd, '\n') // the cut line stays, whole, for verify to name
    const shared = newAuditState()
    this.state = new Int32Array(shared)
    publishHead(this.state, found.seq, found.hash)
    const signKey = Uint8Array.from(identity.signKey)
    const start: AuditChainStart = { fd, seq: found.seq, head: found.hash, memberId: identity.id, signKey, checkpointEvery: options.checkpointEvery ?? 1000, state: shared }
    this.worker = new Worker(path.join(__dirname, 'audit-chain.worker.js'), { workerData: start })
    signKey.fill(0) // workerData holds its own copy
    this.worker.unref() // the exit hook below waits for what is in flight
    this.worker.on('error', err => { throw err }) // as a failed append did on the event loop: spd stops
    process.on('exit', this.drainAtExit)
    if (found.torn !== null) this.write({ kind: 'audit', event: 'torn', ...found.torn }) // right after the cut line
    this.write({ kind: 'audit', event: 'start', format: AUDIT_FORMAT, member: identity.id })
    this.timer = setInterval(() => this.checkpoint(), options.checkpointMs ?? 10_000).unref()
  }

  /**
   * One record: the writer thread puts `{"seq":N,"prev":"<hash>",` before `"ts":...,` and the event's own fields.
   * Splicing the JSON text instead of spreading the event into a new object, and formatting the time once per
   * millisecond, keeps a line cheap (benchmarks/decisions/audit.bench.ts). `kind` is required, so the event's JSON is
   * never `{}`.
   */
  write (event: AuditEvent): void {
    if (this.closed) return
    this.pending.push(`"ts":"${this.now()}",${JSON.stringify(event).slice(1)}`)
    if (!this.scheduled) {
      this.scheduled = true
      setImmediate(() => { this.handOver() })
    }
  }

  /** A signed checkpoint after what is written so far, if some record is not covered by one yet. */
  checkpoint (): void {
    this.post({ op: 'checkpoint' })
  }

  /** new Date().toISOString(), formatted again only when the millisecond changes. */
  private now (): string {
    const ms = Date.now()
    if (ms !== this.stampMs) { this.stampMs = ms; this.stamp = new Date(ms).toISOString() }
    return this.stamp
  }

  /** Gives the tick's records to the writer thread as one string (waiting while MAX_IN_FLIGHT batches are unwritten). */
  private handOver (): void {
    this.scheduled = false
    if (this.pending.length === 0 || this.closed) return
    const batch = this.pending.join('\n')
    this.pending = []
    this.post(batch)
  }

  private post (message: string | AuditChainOp): void {
    if (this.closed) return
    if (typeof message !== 'string') this.handOver()
    this.waitFor(this.posted + 1 - MAX_IN_FLIGHT)
    this.worker.postMessage(message)
    this.posted++
  }

  /** Blocks until the writer thread has written `count` messages. */
  private waitFor (count: number): void {
    const deadline = Date.now() + WRITER_TIMEOUT_MS
    for (let done = Atomics.load(this.state, AUDIT_STATE.done); done < count; done = Atomics.load(this.state, AUDIT_STATE.done)) {
      if (Atomics.load(this.state, AUDIT_STATE.failed) !== 0) throw new Error(`audit log ${this.file}: the writer thread failed`)
      if (Date.now() > deadline) throw new Error(`audit log ${this.file}: the writer thread did not write for ${WRITER_TIMEOUT_MS} ms`)
      Atomics.wait(this.state, AUDIT_STATE.done, done, 100)
    }
  }

  /** At process exit: what was accepted and handed over reaches the file (nothing more can be accepted then). */
  private drain (): void {
    try { this.handOver(); this.waitFor(this.posted) } catch { /* exiting: the writer thread's own error was reported */ }
  }

  /** Writes what is buffered now and returns once it is in the file (also called on shutdown). */
  flush (): void {
    this.handOver()
    this.waitFor(this.posted)
  }

  /** A clean shutdown ends the file with a checkpoint, so its last line is signed. */
  close (): void {
    if (this.closed) return
    clearInterval(this.timer)
    this.post({ op: 'close' })
    this.waitFor(this.posted)
    this.closed = true
    process.off('exit', this.drainAtExit)
    void this.worker.terminate()
    fs.closeSync(this.fd)
  }

  /** The last record written, after writing what is buffered: a verifier checks that the file ends with it. */
  written (): { seq: number, hash: string } {
    this.flush()
    return readHead(this.state)
  }

  /** The last `n` events, oldest first; reads only the file's tail. */
  tail (n: number): AuditEvent[] {
    this.flush()
    const lines = readTail(this.file, n + 1).lines
    while (lines.length > 0 && lines[lines.length - 1] === '') lines.pop()
    const tail = lines.slice(Math.max(0, lines.length - n))
    return tail.map(l => { try { return JSON.parse(l) as AuditEvent } catch { return { kind: 'security', error: 'unreadable audit line' } } })
  }
}

/**
 * The whole lines of a file's end (at least `n` of them when the file has that many) and, separately, whatever
 * follows the last newline. Reads backwards in 64 KiB steps.
 */
function readTail (file: string, n: number): { lines: string[], fragment: Buffer, size: number } {
  const size = fs.statSync(file).size
  const fd = fs.openSync(file, 'r')
  try {
    let start = size
    let buf = Buffer.alloc(0)
    const step = 64 * 1024
    const count = (b: Buffer): number => { let k = 0; for (let i = b.indexOf(10); i >= 0; i = b.indexOf(10, i + 1)) k++; return k }
    while (start > 0 && count(buf) <= n) {
      const from = Math.max(0, start - step)
      const part = Buffer.alloc(start - from)
      fs.readSync(fd, part, 0, part.length, from)
      buf = Buffer.concat([part, buf])
      start = from
    }
    const end = buf.lastIndexOf(10) + 1
    const lines = buf.subarray(0, end).toString('utf8').split('\n')
    lines.pop() // after the last newline
    if (start > 0) lines.shift() // cut mid-line by the read window
    return { lines, fragment: buf.subarray(end), size }
  } finally { fs.closeSync(fd) }
}

/** Where the chain goes on: the last whole line of the log (or of its rotated predecessor), and a cut line after it. */
function readChainHead (file: string): ChainHead {
  const from = fs.existsSync(file) && fs.statSync(file).size > 0 ? file : file + ROTATED_SUFFIX
  if (!fs.existsSync(from) || fs.statSync(from).size === 0) return { seq: 0, hash: GENESIS_HASH, torn: null }
  const { lines, fragment, size } = readTail(from, 1)
  const torn = from === file && fragment.length > 0 ? { offset: size - fragment.length, bytes: fragment.length, sha256: lineHash(fragment) } : null
  const last = lines[lines.length - 1] ?? ''
  if (last === '') return { seq: 0, hash: GENESIS_HASH, torn }
  let seq = 0
  try { seq = Number((JSON.parse(last) as { seq?: unknown }).seq) || 0 } catch { /* a damaged line: verify names it; the chain still links to its bytes */ }
  return { seq, hash: lineHash(last), torn }
}
