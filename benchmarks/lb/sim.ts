// Load-balancing study: a discrete-event simulation (virtual time, seeded) of hosts choosing among spd servers with the
// real strategies of lib/pem-fs/selection.ts and the client's failover rules. Used by lb.bench.ts and the CI test.
//
// Model. Each server is one FIFO queue with exponential service times at its own rate (req/s); one of them drops to a
// fraction of its rate mid-run. Like spd (lib/server/load.ts) it samples its busy fraction every sampleMs and reports
//   load = min(1, busy fraction of the last sample + requests queued or in service × perRequest)
// in every reply, accept or reject; when the load projected for a new request (the same sum, uncapped, with it counted)
// is over the threshold it rejects a share of the requests at once, refuseShare() of load.ts, the rule spd applies
// (reject mode; in spd, the requests in flight are the ones admitted and not yet answered). Hosts come up one by one
// during the warm-up, then send Poisson requests, and see a server's load only in that server's replies (stale in
// between). As in ClusterClient.decide: the host asks the first server of the selection's order; an overload
// rejection skips that server for overloadBackoffMs (selection.ts noteOverload, the client's default), a timeout
// for retryDownMs (noteDown), and the choice is re-run, at most servers × 2 + 1 attempts; no usable server left =
// the request fails.
import { seededRandom, VirtualClock } from '../../lib/server/cluster/transport-mock'
import { createSelector, noteDown, noteOverload, noteReply, OVERLOAD_BACKOFF_MS, type SelectionName, type Selector, type ServerView } from '../../lib/pem-fs/selection'
import { refuseShare, SHED_SPAN } from '../../lib/server/load'
import { percentile } from '../harness'

export interface SimConfig {
  seed: number
  hosts: number
  rates: number[] // service rate of each server, requests per second
  offered: number // total requests per second from all hosts together
  durationMs: number
  warmupMs: number // requests started before this are not counted
  slow: { server: number, atMs: number, factor: number } // this server's rate × factor from atMs on
  threshold: number // reject above this load (spd's default 0.95)
  perRequest: number // load each queued request adds to the report
  shedSpan: number // spd's SHED_SPAN: above the threshold the share refused grows to all over this much load
  sampleMs: number // how often a server samples its busy fraction (spd: 250 ms)
  netMs: number // one-way network delay, plus uniform jitter of the same size
  timeoutMs: number
  retryDownMs: number // the client's: a server that timed out is skipped this long
  overloadBackoffMs: number // the client's: a server that rejected for overload is skipped this long
}

export const STUDY: SimConfig = {
  seed: 1,
  hosts: 40,
  rates: [1000, 1000, 500, 500, 2000], // 5,000 req/s in all
  offered: 3600, // 72 % of the fleet; 85 % once server 1 has slowed down
  durationMs: 30_000,
  warmupMs: 2000,
  slow: { server: 1, atMs: 12_000, factor: 0.25 },
  threshold: 0.95,
  perRequest: 0.0005, // spd's default (lib/server/config.ts)
  shedSpan: SHED_SPAN,
  sampleMs: 250,
  netMs: 0.25,
  timeoutMs: 2000,
  retryDownMs: 5000,
  overloadBackoffMs: OVERLOAD_BACKOFF_MS
}

export interface SimResult {
  selection: SelectionName
  requests: number // counted (started after the warm-up)
  served: number
  failed: number // no server accepted it
  attempts: number
  rejected: number // attempts a server rejected for overload
  timedOut: number
  p50: number // ms, end to end (retries included), served requests
  p99: number
  p99AfterSlow: number // p99 of requests started after the slow-down
  utilisation: number[] // busy fraction of each server over the counted time
  utilisationCv: number // coefficient of variation of utilisation across servers
  seconds: Array<{ served: number, failed: number, rejected: number }> // per second of virtual time, all requests
}

interface Server { rate: number, queue: number, busyUntil: number, busyInWindow: number, busyCounted: number, sample: number }
interface HostServer extends ServerView { requests: number, rejections: number }

export function simulate (selection: SelectionName, overrides: Partial<SimConfig> = {}): SimResult {
  const c: SimConfig = { ...STUDY, ...overrides }
  const clock = new VirtualClock()
  // Separate streams, so every strategy meets the same arrivals (per host) and draws service and network times alike.
  const service = seededRandom(c.seed * 104729 + 1)
  const network = seededRandom(c.seed * 104729 + 2)
  const admission = seededRandom(c.seed * 104729 + 3)
  const exp = (rnd: () => number, mean: number): number => -Math.log(1 - rnd()) * mean
  const net = (): number => c.netMs * (1 + network())
  const servers: Server[] = c.rates.map(rate => ({ rate, queue: 0, busyUntil: 0, busyInWindow: 0, busyCounted: 0, sample: 0 }))

  // Servers: a FIFO queue; busy time is credited when service is scheduled, split across sample windows on use.
  const busyIn = (from: number, to: number, lo: number, hi: number): number => Math.max(0, Math.min(to, hi) - Math.max(from, lo))
  const loadOf = (s: Server): number => Math.min(1, s.sample + s.queue * c.perRequest)
  let windowStart = 0
  const spans: Array<{ s: Server, from: number, to: number }> = []
  const sampleTick = (): void => {
    const now = clock.now()
    for (const s of servers) s.busyInWindow = 0
    for (let i = spans.length - 1; i >= 0; i--) {
      const sp = spans[i]
      sp.s.busyInWindow += busyIn(sp.from, sp.to, windowStart, now)
      if (sp.to <= now) spans.splice(i, 1)
    }
    for (const s of servers) s.sample = s.busyInWindow / (now - windowStart)
    windowStart = now
    clock.at(now + c.sampleMs, sampleTick)
  }
  clock.at(c.sampleMs, sampleTick)
  clock.at(c.slow.atMs, () => { servers[c.slow.server].rate *= c.slow.factor })

  /** A request reaches server `i`: rejected now, or queued; `reply` gets the load at the moment it is sent. */
  const arrive = (i: number, reply: (ok: boolean, load: number) => void): void => {
    const s = servers[i]
    const now = clock.now()
    const projected = s.sample + (s.queue + 1) * c.perRequest
    if (projected > c.threshold && admission() < refuseShare(projected, c.threshold, c.shedSpan)) { reply(false, loadOf(s)); return }
    s.queue++
    const start = Math.max(now, s.busyUntil)
    const end = start + exp(service, 1000 / s.rate)
    s.busyUntil = end
    spans.push({ s, from: start, to: end })
    s.busyCounted += busyIn(start, end, c.warmupMs, c.durationMs)
    clock.at(end, () => { s.queue--; reply(true, loadOf(s)) })
  }

  // Hosts: each its own table and selector (own random source), Poisson arrivals.
  const latencies: number[] = []
  const afterSlow: number[] = []
  const seconds = Array.from({ length: Math.ceil(c.durationMs / 1000) + 1 }, () => ({ served: 0, failed: 0, rejected: 0 }))
  const second = (): { served: number, failed: number, rejected: number } => seconds[Math.min(seconds.length - 1, Math.floor(clock.now() / 1000))]
  const r: Omit<SimResult, 'p50' | 'p99' | 'p99AfterSlow' | 'utilisation' | 'utilisationCv' | 'seconds'> =
    { selection, requests: 0, served: 0, failed: 0, attempts: 0, rejected: 0, timedOut: 0 }
  for (let h = 0; h < c.hosts; h++) {
    const table: HostServer[] = c.rates.map((_, i) => ({ entry: { id: `s${i}` }, state: 'up', downUntil: 0, load: null, loadAt: 0, weight: 50, latencyMs: null, inflight: 0, preference: 0, requests: 0, rejections: 0 }))
    const selector: Selector = createSelector(selection, { random: seededRandom(c.seed * 7919 + h + 1) })
    const request = (): void => {
      const created = clock.now()
      const counted = created >= c.warmupMs
      if (counted) r.requests++
      let attempt = 0
      const tryNext = (): void => {
        const now = clock.now()
        const s = attempt++ < table.length * 2 + 1 ? selector.order(table, now)[0] : undefined
        if (s === undefined) { if (counted) r.failed++; second().failed++; return }
        const i = table.indexOf(s)
        if (counted) r.attempts++
        s.requests++
        s.inflight++
        let settled = false
        clock.at(now + c.timeoutMs, () => {
          if (settled) return
          settled = true
          s.inflight--; s.rejections++
          if (counted) r.timedOut++
          noteDown(s, clock.now(), c.retryDownMs)
          tryNext()
        })
        clock.at(now + net(), () => arrive(i, (ok, load) => {
          clock.at(clock.now() + net(), () => {
            if (settled) return
            settled = true
            s.inflight--
            const t = clock.now()
            noteReply(s, { load: { total: load }, weight: 50 }, t - now, t)
            if (ok) {
              second().served++
              if (counted) { r.served++; latencies.push(t - created); if (created >= c.slow.atMs) afterSlow.push(t - created) }
              return
            }
            s.rejections++
            second().rejected++
            if (counted) r.rejected++
            noteOverload(s, t, c.overloadBackoffMs)
            tryNext()
          })
        }))
      }
      tryNext()
    }
    const arrivals = seededRandom(c.seed * 7907 + h + 1)
    const perHostMs = 1000 * c.hosts / c.offered
    const arrival = (): void => {
      if (clock.now() >= c.durationMs) return
      request()
      clock.at(clock.now() + exp(arrivals, perHostMs), arrival)
    }
    clock.at(arrivals() * c.warmupMs, arrival) // hosts come up one by one during the warm-up, not all at once
  }
  clock.runUntil(c.durationMs + c.timeoutMs * (c.rates.length * 2 + 2))

  latencies.sort((a, b) => a - b)
  afterSlow.sort((a, b) => a - b)
  const counted = c.durationMs - c.warmupMs
  const utilisation = servers.map(s => s.busyCounted / counted)
  const mean = utilisation.reduce((a, b) => a + b, 0) / utilisation.length
  const sd = Math.sqrt(utilisation.reduce((a, u) => a + (u - mean) ** 2, 0) / utilisation.length)
  return { ...r, p50: percentile(latencies, 50), p99: percentile(latencies, 99), p99AfterSlow: percentile(afterSlow, 99), utilisation, utilisationCv: sd / mean, seconds }
}
