// Load reporting: samples the native load registers on a timer, projects the load of the request being answered,
// and applies this member's bias, threshold and overload mode (above the threshold a share of the requests, growing
// with the excess, is rejected, or queued for a bounded time).
import { LoadMeter } from '../native/load-regs'
import type { LoadValues } from '../wire/packets'
import type { SpdConfig } from './config'

/**
 * Above the threshold the share of requests refused grows linearly with the excess of the projected load, from none
 * at the threshold to all at threshold + SHED_SPAN (uncapped: the projection counts every request in flight).
 */
export const SHED_SPAN = 0.3

/**
 * Share of requests refused at projected load `total` (not capped at 1). Pure: benchmarks/lb/sim.ts models spd with
 * it. Refusing all of them as soon as one 250 ms sample was over the threshold sent a burst of rejections that moved
 * the server's hosts away at once (docs/PEMFS.md "Choosing a server"); shedding only the excess keeps it busy.
 */
export function refuseShare (total: number, threshold: number, span: number = SHED_SPAN): number {
  if (total <= threshold || threshold >= 1) return 0 // the reported load is capped at 1: a threshold of 1 admits all
  return span <= 0 ? 1 : Math.min(1, (total - threshold) / span)
}

export class LoadReporter {
  private readonly meter: LoadMeter
  private readonly timer: NodeJS.Timeout
  private last = { cpu: 0, nic: 0, crypto: 0 }
  private waiters: Array<() => void> = []
  /** Requests being answered now; each adds `perRequest` to the projection. */
  inflight = 0

  /** `random`: uniform in [0, 1), for the share of requests refused above the threshold (tests inject one). */
  constructor (private readonly cfg: SpdConfig['load'], private readonly random: () => number = Math.random) {
    this.meter = new LoadMeter({ nic: cfg.nic, nicCapacityBps: cfg.nicCapacityBps })
    this.last = this.meter.sample()
    this.timer = setInterval(() => this.tick(), cfg.sampleMs)
    this.timer.unref()
  }

  private tick (): void {
    this.last = this.meter.sample()
    if (this.waiters.length > 0 && refuseShare(this.raw(), this.cfg.threshold) < 1) {
      const ready = this.waiters
      this.waiters = []
      for (const wake of ready) wake()
    }
  }

  /** The combined load is the busiest component (the bottleneck), plus the requests in flight, plus the bias. */
  private raw (extra = 1): number {
    const { cpu, nic, crypto } = this.last
    return Math.max(cpu, nic, crypto) + (this.inflight + extra) * this.cfg.perRequest + this.cfg.bias
  }

  /** The projected load as replies report it (total capped at 1). */
  project (extra = 1): LoadValues {
    const { cpu, nic, crypto } = this.last
    return { total: round(Math.min(1, this.raw(extra))), cpu: round(cpu), nic: round(nic), crypto: round(crypto) }
  }

  /** Whether this request is refused now: a share refuseShare() of the requests, drawn at random. */
  private refused (): boolean {
    const share = refuseShare(this.raw(), this.cfg.threshold)
    return share > 0 && this.random() < share
  }

  /**
   * Admission for one request. Resolves with the projected load when the request may run, or with null when it is
   * refused for overload (at once in reject mode; in queue mode it waits for a new sample and draws again, refused
   * after `queueMs`).
   */
  async admit (): Promise<LoadValues | null> {
    if (!this.refused()) return this.project()
    if (this.cfg.overload === 'reject' || this.cfg.queueMs === 0) return null
    const deadline = Date.now() + this.cfg.queueMs
    while (Date.now() < deadline) {
      await new Promise<void>(resolve => {
        const t = setTimeout(resolve, Math.max(1, deadline - Date.now()))
        this.waiters.push(() => { clearTimeout(t); resolve() })
      })
      if (!this.refused()) return this.project()
    }
    return null
  }

  close (): void { clearInterval(this.timer); for (const wake of this.waiters) wake(); this.waiters = [] }
}

function round (x: number): number { return Math.round(x * 10000) / 10000 }
