// Audit log throughput: decision lines per second through the hash-chained writer (lib/server/audit.ts: seq, prev
// hash per line, a signed checkpoint every 1000 lines, done in its writer thread) against the plain JSON line writer
// it replaced, in one run, end to end: a round ends when its last line is in the file.
// Run alone: `npx tsc -p . && node -e "require('./dist/benchmarks/decisions/audit.bench.js').run({quick:false,report:console.log,log:console.log})"`.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { generateIdentity } from '../../lib/crypto/identity'
import { AuditLog, type AuditEvent } from '../../lib/server/audit'
import { decisionRecord } from '../../lib/wire/audit-record'
import { median, type BenchFn } from '../harness'

/**
 * The writer before the chain, kept as the baseline: the same spliced line, written on the event loop with one write
 * per tick, no seq or hash.
 */
class PlainLineWriter {
  private readonly fd: number
  private pending: string[] = []
  private scheduled = false
  private stampMs = -1
  private stamp = ''
  constructor (file: string) { this.fd = fs.openSync(file, 'a', 0o600) }
  write (event: AuditEvent): void {
    const ms = Date.now()
    if (ms !== this.stampMs) { this.stampMs = ms; this.stamp = new Date(ms).toISOString() }
    this.pending.push(`{"ts":"${this.stamp}",${JSON.stringify(event).slice(1)}`)
    if (!this.scheduled) {
      this.scheduled = true
      setImmediate(() => { this.flush() })
    }
  }

  flush (): void {
    this.scheduled = false
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

const nextTick = async (): Promise<void> => { await new Promise(resolve => setImmediate(resolve)) }

/**
 * Lines per second: ticks of `batch` writes, each writer handing its tick's lines on at the tick's end as in spd, for
 * `ms` milliseconds; the clock stops after a final flush has put every line in the file.
 */
async function linesPerSecond (w: Writer, ms: number, batch: number): Promise<number> {
  let lines = 0
  const start = performance.now()
  while (performance.now() - start < ms) {
    for (let i = 0; i < batch; i++) w.write(decisionEvent(lines + i))
    lines += batch
    await nextTick()
  }
  w.flush()
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
    await linesPerSecond(plain, roundMs, batch) // warm-up
    await linesPerSecond(chained, roundMs, batch)
    for (let r = 0; r < rounds; r++) { // alternating rounds: both see the same machine load
      of.plain.push(await linesPerSecond(plain, roundMs, batch))
      of.chained.push(await linesPerSecond(chained, roundMs, batch))
    }
    const p = median(of.plain)
    const c = median(of.chained)
    const paired = of.chained.map((v, i) => v / of.plain[i]) // each round beside the plain round before it
    const ratio = median(paired)
    ctx.log(`median of ${rounds} alternating rounds of ${roundMs} ms, ${batch} lines per tick, until written; chained ${of.chained.map(Math.round).join('/')} vs plain ${of.plain.map(Math.round).join('/')}; event ${JSON.stringify(decisionEvent(0)).length} B of JSON`)
    ctx.report({ name: 'audit lines, chained + checkpoints', value: Math.round(c), unit: 'lines/s', baseline: 'audit lines, plain JSON writer', baseline_value: Math.round(p), note: `paired ratios ${paired.map(x => x.toFixed(2)).join('/')}, median ${ratio.toFixed(2)}; target >= 0.9x: ${ratio >= 0.9 ? 'met' : 'MISSED'}` })
  } finally {
    plain.close()
    chained.close()
    fs.rmSync(dir, { recursive: true, force: true })
  }
}
