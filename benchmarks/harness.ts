// Benchmark harness: the measurement record every area reports, and small timing helpers. Runner: benchmarks/run.ts.
import fs from 'node:fs'
import os from 'node:os'

/** One measurement, as printed by `npm run bench -- --json` (one JSON object per line). */
export interface Measurement {
  area: string
  name: string
  value: number
  unit: string
  baseline: string | null // what it is compared with, measured in the same run
  baseline_value: number | null
  ratio: number | null // value / baseline_value (for latencies, < 1 is better; the name says which)
  note?: string
}

export interface BenchContext {
  area: string
  /** Shrinks sizes and durations (BENCH_QUICK=1) so the suite can run as a smoke test. */
  quick: boolean
  report (m: Omit<Measurement, 'area' | 'ratio'> & { ratio?: number | null }): void
  log (line: string): void
}

/** A benchmark file exports `run`. */
export type BenchFn = (ctx: BenchContext) => Promise<void>

export function ratio (value: number, baseline: number | null): number | null {
  return baseline === null || baseline === 0 ? null : Math.round((value / baseline) * 1000) / 1000
}

/** The middle value of `xs` (the upper middle of an even count); NaN for none. */
export function median (xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0 ? NaN : s[Math.floor(s.length / 2)]
}

export function percentile (sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[i]
}

/** Runs fn repeatedly for at least `ms` milliseconds; returns operations per second. */
export async function opsPerSecond (ms: number, fn: () => Promise<number> | number): Promise<number> {
  const start = process.hrtime.bigint()
  let ops = 0
  let elapsed = 0
  while (elapsed < ms) {
    ops += await fn()
    elapsed = Number(process.hrtime.bigint() - start) / 1e6
  }
  return ops / (elapsed / 1000)
}

/** A process's resident memory now and at its peak (VmHWM), in MiB, from /proc/PID/status. */
export function processMemory (pid: number): { rss: number, peak: number } {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8')
  const kib = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN)
  return { rss: kib('VmRSS') / 1024, peak: kib('VmHWM') / 1024 }
}

export function machineFacts (): Record<string, string> {
  const cpus = os.cpus()
  return {
    cpu: `${cpus[0]?.model ?? 'unknown'} x ${cpus.length}`,
    memory: `${Math.round(os.totalmem() / 2 ** 30)} GiB`,
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    openssl: process.versions.openssl
  }
}
