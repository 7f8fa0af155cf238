// Append-only audit log: one JSON line per decision that asks for audit and per admin change.
// Lines are buffered for one tick and appended with a single write, so auditing costs no syscall per decision.
import fs from 'node:fs'

export interface AuditEvent {
  kind: 'decision' | 'admin' | 'security'
  [field: string]: unknown
}

export class AuditLog {
  private fd: number
  private pending: string[] = []
  private scheduled = false
  private stampMs = -1
  private stamp = ''

  constructor (readonly file: string) {
    this.fd = fs.openSync(file, 'a', 0o600)
  }

  /**
   * One line per event: `{"ts":...,` then the event's own fields. Splicing the JSON text instead of spreading the
   * event into a new object, and formatting the time once per millisecond, took a decision's audit line from 6.4 to
   * 2.2 µs (benchmarks/decisions/rpc.bench.ts). `kind` is required, so the event's JSON is never `{}`.
   */
  write (event: AuditEvent): void {
    this.pending.push(`{"ts":"${this.now()}",${JSON.stringify(event).slice(1)}`)
    if (!this.scheduled) {
      this.scheduled = true
      setImmediate(() => this.flush())
    }
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

  close (): void {
    this.flush()
    if (this.fd >= 0) fs.closeSync(this.fd)
    this.fd = -1
  }

  /** The last `n` events, oldest first; reads only the file's tail. */
  tail (n: number): AuditEvent[] {
    this.flush()
    const size = fs.statSync(this.file).size
    const fd = fs.openSync(this.file, 'r')
    try {
      let start = size
      let text = ''
      const step = 64 * 1024
      while (start > 0 && text.split('\n').length <= n + 1) {
        const from = Math.max(0, start - step)
        const buf = Buffer.alloc(start - from)
        fs.readSync(fd, buf, 0, buf.length, from)
        text = buf.toString('utf8') + text
        start = from
      }
      const lines = text.split('\n')
      if (start > 0) lines.shift() // cut mid-line by the read window
      while (lines.length > 0 && lines[lines.length - 1] === '') lines.pop()
      const tail = lines.slice(Math.max(0, lines.length - n))
      return tail.map(l => { try { return JSON.parse(l) as AuditEvent } catch { return { kind: 'security', error: 'unreadable audit line' } } })
    } finally { fs.closeSync(fd) }
  }
}
