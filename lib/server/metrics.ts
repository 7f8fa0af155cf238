// Prometheus metrics of an spd member (prom-client), read at scrape time from the member's own counters: decisions,
// refusals by reason, load components, crypto bytes, cluster version, member states and heartbeat lag. Served as
// GET /metrics on the admin listener (lib/server/admin.ts); names and meanings: docs/OPERATIONS.md. RefusalTally
// counts refused connections by reason and rate-limits how many of them reach the audit log; Latencies times decisions
// and block operations into histograms as they are served.
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
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

/** Upper bounds (seconds) of the latency buckets: 50 µs to 2.5 s. */
const LATENCY_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]
/** Batch sizes a block operation is labelled with: the smallest bound at or above its plaintext bytes. */
const SIZE_BUCKETS: Array<[number, string]> = [[4096, '4KiB'], [65536, '64KiB'], [262144, '256KiB'], [1048576, '1MiB']]
const LARGEST_SIZE = '2MiB'

function sizeBucket (bytes: number): string {
  for (const [bound, label] of SIZE_BUCKETS) if (bytes <= bound) return label
  return LARGEST_SIZE
}

/** Decision and block-operation latencies, observed by the member as it serves them (registered by memberMetrics). */
export class Latencies {
  readonly decision = new Histogram({ name: 'spd_decision_duration_seconds', help: 'Time to answer a Decide request, by effect', labelNames: ['effect'], buckets: LATENCY_BUCKETS, registers: [] })
  readonly block = new Histogram({ name: 'spd_block_op_duration_seconds', help: 'Time to seal or open one batch of blocks, by op and batch size (plaintext bytes, upper bound)', labelNames: ['op', 'size'], buckets: LATENCY_BUCKETS, registers: [] })

  /** Runs `serve` and records its time as a decision, labelled by the effect it answered (errors are not timed). */
  async timeDecision<T extends { ok: boolean }> (serve: () => Promise<T>): Promise<T> {
    const start = process.hrtime.bigint()
    const r = await serve()
    this.decision.observe({ effect: r.ok ? 'permit' : 'deny' }, Number(process.hrtime.bigint() - start) / 1e9)
    return r
  }

  async timeBlocks<T> (op: 'seal' | 'open', bytes: number, serve: () => Promise<T>): Promise<T> {
    const start = process.hrtime.bigint()
    const r = await serve()
    this.block.observe({ op, size: sizeBucket(bytes) }, Number(process.hrtime.bigint() - start) / 1e9)
    return r
  }
}

/** The package version, the git commit it was built from ('unknown' outside a checkout), Node and its OpenSSL. */
export function buildInfo (): { version: string, commit: string, node: string, openssl: string } {
  const root = path.resolve(__dirname, '../../..')
  const version = (JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string }).version
  let commit = 'unknown'
  try { commit = execFileSync('git', ['rev-parse', '--short=12', 'HEAD'], { cwd: root, stdio: ['ignore', 'pipe', 'ignore'], timeout: 2000 }).toString().trim() } catch {}
  return { version, commit, node: process.versions.node, openssl: process.versions.openssl }
}

export function memberMetrics (m: Member): MetricsSource {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry, prefix: 'spd_' })
  registry.registerMetric(m.latencies.decision)
  registry.registerMetric(m.latencies.block)
  const build = new Gauge({ name: 'spd_build_info', help: 'Always 1; the labels name the build: package version, git commit, Node and OpenSSL versions', labelNames: ['version', 'commit', 'node', 'openssl'], registers: [registry] })
  build.set(buildInfo(), 1)
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
  // The native block service (docs/CHANNEL.md §8): its own counters, read once per scrape (no JS per block).
  let blocks = m.blocks.stats()
  counter('spd_block_requests_total', 'Requests served by the native block service', [], c => total(c, {}, blocks.requests))
  counter('spd_block_blocks_total', 'Blocks sealed or opened by the native block service', ['op'], c => {
    c.reset()
    c.inc({ op: 'seal' }, blocks.sealBlocks)
    c.inc({ op: 'open' }, blocks.openBlocks)
  })
  counter('spd_block_bytes_total', 'Plaintext bytes sealed or opened by the native block service', ['op'], c => {
    c.reset()
    c.inc({ op: 'seal' }, blocks.sealBytes)
    c.inc({ op: 'open' }, blocks.openBytes)
  })
  counter('spd_block_refusals_total', 'Block requests refused (the connection stays), by reason', ['reason'], c => {
    c.reset()
    c.inc({ reason: 'grant' }, blocks.grantRefusals)
    c.inc({ reason: 'aad' }, blocks.aadRefusals)
    c.inc({ reason: 'auth' }, blocks.authFailures)
    c.inc({ reason: 'malformed' }, blocks.badRequests)
  })
  counter('spd_block_connections_total', 'Block connections that presented a valid token', [], c => total(c, {}, blocks.connections))
  counter('spd_block_refused_connections_total', 'Block connections the service closed, by reason: token (unknown, expired or used), record (forged, malformed or cut), busy (too many not yet authenticated)', ['reason'], c => {
    c.reset()
    c.inc({ reason: 'token' }, blocks.refusedToken)
    c.inc({ reason: 'record' }, blocks.refusedRecord)
    c.inc({ reason: 'busy' }, blocks.refusedBusy)
  })
  gauge('spd_load', 'Reported load by component (1.0 = full)', ['component'], g => {
    const l = m.load.project(0)
    for (const k of ['total', 'cpu', 'nic', 'crypto'] as const) g.set({ component: k }, l[k])
  })
  gauge('spd_audit_torn_at_start', '1 when this start found the audit log ending in a cut line (named by a torn record)', [], g => g.set(m.audit.torn === null ? 0 : 1))
  gauge('spd_host_channels', 'Open host channels', [], g => g.set(m.channels.size))
  gauge('spd_admin_sessions', 'Live admin sessions (expired ones are swept out)', [], g => g.set(m.adminCounts.sessions))
  gauge('spd_admin_login_challenges', 'Login challenges handed out and not yet answered or expired', [], g => g.set(m.adminCounts.challenges))
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
  counter('spd_cluster_refused_connections_total', 'Cluster-listener connections refused before a channel opened, by reason', ['reason'], c => {
    c.reset()
    for (const [reason, n] of Object.entries(m.cluster.refusals.byReason)) c.inc({ reason }, n)
  })
  counter('spd_cluster_tick_failures_total', 'Cluster heartbeat ticks that threw (logged; the member keeps running)', [], c => {
    c.reset()
    c.inc(cluster.tickFailures)
  })
  return {
    contentType: registry.contentType,
    render: async () => {
      cluster = m.cluster.status()
      blocks = m.blocks.stats()
      return await registry.metrics()
    }
  }
}
