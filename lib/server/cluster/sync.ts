// The install rule as pure functions over what a member has heard: which advertised set to fetch (the switch rule),
// when to lock a pending set, and when to install it. docs/CLUSTER.md explains why this is safe; in short:
//
//   switch   higher version wins; at equal version an installed digest wins, then a digest some member has locked,
//            then the smaller digest; a pending set this member has LOCKED only ever gives way to an installed
//            digest or a higher version.
//   lock     pending (v, d) with v = installed + 1, no active member advertising another digest at v, every
//            active member listed in the set advertising (v, d) in >= 2 consecutive messages, and those
//            supporters (self included) a strict majority of the installed voters.
//   install  no conflict, every active listed member advertising (v, d) in >= 2 messages, and either
//            (a) locked with a strict majority of voters advertising (v, d) locked or installed, or
//            (b) catch-up (after downtime; joiners): a strict majority of voters advertise (v, d) installed, or,
//                for a joiner's trust state (version 0) only, its sponsor does (so one member alone cannot
//                fast-forward the others: they hold it pending, which does not count for (b)).
//
// Voters and "listed" are both read against the INSTALLED configuration: the voters are its active members that have
// not departed (a clean stop the cluster installed: docs/CLUSTER.md, "Clean stops"), and a
// voter may be missing from the set only when the set's change log removes it with an admin change record, which
// set-codec.ts / changes.ts check before a set is held.
//
// A member locks at most one digest per version and never unlocks (except to follow an installed digest; the lock
// is persisted across restarts), so two majorities of locks for different digests cannot form: no two members
// install different content under one version, whatever the network does. The active window only lets a dead
// member stop blocking.
import { PendingPhase } from '../../wire/cluster-msg'

export interface Advert { iv: number, idg: string, pv: number, pdg: string | null, phase: PendingPhase }

export interface PeerState {
  advert: Advert
  lastHeard: number
  /** Its last message was a Leave: not active from then on (the staleness fence still reads lastHeard). */
  left?: boolean
  /** Consecutive accepted messages advertising each (version, digest) key, in any role. */
  streak: Map<string, number>
}

export interface PendingRef {
  version: number
  digest: string
  locked: boolean
  /** Some other member advertises this (version, digest) locked. */
  lockedElsewhere?: boolean
}
export interface Candidate {
  version: number
  digest: string
  installed: boolean
  /** Advertised as locked by its sender. */
  locked?: boolean
}

export function setKey (version: number, digest: string): string { return `${version}:${digest}` }

export function advertKeys (a: Advert): string[] {
  const keys = [setKey(a.iv, a.idg)]
  if (a.pdg !== null) keys.push(setKey(a.pv, a.pdg))
  return keys
}

/** Streaks after one more accepted message carrying `a`: keys it repeats grow, the others end. */
export function nextStreak (prev: Map<string, number>, a: Advert): Map<string, number> {
  const out = new Map<string, number>()
  for (const k of advertKeys(a)) out.set(k, (prev.get(k) ?? 0) + 1)
  return out
}

/** Should a member holding `pending` (or nothing) move to candidate `c`? */
export function shouldSwitch (installedVersion: number, pending: PendingRef | null, c: Candidate): boolean {
  if (c.version <= installedVersion) return false
  if (pending === null || c.version > pending.version) return true
  if (c.version < pending.version || c.digest === pending.digest) return false
  if (c.installed) return true
  if (pending.locked) return false
  const rc = c.locked === true ? 1 : 0
  const rp = pending.lockedElsewhere === true ? 1 : 0
  return rc !== rp ? rc > rp : c.digest < pending.digest
}

/** Is candidate `c` a better fetch target than the one already wanted? */
export function betterTarget (c: Candidate, want: Candidate | null): boolean {
  if (want === null || c.version > want.version) return true
  if (c.version < want.version || c.digest === want.digest) return false
  if (c.installed !== want.installed) return c.installed
  if ((c.locked === true) !== (want.locked === true)) return c.locked === true
  return c.digest < want.digest
}

export interface AgreementInput {
  self: string
  now: number
  activeWindowMs: number
  /** Distinct ids of the counted members of the installed configuration (active, not departed; self included when it is one). */
  voters: string[]
  /** Ids listed in the pending set (the members of the pending version). */
  listed: Set<string>
  installedVersion: number
  pending: PendingRef
  peers: Map<string, PeerState>
}

export interface Agreement {
  conflict: boolean
  everyone: boolean
  supporters: string[]
  lockers: string[]
  installedBy: string[]
  canLock: boolean
  canInstall: boolean
}

export function majorityOf (n: number): number { return Math.floor(n / 2) + 1 }

export function agreement (i: AgreementInput): Agreement {
  const { version: v, digest: d } = i.pending
  const k = setKey(v, d)
  const selfVotes = i.voters.includes(i.self)
  const supporters = selfVotes ? [i.self] : []
  const lockers = selfVotes && i.pending.locked ? [i.self] : []
  const installedBy: string[] = []
  let conflict = false
  let everyone = true
  let everyoneInstalled = true
  for (const id of new Set(i.voters)) {
    if (id === i.self) continue
    const p = i.peers.get(id)
    const active = p !== undefined && p.left !== true && i.now - p.lastHeard <= i.activeWindowMs
    let supports = false
    if (p !== undefined) {
      const a = p.advert
      const installedK = a.iv === v && a.idg === d
      const pendingK = a.pdg !== null && a.pv === v && a.pdg === d
      if (active && ((a.iv === v && a.idg !== d) || (a.pdg !== null && a.pv === v && a.pdg !== d))) conflict = true
      if (installedK || (pendingK && a.phase === PendingPhase.Locked)) lockers.push(id)
      if (installedK) installedBy.push(id)
      supports = active && (installedK || pendingK) && (p.streak.get(k) ?? 0) >= 2
      if (supports) supporters.push(id)
    }
    if (active && i.listed.has(id) && !supports) everyone = false
    if (active && i.listed.has(id) && !(supports && p?.advert.iv === v && p.advert.idg === d)) everyoneInstalled = false
  }
  const majority = majorityOf(new Set(i.voters).size)
  const next = v === i.installedVersion + 1
  const canLock = next && !i.pending.locked && !conflict && everyone && supporters.length >= majority
  // Catch-up needs a majority of the installed voters; "every active listed member" only for a joiner's trust state
  // (version 0: itself and its sponsor), or one member alone could fast-forward a member whose other peers are down.
  const catchUp = installedBy.length > 0 && (installedBy.length >= majority || (i.installedVersion === 0 && everyoneInstalled))
  const canInstall = !conflict && everyone && ((next && i.pending.locked && lockers.length >= majority) || catchUp)
  return { conflict, everyone, supporters, lockers, installedBy, canLock, canInstall }
}
