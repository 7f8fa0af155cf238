// Load reporting: samples the native load registers on a timer, projects the load of the request being answered,
// and applies this member's bias, threshold and overload mode (reject, or queue for a bounded time).
import { LoadMeter } from '../native/load-regs'
import type { LoadValues } from '../wire/packets'
import type { SpdConfig } from './config'

export class LoadReporter {
  private readonly meter: LoadMeter
  private readonly timer: NodeJS.Timeout
  private last = { cpu: 0, nic: 0, crypto: 0 }
  private waiters: Array<() => void> = []
  /** Requests being answered now; each adds `perRequest` to the projection. */
  inflight = 0

  constructor (private readonly cfg: SpdConfig['load']) {
    this.meter = new LoadMeter({ nic: cfg.nic, nicCapacityBps: cfg.nicCapacityBps })
    this.last = this.meter.sample()
    this.timer = setInterval(() => this.tick(), cfg.sampleMs)
    this.timer.unref()
  }

  private tick (): void {
    this.last = this.meter.sample()
    if (this.waiters.length > 0 && !this.over(this.project())) {
      const ready = this.waiters
      this.waiters = []
      for (const wake of ready) wake()
    }
  }

  /** The combined load is the busiest component (the bottleneck), plus the requests in flight, plus the bias. */
  project (extra = 1): LoadValues {
    const { cpu, nic, crypto } = this.last
    const combined = Math.max(cpu, nic, crypto)
    const total = Math.min(1, combined + (this.inflight + extra) * this.cfg.perRequest + this.cfg.bias)
    return { total: round(total), cpu: round(cpu), nic: round(nic), crypto: round(crypto) }
  }

  over (load: LoadValues): boolean { return load.total > this.cfg.threshold }

  /**
   * Admission for one request. Resolves with the projected load when the request may run, or with null when it is
   * refused for overload (at once in reject mode; after `queueMs` in queue mode).
   */
  async admit (): Promise<LoadValues | null> {
    let load = this.project()
    if (!this.over(load)) return load
    if (this.cfg.overload === 'reject' || this.cfg.queueMs === 0) return null
    const deadline = Date.now() + this.cfg.queueMs
    while (Date.now() < deadline) {
      await new Promise<void>(resolve => {
        const t = setTimeout(resolve, Math.max(1, deadline - Date.now()))
        this.waiters.push(() => { clearTimeout(t); resolve() })
      })
      load = this.project()
      if (!this.over(load)) return load
    }
    return null
  }

  close (): void { clearInterval(this.timer); for (const wake of this.waiters) wake(); this.waiters = [] }
}

function round (x: number): number { return Math.round(x * 10000) / 10000 }
