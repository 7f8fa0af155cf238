// An spd member: its identity, local config, encrypted store, policy, load, audit log, host listener, admin API and
// cluster service. Every configuration change goes through the cluster (change()); `spd start` runs one until SIGTERM.
import crypto from 'node:crypto'
import path from 'node:path'
import type pino from 'pino'
import { Channel } from '../channel/channel'
import { ALPN_ENROLL, listen, type ChannelServer } from '../channel/tls'
import { encodePublicKey, loadIdentity, type Identity } from '../crypto/identity'
import { decide, formatPolicyError, parsePolicyOrThrow, PolicyRejected, type CompiledPolicy, type Decision, type DecideInput } from '../policy'
import { PemError } from '../wire/errors'
import { hostListenerFrameLimit } from '../wire/frame'
import { Op } from '../wire/opcodes'
import type { AuditReadBody, BlocksBody, DecideBody, EnrollBody, FileHeaderBody, FileKeyBody, KeysDropReason, KeyUsageBody, ServerEntry } from '../wire/packets'
import { AdminApi } from './admin'
import { registerAdminRoutes } from './admin-routes'
import { AuditLog } from './audit'
import { AuditTrail, readOwnDecisions } from './audit-trail'
import type { AdminAuthority } from './cluster/changes'
import { ClusterService, type ChangeResult } from './cluster/service'
import { loadConfig, splitHostPort, type SpdConfig } from './config'
import { handleOpen, handleSeal } from './handlers/blocks'
import { handleDecide } from './handlers/decide'
import { handleEnroll } from './handlers/enroll'
import { handleFileHeader, handleFileKey } from './handlers/file-key'
import { handleBlockChannel } from './handlers/block-channel'
import { BlockService } from './block-service'
import { DataService } from './keys'
import { KeyUsage } from './key-usage'
import { LoadReporter } from './load'
import { Latencies, memberMetrics, RefusalTally } from './metrics'
import type { ConfigState } from './state'
import { ConfigStore, storeKeyFrom } from './store'

export const IDENTITY_FILE = 'identity.key'
export const AUDIT_FILE = 'audit.log'

export interface Counters { permit: number, deny: number, stale: number, overload: number, refused: number, enrolled: number, sealBytes: number, openBytes: number }

export class Member {
  readonly counters: Counters = { permit: 0, deny: 0, stale: 0, overload: 0, refused: 0, enrolled: 0, sealBytes: 0, openBytes: 0 }
  readonly started = Date.now()
  /** Host-listener refusals by reason (metrics), and which of them reach the audit log. */
  readonly refusals = new RefusalTally()
  /** Decision and block-operation latency histograms (GET /metrics). */
  readonly latencies = new Latencies()
  /** The cluster's decision records, read from every member (GET /v1/audit/trail). */
  readonly trail = new AuditTrail(this)
  private policy: CompiledPolicy | null = null
  private checked: CompiledPolicy | null = null // the newest policy compiled and not yet installed; installed() takes it over
  private hostServer: ChannelServer | null = null
  private admin: AdminApi | null = null
  readonly channels = new Set<Channel>()
  hostAddr = ''
  adminAddr = ''
  /** Engines, file keys and grants of the data service; the configured crypto provider loads here or start fails. */
  readonly data: DataService
  /** The hosts' latest reports of the key versions their files are under (spctl key list, key retire). */
  readonly keyUsage: KeyUsage
  /** The native block service (appliance placement without JS per block, docs/CHANNEL.md §8). */
  readonly blocks = new BlockService()
  readonly cluster: ClusterService
  private selfSync: string | null = null

  private constructor (
    readonly dataDir: string,
    readonly config: SpdConfig,
    readonly identity: Identity,
    readonly store: ConfigStore,
    readonly audit: AuditLog,
    readonly load: LoadReporter,
    readonly log: pino.Logger
  ) {
    this.installPolicy()
    this.data = new DataService(config.crypto, () => this.store.state.keys, () => this.store.state.retiredKeys ?? {})
    this.keyUsage = new KeyUsage(dataDir)
    this.cluster = new ClusterService({
      dataDir,
      identity,
      store,
      config: config.cluster,
      listen: config.clusterListen,
      connections: config.connections,
      log,
      onSecurity: e => audit.write({ kind: 'security', ...e }),
      check: state => {
        // Each policy text is compiled once: by applyPolicy on the member that took the change, here on the others.
        const text = state.policyCanonical
        if (text !== null && text !== this.policy?.canonical && text !== this.checked?.canonical) this.checked = parsePolicyOrThrow(text, `policy of version ${state.version}`)
      },
      installed: (state, previous) => this.installed(state, previous)
    })
  }

  static open (dataDir: string, log: pino.Logger): Member {
    const config = loadConfig(dataDir)
    const identity = loadIdentity(path.join(dataDir, IDENTITY_FILE))
    const store = ConfigStore.open(dataDir, storeKeyFrom(identity.signKey))
    const audit = new AuditLog(path.join(dataDir, AUDIT_FILE), identity)
    if (audit.torn !== null) log.warn({ file: audit.file, ...audit.torn }, 'audit log ended in a cut line (a crash mid-write): kept, and named by a torn record')
    return new Member(dataDir, config, identity, store, audit, new LoadReporter(config.load), log)
  }

  /** Compiles the stored policy text. The stored text was checked before it was installed, so failure here is corruption. */
  private installPolicy (): void {
    const text = this.store.state.policyCanonical
    this.policy = text === null ? null : parsePolicyOrThrow(text, 'stored policy', { stored: true })
  }

  /** A new configuration is durable: swap in its policy, drop sessions of hosts it removed, keep our own record true. */
  private installed (state: ConfigState, previous: ConfigState): void {
    if (state.policyCanonical !== previous.policyCanonical) {
      const checked = this.checked
      this.checked = null
      if (checked !== null && checked.canonical === state.policyCanonical) this.policy = checked; else this.installPolicy()
    }
    if (JSON.stringify(state.retiredKeys ?? {}) !== JSON.stringify(previous.retiredKeys ?? {})) this.data.forgetKeys() // no handle outlives its version
    this.pushKeysDrop(state, previous)
    for (const id of Object.keys(previous.hosts)) if (state.hosts[id] === undefined) this.disconnectHost(id)
    this.audit.write({ kind: 'admin', event: 'config_installed', version: state.version, origin: state.changedBy })
    this.syncOwnRecord()
  }

  /**
   * A member's own record (name, host and cluster addresses) is what hosts and peers use to reach it. A joiner was
   * added by its sponsor without its host address, and addresses may change: propose the correction once.
   */
  private syncOwnRecord (): void {
    const s = this.store.state
    const rec = s.members[this.identity.id]
    if (s.version === 0 || rec === undefined || rec.state !== 'active' || this.hostAddr === '') return
    const want = { name: this.config.name, addr: this.hostAddr, clusterAddr: this.cluster.addr === '' ? rec.clusterAddr : this.cluster.addr }
    if (rec.name === want.name && rec.addr === want.addr && rec.clusterAddr === want.clusterAddr) return
    const key = JSON.stringify(want)
    if (this.selfSync === key) return
    this.selfSync = key
    this.change('spd', 'member-record', d => {
      const r = d.members[this.identity.id]
      if (r === undefined || r.state !== 'active') throw new PemError('PEM_ERR_NOT_FOUND', 'this member is no longer listed')
      Object.assign(r, want)
    }).catch(err => { this.selfSync = null; this.log.warn({ err: (err as Error).message }, 'own member record not updated yet') })
  }

  /**
   * One admin change for the whole cluster, audited; resolves once it is installed here (see ClusterService.change).
   * `admin`: the admin session it is asked in (it must not have expired when the change is drafted).
   */
  async change (by: string, what: string, mutate: (draft: ConfigState) => void, admin?: AdminAuthority): Promise<ChangeResult> {
    try {
      const r = await this.cluster.change(by, what, mutate, admin)
      this.audit.write({ kind: 'admin', event: 'change_installed', user: by, change: what, version: r.version, rebased: r.rebased })
      return r
    } catch (err) {
      this.audit.write({ kind: 'admin', event: 'change_failed', user: by, change: what, code: PemError.from(err).code, message: (err as Error).message })
      throw err
    }
  }

  get compiledPolicy (): CompiledPolicy | null { return this.policy }

  /** Live admin sessions and outstanding login challenges (/metrics). */
  get adminCounts (): { sessions: number, challenges: number } { return this.admin?.counts ?? { sessions: 0, challenges: 0 } }

  get policyVersion (): number { return this.store.state.version }

  decide (input: DecideInput): Decision {
    if (this.policy === null) return { effect: 'deny', rule: null, key: null, compression: 'none', placement: 'appliance', bypass: false, weight: null, ttlMs: this.config.decisionTtlMs, audit: [], scope: null }
    return decide(this.policy, input)
  }

  /** Checks a new policy text and installs it cluster-wide; a bad policy throws PEM_ERR_BAD_POLICY and changes nothing. */
  async applyPolicy (text: string, by: string, admin?: AdminAuthority): Promise<ChangeResult> {
    let compiled: CompiledPolicy
    try {
      compiled = parsePolicyOrThrow(text, 'policy')
    } catch (err) {
      if (err instanceof PolicyRejected) Object.assign(err, { details: err.errors.map(formatPolicyError) })
      this.audit.write({ kind: 'admin', event: 'policy_refused', user: by, errors: (err as Error).message })
      throw err
    }
    this.checked = compiled
    const r = await this.change(by, 'policy', draft => {
      draft.policyText = text
      draft.policyCanonical = compiled.canonical
      for (const name of compiled.keys) if (draft.keys[name] === undefined) draft.keys[name] = [newKeyVersion(1)]
    }, admin)
    this.audit.write({ kind: 'admin', event: 'policy_applied', user: by, version: r.version })
    return r
  }

  /**
   * The servers a host balances over: the active members of the installed configuration with a host address (not
   * departed: a member that stopped cleanly serves nothing until it is counted again), cut to
   * the host's `only` list and carrying its preferences (`spctl host servers`; the '*' entry for hosts without one).
   */
  servers (hostId?: string): ServerEntry[] {
    const s = this.store.state
    let list: ServerEntry[] = Object.values(s.members)
      .filter(m => m.state === 'active' && m.departed !== true && m.addr !== '')
      .map(m => ({ id: m.id, key: m.key, addr: m.addr, name: m.name }))
    if (!list.some(m => m.id === this.identity.id)) list.unshift({ id: this.identity.id, key: encodePublicKey(this.identity.publicKey), addr: this.hostAddr, name: this.config.name })
    const hostName = hostId === undefined ? undefined : s.hosts[hostId]?.name
    const rule = (hostName !== undefined ? s.hostServers?.[hostName] : undefined) ?? s.hostServers?.['*']
    if (rule === undefined) return list
    if (rule.only !== null) {
      const only = list.filter(m => rule.only?.includes(m.name) === true)
      if (only.length > 0) list = only // a list naming no live member would strand the host: it keeps every member
    }
    return list.map(m => rule.prefer[m.name] === undefined ? m : { ...m, preference: rule.prefer[m.name] })
  }

  async start (): Promise<void> {
    const { host, port } = splitHostPort(this.config.listen)
    this.hostServer = await listen({
      host,
      port,
      identity: this.identity,
      hello: (h, ch) => {
        if (h.role === 'member' && !this.isPeer(ch.peer.id)) throw new PemError('PEM_ERR_BAD_ARGUMENT', 'members use the cluster listener, not the host listener')
        return { name: this.config.name, pv: this.policyVersion }
      },
      authorize: peer => {
        if (this.store.state.hosts[peer.id] !== undefined || this.isPeer(peer.id)) return 'session'
        if (peer.alpn === ALPN_ENROLL) return 'enroll'
        return false
      },
      limits: this.config.connections,
      frameLimit: hostListenerFrameLimit,
      onRefused: (reason, peer) => {
        this.counters.refused++
        const suppressed = this.refusals.note(reason)
        if (suppressed !== null) this.audit.write({ kind: 'security', event: 'host_refused', reason, host: peer.id ?? null, ip: peer.remoteAddress ?? null, suppressed })
      },
      onChannel: ch => this.serveHost(ch)
    })
    const a = this.hostServer.address()
    this.hostAddr = `${a.address.includes(':') ? `[${a.address}]` : a.address}:${a.port}`
    this.blocks.start(a.address, () => ({ load: this.load.project(0).total, weight: this.config.weight, pv: this.policyVersion }))
    const adminAt = splitHostPort(this.config.adminListen)
    this.admin = new AdminApi(this.identity, this.config.adminTokenTtlS, user => Object.prototype.hasOwnProperty.call(this.store.state.admins, user) ? this.store.state.admins[user] : undefined, e => this.audit.write({ kind: 'admin', ...e }),
      async (user, signKey) => { await this.change(user, `admin-key:${user}`, d => addAdminKey(d, user, signKey)) })
    registerAdminRoutes(this.admin, this)
    this.admin.metrics = memberMetrics(this)
    const b = await this.admin.listen(adminAt.host, adminAt.port)
    this.adminAddr = `${b.host.includes(':') ? `[${b.host}]` : b.host}:${b.port}`
    await this.cluster.start()
    this.syncOwnRecord()
    this.log.info({ id: this.identity.id, listen: this.hostAddr, admin: this.adminAddr, cluster: this.cluster.addr || null, pv: this.policyVersion }, 'spd serving')
  }

  private serveHost (ch: Channel): void {
    this.channels.add(ch)
    ch.on('close', () => this.channels.delete(ch))
    const ctx = { host: ch.peer.id, ip: ch.peer.remoteAddress }
    ch.onRequest = async (op, body) => {
      if (ch.mode === 'enroll') {
        if (op !== Op.Enroll) throw new PemError('PEM_ERR_NOT_ENROLLED', 'only Enroll is allowed before enrollment')
        return await handleEnroll(this, body as EnrollBody, ch.peer)
      }
      if (ch.role === 'member') {
        // A peer reading this member's audit trail: nothing else is served to a member key here.
        if (op !== Op.AuditRead || !this.isPeer(ch.peer.id)) throw new PemError('PEM_ERR_BAD_OPCODE', `opcode ${op} is not served to a member on the host listener`)
        return await readOwnDecisions(this, body as AuditReadBody)
      }
      switch (op) {
        case Op.Decide: return await this.latencies.timeDecision(async () => await handleDecide(this, body as DecideBody, ctx))
        case Op.FileHeader: return handleFileHeader(this, body as FileHeaderBody, ctx)
        case Op.BlocksSeal: {
          const bytes = (body as BlocksBody).data.length
          this.counters.sealBytes += bytes
          return await this.latencies.timeBlocks('seal', bytes, async () => await handleSeal(this.data, body as BlocksBody, ctx))
        }
        case Op.BlocksOpen: {
          const bytes = (body as BlocksBody).data.length
          this.counters.openBytes += bytes
          return await this.latencies.timeBlocks('open', bytes, async () => await handleOpen(this.data, body as BlocksBody, ctx))
        }
        case Op.FileKey: return handleFileKey(this, body as FileKeyBody, ctx)
        case Op.BlockChannel: return handleBlockChannel(this, body as FileKeyBody, ctx, ch)
        case Op.Ping: return { load: this.load.project(0), weight: this.config.weight, pv: this.policyVersion }
        case Op.Servers: return { pv: this.policyVersion, servers: this.servers(ch.peer.id) }
        case Op.KeyUsage: this.keyUsage.note(ctx.host, body as KeyUsageBody); return null
        default: throw new PemError('PEM_ERR_BAD_OPCODE', `opcode ${op} is not served on a host channel`)
      }
    }
  }

  /** True for the key of another active member (it may read this member's audit trail over the host listener). */
  private isPeer (id: string): boolean {
    return id !== this.identity.id && this.store.state.members[id]?.state === 'active'
  }

  /**
   * Revocation pushed (issue 18; FORMAT.md §4.5 "Revocation"): hosts holding file keys this configuration takes back
   * are told on their open channels to wipe them and decide again now, rather than at the end of the keys' ttl — every
   * host when the policy text changed, a key got a new version or a version was retired, a host whose key releases were revoked, and a
   * removed host (before disconnectHost closes its channels: queued frames are flushed first).
   */
  private pushKeysDrop (state: ConfigState, previous: ConfigState): void {
    const rotated = Object.keys(state.keys).some(k => previous.keys[k] !== undefined && state.keys[k][0]?.version !== previous.keys[k][0]?.version)
    const retired = JSON.stringify(state.retiredKeys ?? {}) !== JSON.stringify(previous.retiredKeys ?? {})
    const all: KeysDropReason | null = state.policyCanonical !== previous.policyCanonical ? 'policy' : rotated ? 'key-rotate' : retired ? 'key-retire' : null
    const reasonFor = (hostId: string): KeysDropReason | null => {
      const now = state.hosts[hostId]
      if (now === undefined) return previous.hosts[hostId] !== undefined ? 'host-remove' : null
      if (now.keysRevoked === true && previous.hosts[hostId]?.keysRevoked !== true) return 'host-revoke'
      return all
    }
    for (const ch of this.channels) {
      if (ch.closed || ch.mode !== 'session' || ch.role !== 'host') continue
      const reason = reasonFor(ch.peer.id)
      if (reason === null) continue
      try { ch.notify(Op.KeysDrop, { pv: state.version, reason }) } catch { /* not open yet (Hello pending): it holds no key from this member */ }
    }
  }

  /** Drops live sessions of a host that was just removed. */
  disconnectHost (hostId: string): void {
    for (const ch of this.channels) if (ch.peer.id === hostId) ch.close()
    this.blocks.dropHost(hostId)
  }

  async stop (): Promise<void> {
    this.trail.close()
    await this.cluster.stop()
    await this.hostServer?.close()
    this.blocks.stop()
    await this.admin?.close()
    this.load.close()
    this.data.close()
    this.audit.close()
    this.log.info('spd stopped')
  }
}

export function newKeyVersion (version: number): { version: number, material: Buffer, created: string } {
  const material = crypto.randomBytes(32)
  return { version, material, created: new Date().toISOString() }
}

/** The upgrade of an admin record made before admins had keys: it gains `signKey`, once (changes.ts checks the rule). */
function addAdminKey (d: ConfigState, user: string, signKey: string): void {
  const r = Object.prototype.hasOwnProperty.call(d.admins, user) ? d.admins[user] : undefined
  if (r === undefined) throw new PemError('PEM_ERR_NOT_FOUND', `no admin ${user}`)
  if (r.signKey !== undefined) throw new PemError('PEM_ERR_BUSY', `admin ${user} got a signing key meanwhile: log in again`)
  d.admins[user] = { ...r, signKey }
}
