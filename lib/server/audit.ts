// Append-only, hash-chained audit log: one JSON line per decision that asks for audit and per admin change, each
// naming the SHA-256 of the line before it, with checkpoints signed by the member's key (format: lib/wire/FORMAT.md §7).
// Lines are buffered for one tick and appended with a single write, so auditing costs no syscall per decision.
import fs from 'node:fs'
import { SIG_CTX_AUDIT } from '../crypto/contexts'
import type { Identity } from '../crypto/identity'
import { sign } from '../crypto/sign'
import { AUDIT_FORMAT, checkpointMessage, GENESIS_HASH, lineHash } from '../wire/audit-record'

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

export class AuditLog {
  private fd: number
  private pending: string[] = []
  private scheduled = false
  private stampMs = -1
  private stamp = ''
  private seq: number
  private head: string
  private unsigned = 0
  private readonly timer: NodeJS.Timeout
  private readonly checkpointEvery: number
  /** Set when this start found a torn last line; the `torn` record names it. */
  readonly torn: TornTail | null

  constructor (readonly file: string, private readonly identity: Identity, options: AuditOptions = {}) {
    this.checkpointEvery = options.checkpointEvery ?? 1000
    const found = readChainHead(file)
    this.fd = fs.openSync(file, 'a', 0o600)
    this.seq = found.seq
    this.head = found.hash
    this.torn = found.torn
    if (found.torn !== null) fs.writeSync(this.fd, '\n') // the cut line stays, whole, for verify to name
    if (found.torn !== null) this.write({ kind: 'audit', event: 'torn', ...found.torn }) // right after the cut line
    this.write({ kind: 'audit', event: 'start', format: AUDIT_FORMAT, member: identity.id })
    this.timer = setInterval(() => this.checkpoint(), options.checkpointMs ?? 10_000).unref()
  }

  /**
   * One line per event: `{"seq":N,"prev":"<hash>","ts":...,` then the event's own fields. Splicing the JSON text
   * instead of spreading the event into a new object, and formatting the time once per millisecond, keeps a line
   * cheap; the hash of each line is one crypto.hash call (benchmarks/decisions/audit.bench.ts). `kind` is required,
   * so the event's JSON is never `{}`.
   */
  write (event: AuditEvent): void {
    this.append(`{"seq":${this.seq + 1},"prev":"${this.head}","ts":"${this.now()}",${JSON.stringify(event).slice(1)}`)
    if (++this.unsigned >= this.checkpointEvery) this.checkpoint()
  }

  private append (line: string): void {
    this.seq++
    this.head = lineHash(line)
    this.pending.push(line)
    if (!this.scheduled) {
      this.scheduled = true
      setImmediate(() => this.flush())
    }
  }

  /** A signed record over (member id, its seq, the hash of the line before it), if any record is not covered yet. */
  checkpoint (): void {
    if (this.unsigned === 0 || this.fd < 0) return
    this.unsigned = 0
    const seq = this.seq + 1
    const sig = sign(SIG_CTX_AUDIT, checkpointMessage(this.identity.id, seq, this.head), this.identity.signKey).toString('base64url')
    this.append(`{"seq":${seq},"prev":"${this.head}","ts":"${this.now()}","kind":"audit","event":"checkpoint","member":"${this.identity.id}","sig":"${sig}"}`)
  }

  /** new Date().toISOString(), formatted again only when the millisecond changes. */
  private now (): string {
    const ms = Date.now()
    if (ms !== this.stampMs) { this.stampMs = ms; this.stamp = new Date(ms).toISOString() }
    return this.stamp
  }

  /** Writes what is buffered now (also called on shutdown). */
  flush (): void {
    this.scheduled = false
    if (this.pending.length === 0 || this.fd < 0) return
    const chunk = this.pending.join('\n') + '\n'
    this.pending = []
    fs.writeSync(this.fd, chunk)
  }

  /** A clean shutdown ends the file with a checkpoint, so its last line is signed. */
  close (): void {
    clearInterval(this.timer)
    this.checkpoint()
    this.flush()
    if (this.fd >= 0) fs.closeSync(this.fd)
    this.fd = -1
  }

  /** The last record written, after writing what is buffered: a verifier checks that the file ends with it. */
  written (): { seq: number, hash: string } {
    this.flush()
    return { seq: this.seq, hash: this.head }
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
