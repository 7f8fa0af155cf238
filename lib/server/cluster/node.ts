// One member's cluster protocol engine: heartbeats, message acceptance, set fetch/open, pending/lock/install and
// admin changes. Pure apart from its injected clock, transport, replay-mark store and commit callback; the owner
// calls tick() every interval and receive() for every packet. Rules: sync.ts; formats: FORMAT.md §5–6.
import { sha256 } from '../../crypto/cluster-auth'
import type { Identity } from '../../crypto/identity'
import { ClusterMsgType, ClusterStatus, digestListDigest, MemberState, PendingPhase, type DigestEntry, type HeartbeatBody } from '../../wire/cluster-msg'
import { PemError, type ErrorCode } from '../../wire/errors'
import { pack } from '../../wire/frame'
import type { ConfigState } from '../state'
import { changeLanded, draftChange, type AdminAuthority, type Change, type ChangeEvent } from './changes'
import { acceptMessage, buildHeartbeat, buildListFetch, buildSetFetch, type Signer } from './message'
import { MemberTable } from './members'
import { ReplayGuard, SequenceSource, type HwmStore } from './sequence'
import { parsePolicySet } from '../../wire/policy-set'
import { buildSet, openSet, type OpenedSet } from './set-codec'
import { agreement, betterTarget, majorityOf, nextStreak, shouldSwitch, type Advert, type Candidate, type PeerState, type PendingRef } from './sync'
import type { Clock, Packet, Transport } from './transport'

export type { ChangeEvent } from './changes'

/**
 * Where a member persists its lock before advertising it, so a restart cannot unlock it: the (version, digest) and the
 * member's own sealed copy of the locked set, from which it restores the locked pending set after a restart.
 */
export interface LockRecord { version: number, digest: string, set?: Buffer }
export interface LockStore {
  load: () => LockRecord | undefined
  save: (lock: LockRecord) => void
}

export interface NodeOptions {
  clusterId: Buffer
  identity: Identity
  addr: string
  transport: Transport
  clock: Clock
  /** Persisted boot counter of this member, already incremented for this start. */
  epoch: number
  hwm: HwmStore
  /** The installed configuration (from the store); for a joiner, its trust state (version 0: itself + sponsor). */
  installed: ConfigState
  /** The exact plaintext bytes that were installed (keeps the digest stable); default pack(installed). */
  installedPlaintext?: Buffer
  intervalMs?: number
  activeWindowMs?: number
  /**
   * Wall clock, for the changedAt stamp of proposed versions only (display); durations use `clock`. Default: `clock`
   * (a virtual clock in simulations keeps the content, hence the digests, deterministic).
   */
  wallClock?: () => number
  /** Make the new configuration durable (atomic); throwing leaves the old one installed and the set pending. */
  commit: (state: ConfigState, plaintext: Buffer) => void
  locks?: LockStore
  onChange?: (e: ChangeEvent) => void
}

interface Held { version: number, digest: string, plaintext: Buffer, state: ConfigState, set: Buffer | null, origin: string, locked: boolean, since: number, listed: Set<string> }
interface Want extends Candidate { from: string, tries: number }

const MAX_FETCH_TRIES = 5
/** How long a refused or stalled fetch target is ignored, in intervals. */
const DISTRUST_INTERVALS = 30

/** This member's own digest list, encoded once per member table (it changes only on install). */
interface OwnList { table: MemberTable, entries: DigestEntry[], digest: Buffer, hex: string }
/** A sender's last full digest list, as far as this member needs it: its digest and whether it lists this member. */
interface PeerList { digest: Buffer, addressed: boolean }

export class ClusterNode {
  readonly id: string
  private readonly digest: Buffer
  readonly intervalMs: number
  readonly activeWindowMs: number
  installed: Held
  members: MemberTable
  pending: Held | null = null
  want: Want | null = null
  readonly peers = new Map<string, PeerState>()
  readonly rejections: Record<string, number> = {}
  readonly alarms: string[] = []
  /** Short heartbeats ignored because their list digest did not match the sender's last full list here. */
  unknownLists = 0
  /** Every (version, digest) this member installed, in order (for invariant checks). */
  readonly installs: Array<{ version: number, digest: string }> = []
  private readonly signer: Signer
  private readonly guard: ReplayGuard
  private readonly bars = new Set<string>()
  private lastBar: [number, Buffer] | null = null
  private readonly originSeen = new Map<string, string>()
  /** Catch-up targets that stalled (e.g. a fast-forwarded version nobody else has): ignored until the time given. */
  private readonly distrusted = new Map<string, number>()
  private readonly queue: Change[] = []
  private proposal: (Change & { version: number, digest: string }) | null = null
  stopped = false
  private lockMemo: { version: number, digest: string } | null
  private ownList: OwnList | null = null
  /** The list digest of the last heartbeat broadcast in full: later ones carry only the digest while it holds. */
  private fullListSent: string | null = null
  /** Per sender, its last full list (FORMAT.md §5): a short heartbeat is trusted only when its digest matches it. */
  private readonly peerLists = new Map<string, PeerList>()
  /** When this member last asked a sender for its full list, and last answered a member's ask (rate limits). */
  private readonly listAsked = new Map<string, number>()
  private readonly listAnswered = new Map<string, number>()
  /** Per sender, its last heartbeat body accepted (message.ts skips decoding a byte-identical one). */
  private readonly bodies = new Map<string, { bytes: Buffer, body: HeartbeatBody }>()
  /** The advertisement read from a (memoised, read-only) body, so an unchanged heartbeat converts no digests. */
  private readonly adverts = new WeakMap<HeartbeatBody, Advert>()
  /** When tick() last ran, and until when decisions stay fenced after a gap in the ticks (canServe). */
  private lastTick: number
  private quietUntil = -Infinity

  constructor (private readonly o: NodeOptions) {
    this.id = o.identity.id
    this.digest = Buffer.from(this.id, 'hex')
    this.intervalMs = o.intervalMs ?? 1000
    this.activeWindowMs = o.activeWindowMs ?? 3.5 * this.intervalMs
    this.signer = { clusterId: o.clusterId, identity: o.identity, seq: new SequenceSource(o.epoch) }
    this.guard = new ReplayGuard(o.hwm)
    const plaintext = o.installedPlaintext ?? pack(o.installed)
    this.installed = this.held(plaintext, o.installed, o.installed.changedBy, true)
    this.members = MemberTable.of(o.installed)
    this.lastTick = o.clock.now()
    const memo = o.locks?.load()
    this.lockMemo = memo !== undefined && memo.version > o.installed.version ? { version: memo.version, digest: memo.digest } : null
    if (this.lockMemo !== null && memo?.set !== undefined) this.restoreLocked(memo.set)
  }

  /** After a restart: hold the locked set again (locked), so it keeps being advertised and can be fetched. */
  private restoreLocked (set: Buffer): void {
    try {
      const s = openSet(set, { clusterId: this.o.clusterId, identity: this.o.identity, members: this.members, installed: this.installed.state })
      if (s.version !== this.lockMemo?.version || s.digest.toString('hex') !== this.lockMemo.digest) return
      this.pending = { ...this.held(s.plaintext, s.state, s.origin, true), set: Buffer.from(set) }
      this.originSeen.set(`${s.version}:${s.origin}`, this.lockMemo.digest)
    } catch (err) {
      this.refuse(PemError.from(err, 'PEM_ERR_STORE').code)
    }
  }

  /** A lock survives restarts: at its version only its digest (or an installed one) may be held again. */
  private lockForbids (version: number, digest: string): boolean {
    return this.lockMemo !== null && this.lockMemo.version === version && this.lockMemo.digest !== digest
  }

  private held (plaintext: Buffer, state: ConfigState, origin: string, locked: boolean): Held {
    const listed = new Set(MemberTable.of(state).activeIds())
    const set = state.version > 0 && listed.has(this.id) ? buildSet(this.o.clusterId, this.o.identity, plaintext, /^[0-9a-f]{64}$/.test(origin) ? origin : this.id) : null
    return { version: state.version, digest: sha256(plaintext).toString('hex'), plaintext, state, set, origin, locked, since: this.o.clock.now(), listed }
  }

  private refuse (code: ErrorCode): void { this.rejections[code] = (this.rejections[code] ?? 0) + 1 }
  private now (): number { return this.o.clock.now() }

  // ---- sending -----------------------------------------------------------------------------------------------

  private list (): OwnList {
    if (this.ownList?.table !== this.members) {
      const entries = this.members.all().map(m => ({ digest: m.digest, addr: m.addr, state: m.removed ? MemberState.Removed : MemberState.Active }))
      const digest = digestListDigest(entries)
      this.ownList = { table: this.members, entries, digest, hex: digest.toString('hex') }
    }
    return this.ownList
  }

  /** What this member advertises now, with its full digest list (broadcast() sends the short form when it may). */
  heartbeatBody (status?: ClusterStatus): HeartbeatBody & { members: DigestEntry[] } {
    const p = this.pending
    const list = this.list()
    return {
      status: status ?? (p !== null ? ClusterStatus.SyncInProgress : this.installed.version === 0 ? ClusterStatus.Join : ClusterStatus.SyncDone),
      installedVersion: this.installed.version,
      installedDigest: Buffer.from(this.installed.digest, 'hex'),
      pendingVersion: p?.version ?? 0,
      pendingDigest: p !== null ? Buffer.from(p.digest, 'hex') : null,
      phase: p === null ? PendingPhase.None : p.locked ? PendingPhase.Locked : PendingPhase.Held,
      bar: this.lastBar,
      members: [...list.entries], // a copy: callers may edit the body they get
      listDigest: list.digest
    }
  }

  private sendTo (id: string, kind: Packet['kind'], bytes: Buffer): void {
    const m = this.members.get(id)
    if (m !== undefined && id !== this.id) this.o.transport.send({ kind, from: this.o.addr, to: m.addr, bytes })
  }

  /**
   * One signed heartbeat, the same bytes to every active member: one signature per interval whatever N is. A copy
   * relayed from one receiver to another is then an exact duplicate there (counted once, for its signer). The digest
   * list goes in full in the first heartbeat after a start, after every change of the list, and in a Leave; otherwise
   * only its digest goes (a member that does not know it asks with a ListFetch).
   */
  broadcast (status?: ClusterStatus): void {
    if (this.stopped) return
    const body: HeartbeatBody = this.heartbeatBody(status)
    if (body.status !== ClusterStatus.Leave && this.fullListSent === this.list().hex) body.members = null
    this.fullListSent = this.list().hex
    const bytes = buildHeartbeat(this.signer, body)
    for (const m of this.members.active()) if (m.id !== this.id) this.sendTo(m.id, 'msg', bytes)
  }

  tick (): void {
    if (this.stopped) return
    // Not run for longer than the active window (SIGSTOP, a frozen VM, a stalled event loop): what it heard before is
    // old, and so are the messages queued for it meanwhile; it serves again one active window later, when fresh
    // heartbeats have replaced them.
    const now = this.now()
    if (now - this.lastTick > this.activeWindowMs) this.quietUntil = now + this.activeWindowMs
    this.lastTick = now
    this.applyQueued()
    this.evaluate()
    this.broadcast()
    if (this.want !== null) {
      if (++this.want.tries > MAX_FETCH_TRIES) this.want = null
      else this.sendTo(this.want.from, 'msg', buildSetFetch(this.signer, { version: this.want.version, digest: Buffer.from(this.want.digest, 'hex') }))
    }
  }

  /** Graceful shutdown: one Leave heartbeat, then silence. */
  leave (): void { this.broadcast(ClusterStatus.Leave); this.stopped = true }

  // ---- receiving ---------------------------------------------------------------------------------------------

  receive (packet: Packet): void {
    if (this.stopped) return
    try {
      if (packet.kind === 'msg') this.receiveMsg(packet.bytes); else this.receiveSet(packet.bytes)
    } catch (err) {
      this.refuse(PemError.from(err, 'PEM_ERR_CLUSTER_MSG').code)
    }
  }

  private receiveMsg (bytes: Buffer): void {
    const msg = acceptMessage(bytes, { clusterId: this.o.clusterId, members: this.members, guard: this.guard, bodies: this.bodies })
    if (msg.type === ClusterMsgType.ListFetch) {
      // Answer with a heartbeat in full, to the asker only; at most one per asker per half interval.
      if (this.now() - (this.listAnswered.get(msg.sender) ?? -Infinity) < this.intervalMs / 2) return
      this.listAnswered.set(msg.sender, this.now())
      this.sendTo(msg.sender, 'msg', buildHeartbeat(this.signer, this.heartbeatBody()))
      return
    }
    if (msg.type === ClusterMsgType.SetFetch) {
      const { version, digest } = msg.body
      const hex = digest.toString('hex')
      for (const h of [this.pending, this.installed]) {
        if (h?.set != null && h.version === version && h.digest === hex) { this.sendTo(msg.sender, 'set', h.set); return }
      }
      return
    }
    const hb = msg.body
    const addressed = this.addressedBy(msg.sender, hb)
    if (addressed === 'unknown') return
    if (!addressed) throw new PemError('PEM_ERR_NOT_ADDRESSED', 'heartbeat does not list this member')
    let advert = this.adverts.get(hb)
    if (advert === undefined) {
      advert = { iv: hb.installedVersion, idg: hb.installedDigest.toString('hex'), pv: hb.pendingVersion, pdg: hb.pendingDigest?.toString('hex') ?? null, phase: hb.phase }
      this.adverts.set(hb, advert)
    }
    const prev = this.peers.get(msg.sender)
    // A Leave stops the sender blocking at once; it still counts as heard now for the staleness fence, like a member
    // that vanished. Leaving the count takes its departure change (service.ts), not this message.
    const left = hb.status === ClusterStatus.Leave
    this.peers.set(msg.sender, { advert, lastHeard: this.now(), left, streak: nextStreak(prev?.streak ?? new Map(), advert) })
    if (hb.bar !== null) this.applyBar(hb.bar[0], hb.bar[1].toString('hex'))
    const candidates: Candidate[] = [{ version: advert.iv, digest: advert.idg, installed: true }]
    if (advert.pdg !== null) candidates.push({ version: advert.pv, digest: advert.pdg, installed: false, locked: advert.phase === PendingPhase.Locked })
    for (const c of candidates) {
      if (!shouldSwitch(this.installed.version, this.pendingRef(), c) || !betterTarget(c, this.want)) continue
      if ((this.distrusted.get(`${c.version}:${c.digest}`) ?? -Infinity) > this.now()) continue
      if (!c.installed && this.lockForbids(c.version, c.digest)) continue
      this.want = { ...c, from: msg.sender, tries: 0 }
      this.sendTo(msg.sender, 'msg', buildSetFetch(this.signer, { version: c.version, digest: Buffer.from(c.digest, 'hex') }))
    }
    this.evaluate()
  }

  /**
   * Does this heartbeat list this member (not as removed)? A full list answers it and is remembered as the sender's
   * last full list; a short one only through that remembered list with the same digest. Any other digest (unknown,
   * stale, or another sender's) is never taken as listing this member: 'unknown', the heartbeat is ignored (counted in
   * `unknownLists`, not a refusal: it is routine after a restart or a join) and the full list is asked for.
   */
  private addressedBy (sender: string, hb: HeartbeatBody): boolean | 'unknown' {
    if (hb.members !== null) {
      const me = hb.members.find(e => e.digest.equals(this.digest))
      const addressed = me !== undefined && me.state !== MemberState.Removed
      this.peerLists.set(sender, { digest: hb.listDigest, addressed })
      return addressed
    }
    const known = this.peerLists.get(sender)
    if (known !== undefined && known.digest.equals(hb.listDigest)) return known.addressed
    if (this.now() - (this.listAsked.get(sender) ?? -Infinity) >= this.intervalMs / 2) {
      this.listAsked.set(sender, this.now())
      this.sendTo(sender, 'msg', buildListFetch(this.signer, { listDigest: hb.listDigest }))
    }
    this.unknownLists++
    return 'unknown'
  }

  private pendingRef (): PendingRef | null {
    const p = this.pending
    if (p === null) return null
    let lockedElsewhere = false
    for (const peer of this.peers.values()) {
      const a = peer.advert
      if (a.pv === p.version && a.pdg === p.digest && a.phase === PendingPhase.Locked) { lockedElsewhere = true; break }
    }
    return { version: p.version, digest: p.digest, locked: p.locked, lockedElsewhere }
  }

  private receiveSet (bytes: Buffer): void {
    let s: OpenedSet
    try {
      s = openSet(bytes, { clusterId: this.o.clusterId, identity: this.o.identity, members: this.members, installed: this.installed.state })
      // A jump past what the change log accounts for is believed only when a majority of the installed voters have
      // installed it (a member back from a long downtime); one member announcing it is a fast-forward attempt.
      if (s.beyondLog && !this.installedByMajority(s.version, s.digest.toString('hex'))) {
        throw new PemError('PEM_ERR_BAD_SUCCESSION', `version ${s.version} is ${s.version - this.installed.version} ahead and not installed by a majority`)
      }
    } catch (err) {
      this.distrustWanted(bytes, PemError.from(err).code)
      throw err
    }
    const digest = s.digest.toString('hex')
    const originKey = `${s.version}:${s.origin}`
    const seen = this.originSeen.get(originKey)
    if (seen !== undefined && seen !== digest) {
      this.applyBar(s.version, s.origin)
      throw new PemError('PEM_ERR_EQUIVOCATION', `origin ${s.origin.slice(0, 16)} signed two sets for version ${s.version}`)
    }
    this.originSeen.set(originKey, digest)
    if (this.bars.has(originKey)) throw new PemError('PEM_ERR_EQUIVOCATION', `version ${s.version} of origin ${s.origin.slice(0, 16)} is barred`)
    const w = this.want
    if (w === null || w.version !== s.version || w.digest !== digest) return // unsolicited: nothing changes
    this.want = null
    if (!shouldSwitch(this.installed.version, this.pendingRef(), w)) return
    const relock = this.lockMemo !== null && this.lockMemo.version === s.version && this.lockMemo.digest === digest
    this.pending = this.held(s.plaintext, s.state, s.origin, relock)
    this.broadcast()
    this.evaluate()
  }

  /**
   * The set this member asked for was refused (forged succession, bad signature, not listed…): stop asking for it and
   * ignore that (version, digest) for a while, so an advertiser of a bad set cannot keep this member from better ones.
   */
  private distrustWanted (bytes: Buffer, code: string): void {
    const w = this.want
    if (w === null) return
    let header: { version: number, digest: string }
    try { const raw = parsePolicySet(bytes); header = { version: raw.version, digest: raw.contentDigest.toString('hex') } } catch { return }
    if (header.version !== w.version || header.digest !== w.digest) return
    this.want = null
    this.distrusted.set(`${w.version}:${w.digest}`, this.now() + DISTRUST_INTERVALS * this.intervalMs)
    this.alarms.push(`refused the set of version ${w.version} advertised by ${w.from.slice(0, 16)}: ${code}`)
  }

  private installedByMajority (version: number, digest: string): boolean {
    const voters = this.members.voterIds()
    const by = voters.filter(id => { const a = this.peers.get(id)?.advert; return a !== undefined && a.iv === version && a.idg === digest }).length
    return by >= majorityOf(voters.length)
  }

  private applyBar (version: number, origin: string): void {
    const key = `${version}:${origin}`
    if (this.bars.has(key) || version <= this.installed.version) return
    this.bars.add(key)
    this.lastBar = [version, Buffer.from(origin, 'hex')]
    this.alarms.push(`equivocation: version ${version} from origin ${origin.slice(0, 16)}`)
    // An unlocked pending set of that origin and version is dropped; a locked one stays (unlocking is unsafe).
    if (this.pending !== null && !this.pending.locked && this.pending.version === version && this.pending.origin === origin) this.pending = null
  }

  // ---- agreement and install -----------------------------------------------------------------------------------

  evaluate (): void {
    const p = this.pending
    if (p === null) return
    if (p.version <= this.installed.version) { this.pending = null; return }
    // A catch-up target (more than one version ahead) can only install once the active members have it installed;
    // if that does not happen in time it was a fast-forward by one member: drop it and ignore it for a while.
    if (!p.locked && p.version > this.installed.version + 1 && this.now() - p.since > this.activeWindowMs + 2 * this.intervalMs) {
      this.distrusted.set(`${p.version}:${p.digest}`, this.now() + DISTRUST_INTERVALS * this.intervalMs)
      this.alarms.push(`stalled catch-up to version ${p.version} dropped`)
      this.pending = null
      return
    }
    const a = agreement({
      self: this.id,
      now: this.now(),
      activeWindowMs: this.activeWindowMs,
      voters: this.members.voterIds(),
      listed: p.listed,
      installedVersion: this.installed.version,
      pending: { version: p.version, digest: p.digest, locked: p.locked },
      peers: this.peers
    })
    if (a.canLock && !this.lockForbids(p.version, p.digest)) {
      try { this.o.locks?.save({ version: p.version, digest: p.digest, set: p.set ?? undefined }) } catch { this.refuse('PEM_ERR_STORE'); return }
      this.lockMemo = { version: p.version, digest: p.digest }
      p.locked = true
      this.broadcast()
      this.evaluate()
      return
    }
    if (a.canInstall) this.install(p)
  }

  private install (p: Held): void {
    try {
      this.o.commit(p.state, p.plaintext)
    } catch {
      this.refuse('PEM_ERR_STORE')
      return
    }
    this.installed = { ...p, locked: true }
    this.members = MemberTable.of(p.state)
    this.installs.push({ version: p.version, digest: p.digest })
    this.prune(p.version)
    this.pending = null
    if (this.want !== null && this.want.version <= p.version) this.want = null
    const pr = this.proposal
    if (pr !== null && p.version >= pr.version) {
      this.proposal = null
      if (changeLanded(p.state, pr.version, this.id, pr.changeId)) {
        this.o.onChange?.({ changeId: pr.changeId, outcome: 'installed', version: pr.version, digest: pr.digest })
      } else {
        this.queue.unshift({ changeId: pr.changeId, mutate: pr.mutate, admin: pr.admin })
        this.o.onChange?.({ changeId: pr.changeId, outcome: 'rebased', version: pr.version, lostTo: { version: p.version, digest: p.digest }, code: 'PEM_ERR_CHANGE_REBASED' })
      }
    }
    this.broadcast()
  }

  /** Forget per-version bookkeeping at or below the installed version (bounded memory over a long run). */
  private prune (installed: number): void {
    const below = (key: string): boolean => Number(key.slice(0, key.indexOf(':'))) <= installed
    for (const k of this.originSeen.keys()) if (below(k)) this.originSeen.delete(k)
    for (const k of this.bars) if (below(k)) this.bars.delete(k)
    for (const [k, until] of this.distrusted) if (below(k) || until <= this.now()) this.distrusted.delete(k)
    for (const m of [this.peerLists, this.listAsked, this.listAnswered, this.bodies]) for (const id of m.keys()) if (this.members.get(id) === undefined) m.delete(id)
    if (this.lastBar !== null && this.lastBar[0] <= installed) this.lastBar = null
    if (this.installs.length > 1024) this.installs.splice(0, this.installs.length - 1024)
  }

  // ---- admin changes ---------------------------------------------------------------------------------------------

  /**
   * Queue an admin change; it becomes installed-version + 1 as soon as nothing else is in flight. `admin` is the admin
   * session it is made for: only such a change may add or remove a member, signed by that admin (changes.ts).
   */
  propose (changeId: string, mutate: (draft: ConfigState) => void, admin?: AdminAuthority): void {
    this.queue.push({ changeId, mutate, admin })
    this.applyQueued()
  }

  /**
   * Freshness fence for policy decisions (CHECKLIST C14): true while this member is counted (not departed) and has
   * heard, within `maxStalenessMs`, from enough counted members that are not ahead of it (their installed version is
   * not above its own) to form a majority with itself. A member cut off longer stops answering decisions; one that
   * comes back (a restart, a healed partition, a pause) serves again only once it has installed what the majority
   * installed meanwhile; a departed one serves nothing until its return is installed. A member that advertises a
   * version above ours only withholds its own vote, so one member cannot stop the others serving. After a gap in its
   * own ticks longer than the active window (paused: messages queued for it meanwhile are old and would read as
   * "not ahead") it serves nothing until one active window after its ticks resumed.
   */
  canServe (maxStalenessMs: number): boolean {
    const voters = this.members.voterIds()
    if (!voters.includes(this.id)) return false
    if (voters.length > 1 && (this.now() - this.lastTick > this.activeWindowMs || this.now() < this.quietUntil)) return false
    const mine = this.installed.version
    const heard = voters.filter(id => {
      if (id === this.id) return true
      const p = this.peers.get(id)
      return p !== undefined && this.now() - p.lastHeard <= maxStalenessMs && p.advert.iv <= mine
    }).length
    return heard >= majorityOf(voters.length)
  }

  /** Whether the installed configuration leaves this member out of the count (its departure, until its return). */
  get departed (): boolean { return this.members.get(this.id)?.departed === true }

  /** Changes accepted by propose() and not yet installed or failed (lost if the process stops now). */
  get unresolved (): string[] { return [...(this.proposal !== null ? [this.proposal.changeId] : []), ...this.queue.map(c => c.changeId)] }

  get busy (): boolean { return this.queue.length > 0 || this.proposal !== null || this.pending !== null }

  private applyQueued (): void {
    if (this.stopped || this.queue.length === 0 || this.pending !== null || this.proposal !== null || this.want !== null) return
    if (this.lockMemo !== null && this.lockMemo.version === this.installed.version + 1) return // wait for the locked version
    const change = this.queue.shift() as Change
    let draft: ConfigState
    let held: Held
    try {
      const { state, plaintext } = draftChange(this.installed, this.members, this.o.identity, this.o.clusterId, change, this.o.wallClock?.() ?? this.now())
      draft = state
      held = this.held(plaintext, draft, this.id, false) // sealing refuses a set over the size or member limits
    } catch (err) {
      this.o.onChange?.({ changeId: change.changeId, outcome: 'failed', version: this.installed.version + 1, code: PemError.from(err, 'PEM_ERR_BAD_CONFIG').code })
      return
    }
    this.pending = held
    this.originSeen.set(`${draft.version}:${this.id}`, this.pending.digest)
    this.proposal = { ...change, version: draft.version, digest: this.pending.digest }
    this.broadcast()
    this.evaluate()
  }
}
