// Closed-loop load at a fixed depth: `depth` callers each send a request, wait for its reply and send the next,
// so exactly `depth` requests are in flight. Rounds of several targets alternate; each target's rounds are pooled.
import { percentile } from '../harness'

/** One request; resolves when its reply has arrived and was checked. */
export type Send = () => Promise<void>

export class Series {
  ops = 0
  ms = 0
  private readonly lat: number[] = []
  private sorted: Float64Array | null = null

  /** Runs `send` at `depth` for `ms` milliseconds; with record = false it only warms up. */
  async drive (send: Send, depth: number, ms: number, record = true): Promise<void> {
    const lat: number[] = []
    const start = performance.now()
    const end = start + ms
    const caller = async (): Promise<void> => {
      while (performance.now() < end) {
        const t0 = performance.now()
        await send()
        lat.push(performance.now() - t0)
      }
    }
    await Promise.all(Array.from({ length: depth }, caller))
    if (!record) return
    this.ms += performance.now() - start
    this.ops += lat.length
    for (const x of lat) this.lat.push(x)
    this.sorted = null
  }

  get perSecond (): number { return this.ops / (this.ms / 1000) }

  /** Latency percentile in milliseconds. */
  p (q: number): number {
    this.sorted ??= Float64Array.from(this.lat).sort()
    return percentile(this.sorted, q)
  }
}

/**
 * Alternates `targets` in `rounds` rounds of `ms` each (after one warm-up round), so slow phases of the machine
 * fall on all of them alike. Returns one pooled Series per target.
 */
export async function alternate (targets: Record<string, Send>, depth: number, rounds: number, ms: number): Promise<Record<string, Series>> {
  const out: Record<string, Series> = {}
  for (const name of Object.keys(targets)) {
    out[name] = new Series()
    await out[name].drive(targets[name], depth, ms / 2, false)
  }
  for (let r = 0; r < rounds; r++) for (const name of Object.keys(targets)) await out[name].drive(targets[name], depth, ms)
  return out
}
