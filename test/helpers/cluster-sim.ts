// Test harness for the cluster core: members built by sponsorship on a MockNetwork with a virtual clock, a fake
// durable store per member (survives restarts), kill/restart, and the safety check across all installs ever made.
import crypto from 'node:crypto'
import { encodePublicKey, identityFromKey, type Identity } from '../../lib/crypto/identity'
import { adminKeyPairFromSeed, encodeAdminKey } from '../../lib/crypto/admin-key'
import { SIG_CTX_ADMIN_MEMBER_CHANGE } from '../../lib/crypto/contexts'
import { SCRYPT_DEFAULT } from '../../lib/crypto/password'
import { sign } from '../../lib/crypto/sign'
import { signAsOrigin, type AdminAuthority } from '../../lib/server/cluster/changes'
import { ClusterNode, type ChangeEvent, type LockRecord } from '../../lib/server/cluster/node'
import { buildSet, contentOf } from '../../lib/server/cluster/set-codec'
import { MemoryHwmStore } from '../../lib/server/cluster/sequence'
import { MockNetwork, type FaultKnobs } from '../../lib/server/cluster/transport-mock'
import { emptyState, type ConfigState, type MemberRecord } from '../../lib/server/state'
import { pack, unpack } from '../../lib/wire/frame'

export interface SimMember {
  name: string
  identity: Identity
  addr: string
  node: ClusterNode
  stored: { state: ConfigState, plaintext: Buffer }
  epoch: number
  hwm: MemoryHwmStore
  events: ChangeEvent[]
  alive: boolean
  /** Make the next N commits fail (a crash or I/O error at install time). */
  failCommits: number
  /** The persisted lock (survives restarts, not wipes). */
  lock?: LockRecord
}

export function memberRecord (identity: Identity, name: string, addr: string): MemberRecord {
  return { id: identity.id, key: encodePublicKey(identity.publicKey), name, addr, clusterAddr: addr, state: 'active' }
}

const identityCache: Identity[] = []
/**
 * Deterministic key pairs (seed = SHA-256 of a label), so a schedule replays byte for byte across processes; cached
 * because each one builds a self-signed certificate.
 */
export function identityNo (i: number): Identity {
  while (identityCache.length <= i) {
    const seed = crypto.createHash('sha256').update(`pem test identity ${identityCache.length}`).digest()
    const der = Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), seed])
    identityCache.push(identityFromKey(crypto.createPrivateKey({ key: der, format: 'der', type: 'pkcs8' })))
  }
  return identityCache[i]
}

/** The admin of every simulated cluster, a fixed key pair standing in for one derived from a password at login. */
const simAdminKey = adminKeyPairFromSeed(crypto.createHash('sha256').update('pem test admin').digest())
/** Member-list changes are made in this admin's session (changes.ts). */
export const SIM_ADMIN: AdminAuthority = { user: 'root', expires: Number.MAX_SAFE_INTEGER, sign: message => sign(SIG_CTX_ADMIN_MEMBER_CHANGE, message, simAdminKey.signKey) }
/** The admin list of every simulated cluster: SIM_ADMIN with its public key. */
export const simAdmins = (): ConfigState['admins'] => ({ [SIM_ADMIN.user]: { hash: 'unused', signKey: encodeAdminKey(SCRYPT_DEFAULT, Buffer.alloc(16), simAdminKey.publicKey) } })

export class Sim {
  readonly net: MockNetwork
  readonly clusterId = crypto.createHash('sha256').update('test cluster').digest()
  readonly m = new Map<string, SimMember>()
  readonly allInstalls: Array<{ member: string, version: number, digest: string }> = []
  private next = 0

  constructor (seed = 1, knobs: Partial<FaultKnobs> = {}, readonly intervalMs = 1000, readonly activeWindowMs = 3500) {
    this.net = new MockNetwork(seed, knobs)
  }

  get now (): number { return this.net.clock.now() }
  get (name: string): SimMember { const x = this.m.get(name); if (x === undefined) throw new Error(`no member ${name}`); return x }
  node (name: string): ClusterNode { return this.get(name).node }
  names (): string[] { return [...this.m.keys()] }
  alive (): SimMember[] { return [...this.m.values()].filter(x => x.alive) }

  private startNode (x: SimMember): void {
    const node = new ClusterNode({
      clusterId: this.clusterId,
      identity: x.identity,
      addr: x.addr,
      transport: this.net.transport(x.addr),
      clock: this.net.clock,
      epoch: x.epoch,
      hwm: x.hwm,
      installed: x.stored.state,
      installedPlaintext: x.stored.plaintext,
      intervalMs: this.intervalMs,
      activeWindowMs: this.activeWindowMs,
      commit: (state, plaintext) => {
        if (x.failCommits > 0) { x.failCommits--; throw new Error('injected commit failure') }
        x.stored = { state, plaintext }
        this.allInstalls.push({ member: x.name, version: state.version, digest: crypto.createHash('sha256').update(plaintext).digest('hex') })
      },
      locks: { load: () => x.lock, save: l => { x.lock = { ...l } } },
      onChange: e => x.events.push(e)
    })
    x.node = node
    x.alive = true
    this.net.attach(x.addr, p => { if (x.node === node) node.receive(p) })
    this.loop(x, Math.floor(this.net.random() * this.intervalMs))
  }

  private loop (x: SimMember, delay: number): void {
    const node = x.node
    const run = (): void => {
      if (x.node !== node || !x.alive) return
      node.tick()
      this.net.clock.at(this.net.clock.now() + this.intervalMs, run)
    }
    this.net.clock.at(this.now + delay, run)
  }

  /** SIGSTOP: no ticks, and packets that arrive meanwhile are lost to it. */
  pause (name: string): void { const x = this.get(name); x.alive = false; x.node.stopped = true }
  /** SIGCONT: the same process carries on (same epoch, counter continues). */
  resume (name: string): void { const x = this.get(name); x.alive = true; x.node.stopped = false; this.loop(x, 0) }

  /** Restart with a wiped data dir but the same key: back to the trust state, new replay marks, a clock-based epoch. */
  restartWiped (name: string, sponsor: string): void {
    const x = this.get(name); const s = this.get(sponsor)
    const trust = { ...emptyState(), version: 0, changedAt: new Date(0).toISOString(), members: { [x.identity.id]: memberRecord(x.identity, name, x.addr), [s.identity.id]: memberRecord(s.identity, sponsor, s.addr) } }
    x.stored = { state: trust, plaintext: pack(trust) }
    x.hwm = new MemoryHwmStore()
    x.lock = undefined
    x.epoch = 1_000_000 + Math.floor(this.now / 1000)
    x.node.stopped = true
    this.startNode(x)
  }

  private add (name: string, state: ConfigState, identity: Identity): SimMember {
    const x = { name, identity, addr: `10.0.0.${this.m.size + 1}:7400`, stored: { state, plaintext: pack(state) }, epoch: 1, hwm: new MemoryHwmStore(), events: [], alive: false, failCommits: 0 } as unknown as SimMember
    this.m.set(name, x)
    this.startNode(x)
    return x
  }

  /** The first member: version 1 lists only itself. */
  founder (name: string): SimMember {
    const identity = identityNo(this.next++)
    const addr = `10.0.0.${this.m.size + 1}:7400`
    const state = { ...emptyState(), version: 1, changedAt: new Date(0).toISOString(), admins: simAdmins(), members: { [identity.id]: memberRecord(identity, name, addr) } }
    return this.add(name, state, identity)
  }

  /** An admin on `sponsor` adds a new member's key; the new member's local admin trusts the sponsor (spd trust). */
  sponsorJoin (sponsor: string, name: string): SimMember {
    const s = this.get(sponsor)
    const identity = identityNo(this.next++)
    const addr = `10.0.0.${this.m.size + 1}:7400`
    const rec = memberRecord(identity, name, addr)
    s.node.propose(`add ${name}`, d => { d.members[identity.id] = rec }, SIM_ADMIN)
    const trust = { ...emptyState(), version: 0, changedAt: new Date(0).toISOString(), members: { [identity.id]: rec, [s.identity.id]: memberRecord(s.identity, sponsor, s.addr) } }
    return this.add(name, trust, identity)
  }

  kill (name: string): void { const x = this.get(name); x.alive = false; x.node.stopped = true; this.net.detach(x.addr) }

  /** Restart from the member's durable store with a new boot epoch and the persisted replay marks. */
  restart (name: string): void { const x = this.get(name); x.node.stopped = true; x.epoch++; this.startNode(x) }

  run (ms: number): void { this.net.clock.runFor(ms) }

  /** Advance virtual time in 100 ms steps until `pred` holds; returns the virtual ms it took, or -1. */
  until (pred: () => boolean, maxMs = 60_000): number {
    const start = this.now
    while (this.now - start < maxMs) {
      if (pred()) return this.now - start
      this.run(100)
    }
    return pred() ? this.now - start : -1
  }

  /** All alive members installed the same (version, digest), at least `min`. */
  converged (min = 0, who: SimMember[] = this.alive()): boolean {
    const first = who[0].node.installed
    return first.version >= min && who.every(x => x.node.installed.version === first.version && x.node.installed.digest === first.digest)
  }

  /** Safety: never two different digests installed under one version, by anyone, ever. */
  safetyViolation (): string | null {
    const byVersion = new Map<number, string>()
    for (const i of this.allInstalls) {
      const d = byVersion.get(i.version)
      if (d !== undefined && d !== i.digest) return `version ${i.version}: ${d.slice(0, 12)} and ${i.digest.slice(0, 12)} (${i.member})`
      byVersion.set(i.version, i.digest)
    }
    return null
  }

  /** Build an n-member cluster by sponsorship (each new member sponsored by the previous one) and wait for it. */
  static cluster (n: number, seed = 1, knobs: Partial<FaultKnobs> = {}): Sim {
    const sim = new Sim(seed, knobs)
    const names = ['A', 'B', 'C', 'D', 'E', 'F', 'G'].slice(0, n)
    sim.founder(names[0])
    for (let i = 1; i < n; i++) {
      sim.sponsorJoin(names[i - 1], names[i])
      if (sim.until(() => sim.converged(i + 1), 120_000) < 0) throw new Error(`member ${names[i]} did not join`)
    }
    return sim
  }
}

export function setPolicy (text: string): (d: ConfigState) => void {
  return d => { d.policyText = text }
}

/**
 * What a compromised member can make with its own key: `as`'s installed configuration edited by `edit`, at `version`,
 * with its own change log entry (and any `extraLog` entries before it) signed as origin, sealed to the members `edit`
 * leaves active. Returns the set and its content digest.
 */
export function forgeSet (clusterId: Buffer, as: SimMember, version: number, edit: (d: ConfigState) => void, extraLog: NonNullable<ConfigState['clusterLog']> = []): { set: Buffer, digest: string, state: ConfigState } {
  const state = unpack(as.node.installed.plaintext) as ConfigState
  edit(state)
  state.version = version
  state.changedBy = as.identity.id
  state.clusterLog = [...(state.clusterLog ?? []), ...extraLog, { version, origin: as.identity.id, change: 'forged' }]
  signAsOrigin(clusterId, state, as.identity)
  const { plaintext, digest } = contentOf(state)
  return { set: buildSet(clusterId, as.identity, plaintext, as.identity.id), digest: digest.toString('hex'), state }
}
