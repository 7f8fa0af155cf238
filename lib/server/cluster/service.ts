// The cluster side of a running spd member: its ClusterNode driven by a heartbeat timer (a throw inside a tick is
// logged and counted, never fatal), carried over the TLS channel transport, timed by the monotonic clock, persisting
// the boot epoch, replay marks and lock (state-file.ts), installing agreed configurations into the ConfigStore, and
// turning admin changes into proposals whose outcome the admin waits for.
import crypto from 'node:crypto'
import { performance } from 'node:perf_hooks'
import type pino from 'pino'
import type { ConnectionLimits } from '../../channel/limits'
import type { Identity } from '../../crypto/identity'
import { PemError, type ErrorCode } from '../../wire/errors'
import type { SpdConfig } from '../config'
import { RefusalTally } from '../metrics'
import type { ConfigState } from '../state'
import type { ConfigStore } from '../store'
import { ChannelTransport } from './channel-transport'
import type { AdminAuthority } from './changes'
import { ClusterNode, type ChangeEvent } from './node'
import { ClusterStateFile } from './state-file'
import type { Transport } from './transport'

export interface ChangeResult { version: number, changeId: string, rebased: boolean }

export interface ClusterServiceOptions {
  dataDir: string
  identity: Identity
  store: ConfigStore
  config: SpdConfig['cluster']
  /** HOST:PORT of the cluster listener; null: a member that cannot have peers. */
  listen: string | null
  /** Per-source admission on the cluster listener, checked before any TLS work. */
  connections?: ConnectionLimits
  log: pino.Logger
  /** Security events (refused connections, refused messages) for the audit log. */
  onSecurity: (event: Record<string, unknown>) => void
  /**
   * Check a configuration before it is installed (e.g. that its policy compiles); throwing keeps the old one
   * installed and the set pending. Called again by the next evaluation.
   */
  check: (state: ConfigState) => void
  /** After a configuration is durable: swap in what it changes (policy, hosts, keys). */
  installed: (state: ConfigState, previous: ConfigState) => void
}

interface Waiter { resolve: (r: ChangeResult) => void, reject: (e: Error) => void, timer: NodeJS.Timeout, rebased: boolean, error?: Error }

/** Counted refusals per error code, so a refusal shows in the audit log once per code and interval, not per packet. */
const SECURITY_CODES = new Set<ErrorCode>(['PEM_ERR_BAD_SIGNATURE', 'PEM_ERR_UNKNOWN_MEMBER', 'PEM_ERR_REMOVED_MEMBER', 'PEM_ERR_REPLAY', 'PEM_ERR_POLICY_SET_AUTH', 'PEM_ERR_NOT_LISTED', 'PEM_ERR_ROLLBACK', 'PEM_ERR_EQUIVOCATION', 'PEM_ERR_BAD_POLICY_SET', 'PEM_ERR_CHECKSUM', 'PEM_ERR_CLUSTER_MSG'])

export class ClusterService {
  readonly node: ClusterNode
  private readonly stateFile: ClusterStateFile
  private readonly transport: ChannelTransport | null
  private timer: NodeJS.Timeout | null = null
  private readonly waiters = new Map<string, Waiter>()
  private readonly reported: Record<string, number> = {}
  private alarmsSeen = 0
  /** Ticks that threw (the interval carries on; `spd_cluster_tick_failures_total`). */
  tickFailures = 0
  /** Durations (liveness, the staleness fence, fetch and list rate limits) never see a wall-clock step. */
  private readonly clock = { now: () => performance.now() }
  /** Refused cluster-listener connections by reason (metrics); a flood of them reaches the audit log a few at a time. */
  readonly refusals = new RefusalTally()
  addr = ''
  private stopping = false
  private returning = false

  constructor (private readonly o: ClusterServiceOptions) {
    const state = o.store.state
    if (state.clusterId === undefined || !/^[0-9a-f]{64}$/.test(state.clusterId)) throw new PemError('PEM_ERR_STORE', 'the stored configuration has no cluster id (re-create the member with spd init)')
    this.stateFile = ClusterStateFile.open(o.dataDir)
    const self = Object.values(state.members).find(m => m.id === o.identity.id)
    this.transport = o.listen === null
      ? null
      : new ChannelTransport({
        identity: o.identity,
        listen: o.listen,
        admits: id => id !== o.identity.id && this.node.members.get(id)?.removed === false,
        idOf: addr => this.node.members.activeAt(addr),
        receive: p => this.node.receive(p),
        limits: o.connections,
        onRefused: (reason, peer) => {
          const suppressed = this.refusals.note(reason)
          if (suppressed !== null) o.onSecurity({ event: 'member_refused', reason, peer: peer.id ?? null, ip: peer.remoteAddress ?? null, suppressed })
        },
        retryMs: o.config.intervalMs,
        ackTimeoutMs: Math.max(500, 2 * o.config.intervalMs)
      })
    const transport: Transport = this.transport ?? { send: () => {} }
    this.node = new ClusterNode({
      clusterId: Buffer.from(state.clusterId, 'hex'),
      identity: o.identity,
      addr: self?.clusterAddr ?? self?.addr ?? '',
      transport,
      clock: this.clock,
      wallClock: Date.now,
      epoch: this.stateFile.epoch,
      hwm: this.stateFile,
      locks: this.stateFile.locks,
      installed: state,
      installedPlaintext: o.store.plaintext,
      intervalMs: o.config.intervalMs,
      activeWindowMs: o.config.activeWindowMs,
      commit: (next, plaintext) => this.commit(next, plaintext),
      onChange: e => this.changed(e)
    })
  }

  async start (): Promise<void> {
    if (this.transport !== null) this.addr = await this.transport.start()
    this.timer = setInterval(() => this.tick(), this.o.config.intervalMs)
    this.timer.unref()
    this.node.broadcast()
    this.returnIfDeparted()
  }

  /**
   * Back after a clean stop: the installed configuration still leaves this member out of the count, so it serves
   * nothing (node.canServe) until its own return change is installed. That change is proposed now; while the others
   * are ahead it loses its version, this member catches up (rule (b) among the counted members) and it is re-based on
   * top, so the member is counted again only at a version at least as new as what the others installed.
   */
  private returnIfDeparted (): void {
    if (this.stopping || this.returning || !this.node.departed) return
    this.returning = true
    const self = this.o.identity.id
    this.change('spd', 'member-return', d => {
      const r = d.members[self]
      if (r === undefined || r.state !== 'active' || r.departed !== true) throw new PemError('PEM_ERR_NOT_FOUND', 'this member is not departed')
      delete r.departed
    }).then(r => this.o.log.info({ version: r.version }, 'counted again after a clean stop'),
      err => this.o.log.warn({ err: (err as Error).message }, 'return after a clean stop not installed yet'))
      .finally(() => { this.returning = false })
  }

  private tick (): void {
    try {
      this.node.tick()
    } catch (err) {
      this.tickFailures++
      this.o.log.error({ err: (err as Error).message, code: PemError.from(err).code, failures: this.tickFailures }, 'cluster tick failed')
    }
    try { this.stateFile.flush() } catch (err) { this.o.log.error({ err: (err as Error).message }, 'cannot write cluster-state.json') }
    this.reportRefusals()
  }

  /** New refusals since the last interval go to the audit log, one event per code with its count. */
  private reportRefusals (): void {
    for (const [code, n] of Object.entries(this.node.rejections)) {
      const seen = this.reported[code] ?? 0
      if (n > seen) {
        this.reported[code] = n
        if (SECURITY_CODES.has(code as ErrorCode)) this.o.onSecurity({ event: 'cluster_refused', code, count: n - seen })
        else this.o.log.warn({ code, count: n - seen }, 'cluster packets refused')
      }
    }
    for (const alarm of this.node.alarms.slice(this.alarmsSeen)) {
      this.o.onSecurity({ event: 'cluster_alarm', alarm })
      this.o.log.error({ alarm }, 'cluster alarm')
    }
    this.alarmsSeen = this.node.alarms.length
  }

  private commit (next: ConfigState, plaintext: Buffer): void {
    this.o.check(next)
    const previous = this.o.store.state
    this.o.store.install(next, plaintext)
    this.o.log.info({ version: next.version, origin: next.changedBy.slice(0, 16) }, 'configuration installed')
    this.transport?.prune()
    this.o.installed(next, previous)
    this.returnIfDeparted()
  }

  /**
   * Propose an admin change to the whole cluster and wait until it is installed here. The mutator may run more than
   * once (again on top of a concurrent change that won the version), so it must re-check what it depends on and throw
   * a PemError when the change no longer makes sense. `admin`: the admin session it is asked in, for member-list changes. Not installed within changeTimeoutMs: PEM_ERR_CHANGE_PENDING
   * (the change stays queued and installs when enough members are reachable).
   */
  async change (by: string, what: string, mutate: (draft: ConfigState) => void, admin?: AdminAuthority): Promise<ChangeResult> {
    const changeId = `${by}/${what}/${crypto.randomBytes(6).toString('hex')}`
    return await new Promise<ChangeResult>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(changeId)
        reject(new PemError('PEM_ERR_CHANGE_PENDING', `change ${changeId} is proposed but not installed after ${this.o.config.changeTimeoutMs} ms; it stays queued and installs when a majority of members is reachable — do not repeat it (spctl status lists queued changes)`))
      }, this.o.config.changeTimeoutMs)
      const w: Waiter = { resolve, reject, timer, rebased: false }
      this.waiters.set(changeId, w)
      // Only a change asked for in an admin session (`admin`, which signs it) may add or remove a member.
      this.node.propose(changeId, draft => {
        try { mutate(draft) } catch (err) { w.error = err as Error; throw err }
      }, admin)
    })
  }

  private changed (e: ChangeEvent): void {
    const w = this.waiters.get(e.changeId)
    this.o.log.info({ change: e.changeId, outcome: e.outcome, version: e.version, code: e.code }, 'cluster change')
    if (w === undefined) return
    if (e.outcome === 'rebased') { w.rebased = true; return }
    clearTimeout(w.timer)
    this.waiters.delete(e.changeId)
    if (e.outcome === 'installed') w.resolve({ version: e.version, changeId: e.changeId, rebased: w.rebased })
    else w.reject(w.error ?? new PemError(e.code ?? 'PEM_ERR_BAD_CONFIG', `change ${e.changeId} failed`))
  }

  /** CHECKLIST C14: false once this member has been cut off from a majority for longer than maxStalenessMs. */
  canServe (): boolean { return this.node.canServe(this.o.config.maxStalenessMs) }

  /** What `spctl member list` and `spctl status` show. */
  status (): ClusterStatusView {
    const n = this.node
    const now = this.clock.now()
    const members = n.members.all().map(m => {
      const peer = n.peers.get(m.id)
      const heard = peer === undefined ? null : now - peer.lastHeard
      const state = m.removed ? 'removed' : m.departed ? 'departed' : m.id === n.id ? 'self' : peer === undefined ? 'unknown' : peer.left === true ? 'left' : heard !== null && heard <= n.activeWindowMs ? 'active' : 'down'
      const record = this.o.store.state.members[m.id]
      return {
        id: m.id,
        name: m.name,
        clusterAddr: m.addr,
        hostAddr: record?.addr ?? '',
        state,
        lastHeardMs: m.id === n.id ? 0 : heard,
        installed: m.id === n.id ? n.installed.version : peer?.advert.iv ?? null,
        pending: m.id === n.id ? n.pending?.version ?? null : peer === undefined || peer.advert.pdg === null ? null : peer.advert.pv
      }
    })
    return {
      clusterId: this.o.store.state.clusterId ?? '',
      self: n.id,
      addr: this.addr,
      intervalMs: n.intervalMs,
      installed: { version: n.installed.version, digest: n.installed.digest },
      pending: n.pending === null ? null : { version: n.pending.version, digest: n.pending.digest, locked: n.pending.locked },
      canServe: this.canServe(),
      departed: n.departed,
      queued: n.unresolved,
      members,
      rejections: { ...n.rejections },
      alarms: n.alarms.slice(-20),
      tickFailures: this.tickFailures,
      transport: this.transport === null ? null : { ...this.transport.counts }
    }
  }

  /**
   * Clean stop: first this member's departure change (the others then leave it out of every majority count until it
   * returns), waited for at most max(2 s, 5 intervals) and never longer than changeTimeoutMs; then one Leave heartbeat
   * (so the others stop waiting for us at once), then close. A departure that does not install in time (no majority
   * reachable, messages lost) changes nothing: the member then counts as one that vanished.
   */
  async stop (): Promise<void> {
    this.stopping = true
    await this.depart()
    if (this.timer !== null) clearInterval(this.timer)
    this.node.leave()
    for (const [id, w] of this.waiters) { clearTimeout(w.timer); w.reject(new PemError('PEM_ERR_CHANGE_PENDING', `spd is stopping; change ${id} was not installed`)) }
    this.waiters.clear()
    try { this.stateFile.flush() } catch { /* logged on the last tick */ }
    await new Promise(resolve => setTimeout(resolve, 20)) // let the Leave frames reach the sockets
    await this.transport?.close()
  }

  private async depart (): Promise<void> {
    const n = this.node
    if (this.timer === null || n.installed.version === 0 || n.departed || !n.members.voterIds().includes(n.id) || n.members.voterIds().length < 2) return
    const self = this.o.identity.id
    const waitMs = Math.min(this.o.config.changeTimeoutMs, Math.max(2000, 5 * this.o.config.intervalMs))
    let timer: NodeJS.Timeout | undefined
    const departure = this.change('spd', 'member-depart', d => {
      const r = d.members[self]
      if (r === undefined || r.state !== 'active') throw new PemError('PEM_ERR_NOT_FOUND', 'this member is no longer listed')
      r.departed = true
    })
    try {
      const r = await Promise.race([departure, new Promise<null>(resolve => { timer = setTimeout(() => resolve(null), waitMs) })])
      if (r === null) this.o.log.warn({ waitMs }, 'departure not installed in time: the others count this member as down')
      else this.o.log.info({ version: r.version }, 'departed: the others leave this member out of the count until it returns')
    } catch (err) {
      this.o.log.warn({ err: (err as Error).message }, 'departure refused: the others count this member as down')
    } finally {
      clearTimeout(timer)
    }
  }
}

export interface ClusterStatusView {
  clusterId: string
  self: string
  addr: string
  intervalMs: number
  installed: { version: number, digest: string }
  pending: { version: number, digest: string, locked: boolean } | null
  canServe: boolean
  /** This member stopped cleanly and its return is not installed yet: it is not counted and serves nothing. */
  departed: boolean
  /** Admin changes accepted here and not yet installed (lost if this member stops). */
  queued: string[]
  members: Array<{ id: string, name: string, clusterAddr: string, hostAddr: string, state: string, lastHeardMs: number | null, installed: number | null, pending: number | null }>
  rejections: Record<string, number>
  alarms: string[]
  tickFailures: number
  transport: { sent: number, received: number, dropped: number, connectFailures: number, stalled: number } | null
}
