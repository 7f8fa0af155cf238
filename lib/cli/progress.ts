// Progress of long work: a bar with rate and ETA redrawn in place on a terminal, plain lines (every 10 % or 5 s)
// otherwise, so logs and CI output stay readable. Used by the benchmark runner, the demo and `pemfs encrypt`.

export interface ProgressOptions { total: number, label: string, unit?: 'bytes' | 'items', stream?: NodeJS.WriteStream, width?: number }

function human (n: number, unit: 'bytes' | 'items'): string {
  if (unit === 'items') return String(Math.round(n))
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let i = 0
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++ }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`
}

function duration (s: number): string {
  if (!Number.isFinite(s)) return '?'
  return s >= 3600 ? `${Math.floor(s / 3600)}h${Math.floor(s % 3600 / 60)}m` : s >= 60 ? `${Math.floor(s / 60)}m${Math.round(s % 60)}s` : `${s.toFixed(s < 10 ? 1 : 0)}s`
}

export class Progress {
  private done = 0
  private readonly started = Date.now()
  private lastLine = 0
  private lastDecile = -1
  private readonly stream: NodeJS.WriteStream
  private readonly tty: boolean
  private readonly unit: 'bytes' | 'items'
  private note = ''

  constructor (private readonly o: ProgressOptions) {
    this.stream = o.stream ?? process.stderr
    this.tty = this.stream.isTTY === true
    this.unit = o.unit ?? 'items'
  }

  /** The text of the current state: `label [#####-----] 50% 12 MiB/24 MiB 3.1 MiB/s ETA 4.0s`. */
  line (): string {
    const elapsed = Math.max(0.001, (Date.now() - this.started) / 1000)
    const frac = this.o.total > 0 ? Math.min(1, this.done / this.o.total) : 0
    const rate = this.done / elapsed
    const eta = rate > 0 ? (this.o.total - this.done) / rate : Infinity
    const width = this.o.width ?? 24
    const bar = '#'.repeat(Math.round(frac * width)).padEnd(width, '-')
    const rateText = this.unit === 'bytes' ? `${human(rate, 'bytes')}/s` : `${rate.toFixed(rate < 10 ? 1 : 0)}/s`
    return `${this.o.label} [${bar}] ${Math.floor(frac * 100)}% ${human(this.done, this.unit)}/${human(this.o.total, this.unit)}${this.note} ${rateText} ETA ${duration(eta)}`
  }

  /** Set the amount done so far (absolute), and optionally a second count shown after it (`3/10 files`). */
  update (done: number, note?: string): void {
    this.done = done
    if (note !== undefined) this.note = ` ${note}`
    if (this.tty) { this.stream.write(`\r${this.line()}\x1b[K`); return }
    const decile = this.o.total > 0 ? Math.floor(Math.min(1, done / this.o.total) * 10) : 0
    if (decile > this.lastDecile || Date.now() - this.lastLine > 5000) {
      this.lastDecile = decile
      this.lastLine = Date.now()
      this.stream.write(`${this.line()}\n`)
    }
  }

  /** Final state and a newline on a terminal. */
  finish (): void {
    this.done = Math.max(this.done, this.o.total)
    this.stream.write(this.tty ? `\r${this.line()}\x1b[K\n` : `${this.line()} done\n`)
  }
}
