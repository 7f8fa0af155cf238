// Audit log throughput: decision lines per second through the hash-chained writer (lib/server/audit.ts: seq, prev
// hash per line, a signed checkpoint every 1000 lines) against the plain JSON line writer it replaced, in one run.
// Run alone: `npx tsc -p . && node -e "require('./dist/benchmarks/decisions/audit.bench.js').run({quick:false,report:console.log,log:console.log})"`.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { generateIdentity } from '../../lib/crypto/identity'
import { AuditLog, type AuditEvent } from '../../lib/server/audit'
import { decisionRecord } from '../../lib/wire/audit-record'
import { median, type BenchFn } from '../harness'

/** The writer before the chain, kept as the baseline: the same spliced line and one write per batch, no seq or hash. */
class PlainLineWriter {
  private readonly fd: number
  private pending: string[] = []
  private stampMs = -1
  private stamp = ''
  constructor (file: string) { this.fd = fs.openSync(file, 'a', 0o600) }
  write (event: AuditEvent): void {
    const ms = Date.now()
    if (ms !== this.stampMs) { this.stampMs = ms; this.stamp = new Date(ms).toISOString() }
    this.pending.push(`{"ts":"${this.stamp}",${JSON.stringify(event).slice(1)}`)
  }

  flush (): void {
    if (this.pending.length === 0) return
    fs.writeSync(this.fd, this.pending.join('\n') + '\n')
    this.pending = []
  }

  close (): void { this.flush(); fs.closeSync(this.fd) }
}

interface Writer { write: (e: AuditEvent) => void, flush: () => void }

const EXE_HASH = 'c0ffee'.repeat(10) + 'abcd'

/** A decision record as lib/server/handlers/decide.ts writes it (every attribute a replay needs); `i` varies the path. */
function decisionEvent (i: number): AuditEvent {
  const attrs = { uid: 1000 + (i % 7), gids: [1000, 27, 100], user: 'alice', pid: 4000 + (i % 97), sid: 3900, exe: '/usr/bin/cat', exeHash: EXE_HASH, auth: 0 }
  return decisionRecord('/srv/data', `/reports/2026/q${i % 4}/file-${i}.xlsx`, 'read', attrs, { host: 'a3f1c2'.repeat(10) + 'beef', ip: '10.0.4.17' },
    { effect: 'permit', rule: 'public', key: null, audit: ['audit-reports'] }, 12)
}

/** Lines per second: batches of `batch` writes then one flush (one tick's worth in spd), for `ms` milliseconds. */
function linesPerSecond (w: Writer, ms: number, batch: number): number {
  let lines = 0
  const start = performance.now()
  while (performance.now() - start < ms) {
    for (let i = 0; i < batch; i++) w.write(decisionEvent(lines + i))
    w.flush()
    lines += batch
  }
  return lines / ((performance.now() - start) / 1000)
}

export const run: BenchFn = async ctx => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pem-audit-bench-'))
  const rounds = ctx.quick ? 2 : 8
  const roundMs = ctx.quick ? 100 : 500
  const batch = 64
  const plain = new PlainLineWriter(path.join(dir, 'plain.log'))
  const chained = new AuditLog(path.join(dir, 'chained.log'), generateIdentity())
  try {
    const of: Record<'plain' | 'chained', number[]> = { plain: [], chained: [] }
    linesPerSecond(plain, roundMs, batch) // warm-up
    linesPerSecond(chained, roundMs, batch)
    for (let r = 0; r < rounds; r++) { // alternating rounds: both see the same machine load
      of.plain.push(linesPerSecond(plain, roundMs, batch))
      of.chained.push(linesPerSecond(chained, roundMs, batch))
    }
    const p = median(of.plain)
    const c = median(of.chained)
    ctx.log(`median of ${rounds} alternating rounds of ${roundMs} ms, ${batch} lines per write; event ${JSON.stringify(decisionEvent(0)).length} B of JSON`)
    ctx.report({ name: 'audit lines, chained + checkpoints', value: Math.round(c), unit: 'lines/s', baseline: 'audit lines, plain JSON writer', baseline_value: Math.round(p), note: `target >= 0.9x: ${c >= 0.9 * p ? 'met' : 'MISSED'}` })
  } finally {
    plain.close()
    chained.close()
    fs.rmSync(dir, { recursive: true, force: true })
  }
}
