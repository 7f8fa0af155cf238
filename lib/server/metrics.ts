// Prometheus metrics of an spd member (prom-client), read at scrape time from the member's own counters: decisions,
// refusals by reason, load components, crypto bytes, cluster version, member states and heartbeat lag. Served as
// GET /metrics on the admin listener (lib/server/admin.ts); names and meanings: docs/OPERATIONS.md. RefusalTally
// counts refused connections by reason and rate-limits how many of them reach the audit log.
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client'
import type { MetricsSource } from './admin'
import type { Member } from './member'

/** Refusals of one reason written to the log in a burst, and how often one more may be written after it. */
const LOGGED_BURST = 5
const LOG_EVERY_MS = 2000

/** Refused connections by reason; note() says whether this one is logged, so a flood cannot flood the log. */
export class RefusalTally {
  readonly byReason: Record<string, number> = {}
  private readonly logging = new Map<string, { tokens: number, at: number, suppressed: number }>()

  constructor (private readonly now: () => number = Date.now) {}

  /** Count one refusal; null when it is not to be logged, else how many of its reason were not logged before it. */
  note (reason: string): number | null {
    this.byReason[reason] = (this.byReason[reason] ?? 0) + 1
    const t = this.now()
    const l = this.logging.get(reason) ?? { tokens: LOGGED_BURST, at: t, suppressed: 0 }
    this.logging.set(reason, l)
    l.tokens = Math.min(LOGGED_BURST, l.tokens + (t - l.at) / LOG_EVERY_MS)
    l.at = t
    if (l.tokens < 1) { l.suppressed++; return null }
    l.tokens -= 1
    const suppressed = l.suppressed
    l.suppressed = 0
    return suppressed
  }
}

export function memberMetrics (m: Member): MetricsSource {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry, prefix: 'spd_' })
  const counter = (name: string, help: string, labelNames: string[], collect: (c: Counter) => void): void => {
    registry.registerMetric(new Counter({ name, help, labelNames, registers: [], collect () { collect(this) } }))
  }
  const gauge = (name: string, help: string, labelNames: string[], collect: (g: Gauge) => void): void => {
    registry.registerMetric(new Gauge({ name, help, labelNames, registers: [], collect () { this.reset(); collect(this) } }))
  }
  // Counters are monotonic in the member; a Counter cannot be set, so reset and re-add the running total per scrape.
  // The cluster view is built once per scrape (render below), not once per series.
  let cluster = m.cluster.status()
  const total = (c: Counter, labels: Record<string, string>, value: number): void => { c.reset(); c.inc(labels, value) }

  counter('spd_decisions_total', 'Decisions answered, by effect', ['effect'], c => {
    c.reset()
    c.inc({ effect: 'permit' }, m.counters.permit)
    c.inc({ effect: 'deny' }, m.counters.deny)
  })
  counter('spd_rejections_total', 'Requests refused before a decision, by reason', ['reason'], c => {
    c.reset()
    c.inc({ reason: 'stale_policy' }, m.counters.stale)
    c.inc({ reason: 'overload' }, m.counters.overload)
    c.inc({ reason: 'refused_connection' }, m.counters.refused)
  })
  counter('spd_refused_connections_total', 'Host-listener connections refused before a channel opened, by reason', ['reason'], c => {
    c.reset()
    for (const [reason, n] of Object.entries(m.refusals.byReason)) c.inc({ reason }, n)
  })
  counter('spd_enrollments_total', 'Hosts enrolled through this member', [], c => total(c, {}, m.counters.enrolled))
  counter('spd_crypto_bytes_total', 'Bytes sealed or opened by the data service', ['op'], c => {
    c.reset()
    c.inc({ op: 'seal' }, m.counters.sealBytes)
    c.inc({ op: 'open' }, m.counters.openBytes)
  })
  gauge('spd_load', 'Reported load by component (1.0 = full)', ['component'], g => {
    const l = m.load.project(0)
    for (const k of ['total', 'cpu', 'nic', 'crypto'] as const) g.set({ component: k }, l[k])
  })
  gauge('spd_audit_torn_at_start', '1 when this start found the audit log ending in a cut line (named by a torn record)', [], g => g.set(m.audit.torn === null ? 0 : 1))
  gauge('spd_host_channels', 'Open host channels', [], g => g.set(m.channels.size))
  gauge('spd_policy_version', 'Installed configuration version', [], g => g.set(m.policyVersion))
  gauge('spd_cluster_pending_version', 'Version held pending (0: none)', [], g => g.set(cluster.pending?.version ?? 0))
  gauge('spd_cluster_can_serve', '1 while this member hears from a majority (decisions are served)', [], g => g.set(cluster.canServe ? 1 : 0))
  gauge('spd_cluster_members', 'Members by state as this member sees them', ['state'], g => {
    const counts: Record<string, number> = { self: 0, active: 0, down: 0, left: 0, unknown: 0, removed: 0 }
    for (const x of cluster.members) counts[x.state] = (counts[x.state] ?? 0) + 1
    for (const [state, n] of Object.entries(counts)) g.set({ state }, n)
  })
  gauge('spd_cluster_heartbeat_lag_seconds', 'Time since the last accepted heartbeat of each peer', ['member'], g => {
    for (const x of cluster.members) if (x.state !== 'self' && x.lastHeardMs !== null) g.set({ member: x.name }, x.lastHeardMs / 1000)
  })
  counter('spd_cluster_refused_total', 'Cluster packets refused, by error code', ['code'], c => {
    c.reset()
    for (const [code, n] of Object.entries(cluster.rejections)) c.inc({ code }, n)
  })
  counter('spd_cluster_tick_failures_total', 'Cluster heartbeat ticks that threw (logged; the member keeps running)', [], c => {
    c.reset()
    c.inc(cluster.tickFailures)
  })
  return {
    contentType: registry.contentType,
    render: async () => {
      cluster = m.cluster.status()
      return await registry.metrics()
    }
  }
}
