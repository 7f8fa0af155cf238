// Admin changes on the cluster: the outcome events an admin is told, drafting version + 1 from the installed
// configuration (signed by its origin), and the succession rules every member checks on every set it receives against
// its INSTALLED configuration: one change-log entry per version (no jumps), a member list that changes only through
// change records naming the member and signed by the admin (its password-derived key, held by spctl), an admin list
// whose only edits are a key-less admin record gaining its signing key and an admin's password change (its new record,
// signed with the old password's key), one per version and named in the log, records
// never dropped, no removed key re-activated, no self-removal, a member's departure and return only by its own
// change, and the origin's signature over the content. docs/CLUSTER.md, "What one compromised member can do".
import { sha256 } from '../../crypto/cluster-auth'
import { adminPasswdInput, adminRecordInput, parseAdminKey } from '../../crypto/admin-key'
import { SIG_CTX_ADMIN_MEMBER_CHANGE, SIG_CTX_ADMIN_PASSWD, SIG_CTX_CHANGE_ORIGIN } from '../../crypto/contexts'
import { parsePasswordHash } from '../../crypto/password'
import type { Identity } from '../../crypto/identity'
import { sign, verify } from '../../crypto/sign'
import { PemError, type ErrorCode } from '../../wire/errors'
import { pack, unpack } from '../../wire/frame'
import type { ClusterLogEntry, ConfigState } from '../state'
import { MemberTable } from './members'

export interface ChangeEvent {
  changeId: string
  outcome: 'installed' | 'rebased' | 'failed'
  version: number
  digest?: string
  /** For 'rebased': the concurrent change that won the version this change had taken. */
  lostTo?: { version: number, digest: string }
  code?: ErrorCode
}

/**
 * The admin session a change was asked for in: the user, and `sign`, which returns that admin's signature (made by
 * spctl with the admin's own key, lib/crypto/admin-key.ts) over what adminRecordInput returns, or throws (a signature
 * made for another version: PEM_ERR_CHANGE_REBASED, spctl signs again); null when the request carries none.
 * `expires` (wall-clock ms): a change drafted after the session expired (it waited behind others) fails, PEM_ERR_AUTH.
 */
export interface AdminAuthority { user: string, expires: number, sign: ((message: Buffer) => Buffer) | null }

/**
 * An admin change. `admin` is the admin session that asked for it; only a change with one may add or remove a member
 * (changes by the member itself or by an enrolling host may not), and its log entry carries the admin's signature.
 */
export interface Change { changeId: string, mutate: (draft: ConfigState) => void, admin?: AdminAuthority }

/** Versions of change history kept in the configuration, so a proposer that skips versions still learns its outcome. */
export const CHANGE_LOG_LENGTH = 64

function bad (detail: string): PemError { return new PemError('PEM_ERR_BAD_SUCCESSION', detail) }
/** In checkSuccession's key chains: a key an upgrade gave, known only from the final record. */
const UPGRADED = 'upgraded'

/** What the origin signs: cluster id ‖ version ‖ SHA-256 of the configuration with its last log entry's `sig` left out. */
function originInput (clusterId: Buffer, state: ConfigState): Buffer {
  const log = state.clusterLog ?? []
  const last = log[log.length - 1]
  const { sig: _sig, ...unsigned } = last ?? {}
  const version = Buffer.alloc(8)
  version.writeBigUInt64BE(BigInt(state.version))
  return Buffer.concat([clusterId, version, sha256(pack({ ...state, clusterLog: [...log.slice(0, -1), unsigned] }))])
}

/** Sign `state` (whose last log entry is its own, without `sig`) as its origin: sets that entry's `sig`. */
export function signAsOrigin (clusterId: Buffer, state: ConfigState, origin: Identity): void {
  const log = state.clusterLog ?? []
  const last = log[log.length - 1]
  if (last?.version !== state.version || last.origin !== origin.id || last.sig !== undefined) throw new PemError('PEM_ERR_BAD_ARGUMENT', 'the last change log entry must be this origin\'s, unsigned')
  last.sig = sign(SIG_CTX_CHANGE_ORIGIN, originInput(clusterId, state), origin.signKey).toString('base64')
}

/**
 * Version + 1 of `base` with the change applied, its log entry and the origin's signature; the same succession rules
 * as a receiver applies. Throws a PemError (the change fails, nothing else happens).
 */
export function draftChange (base: { plaintext: Buffer, version: number, state: ConfigState }, members: MemberTable, origin: Identity, clusterId: Buffer, change: Change, wallMs: number): { state: ConfigState, plaintext: Buffer } {
  if (!Number.isSafeInteger(base.version + 1)) throw new PemError('PEM_ERR_BAD_CONFIG', `version ${base.version} is the last one`)
  if (change.admin !== undefined && change.admin.expires < wallMs) throw new PemError('PEM_ERR_AUTH', `the session of admin ${change.admin.user} expired before the change could be made: log in again`)
  const draft = unpack(base.plaintext) as ConfigState
  change.mutate(draft)
  draft.version = base.version + 1
  draft.changedBy = origin.id
  draft.changedAt = new Date(wallMs).toISOString()
  const entry: ClusterLogEntry = { version: draft.version, origin: origin.id, change: change.changeId }
  const after = MemberTable.of(draft)
  const { added, removed } = memberDelta(members, after)
  const { departed, returned } = countDelta(members, after)
  if (added.length + removed.length + departed.length + returned.length > 1) throw new PemError('PEM_ERR_BAD_CONFIG', 'a change may add, remove, depart or return at most one member per version')
  if (added.length + removed.length === 1) {
    const admin = change.admin
    if (admin === undefined) throw new PemError('PEM_ERR_BAD_CONFIG', 'only an admin change may add or remove a member')
    if (parseAdminKey(base.state.admins[admin.user]?.signKey) === null) throw new PemError('PEM_ERR_BAD_CONFIG', `admin ${admin.user} has no signing key, so it cannot change the member list: log in once with spctl to give it one (docs/CLUSTER.md)`)
    if (admin.sign === null) throw new PemError('PEM_ERR_AUTH', `a member-list change needs admin ${admin.user}'s signature (spctl member add/remove makes it)`)
    const member = added.length === 1 ? { op: 'add' as const, id: added[0] } : { op: 'remove' as const, id: removed[0] }
    entry.member = member
    entry.admin = admin.user
    entry.adminSig = admin.sign(adminRecordInput(clusterId, draft.version, member.op, member.id, origin.id)).toString('base64')
  }
  const { upgraded, passwd } = adminEdits(base.state.admins, draft.admins)
  if (upgraded.length + passwd.length > 1) throw new PemError('PEM_ERR_BAD_CONFIG', 'a change may edit at most one admin record')
  if (upgraded.length === 1) entry.adminUpgrade = upgraded[0]
  if (passwd.length === 1) {
    const user = passwd[0]
    const admin = change.admin
    if (admin?.user !== user) throw new PemError('PEM_ERR_BAD_CONFIG', `only admin ${user} may change its own password`)
    if (admin.sign === null) throw new PemError('PEM_ERR_AUTH', `a password change needs admin ${user}'s signature with the old password (spctl admin passwd makes it)`)
    const record = { hash: draft.admins[user].hash, signKey: draft.admins[user].signKey as string }
    entry.adminPasswd = { user, ...record, sig: admin.sign(adminPasswdInput(clusterId, draft.version, user, record, origin.id)).toString('base64') }
  }
  if (departed.length + returned.length === 1) {
    const id = departed[0] ?? returned[0]
    if (id !== origin.id) throw new PemError('PEM_ERR_BAD_CONFIG', 'only a member itself may record its departure or return')
    entry.member = { op: departed.length === 1 ? 'depart' : 'return', id }
  }
  draft.clusterLog = [...(draft.clusterLog ?? []), entry].slice(-CHANGE_LOG_LENGTH)
  signAsOrigin(clusterId, draft, origin)
  try {
    checkSuccession(base.state, members, draft, clusterId)
  } catch (err) {
    throw new PemError('PEM_ERR_BAD_CONFIG', (err as Error).message)
  }
  return { state: draft, plaintext: pack(draft) }
}

/**
 * The users whose admin record changed from `before` to `after`: `upgraded`, a record without a signing key gained
 * one (its password hash unchanged: the upgrade of a record made before admins had keys); `passwd`, a new password
 * (a new hash and a new signing key; a key-less record whose hash changed is in both). Throws PEM_ERR_BAD_SUCCESSION on
 * any other edit of the admin list: a user added or dropped, a field added, a key removed, replaced alone or malformed.
 */
export function adminEdits (before: ConfigState['admins'], after: ConfigState['admins']): { upgraded: string[], passwd: string[] } {
  const users = Object.keys(before)
  if (users.length !== Object.keys(after).length || !users.every(u => Object.prototype.hasOwnProperty.call(after, u))) throw bad('the admin list was changed (users added or removed)')
  const upgraded: string[] = []
  const passwd: string[] = []
  for (const u of users) {
    const was = before[u]
    const is = after[u]
    if (pack(was).equals(pack(is))) continue
    const { hash, signKey, ...rest } = is
    if (Object.keys(rest).length > 0 || parseAdminKey(signKey) === null || (hash !== was.hash && !isPasswordHash(hash))) throw bad(`the admin record of ${u} was changed (only a missing signing key may be added, or a new password set)`)
    if (was.signKey === undefined) upgraded.push(u)
    if (hash !== was.hash) passwd.push(u)
    else if (was.signKey !== undefined) throw bad(`the signing key of admin ${u} was replaced without a new password`)
  }
  return { upgraded, passwd }
}

function isPasswordHash (v: unknown): boolean {
  try { parsePasswordHash(v as string); return typeof v === 'string' } catch { return false }
}

/** Active ids the second table has and the first lacks (added), and the reverse (removed). */
function memberDelta (before: MemberTable, after: MemberTable): { added: string[], removed: string[] } {
  const was = new Set(before.activeIds())
  const is = new Set(after.activeIds())
  return { added: [...is].filter(x => !was.has(x)), removed: [...was].filter(x => !is.has(x)) }
}

/** Members active in both tables that the second leaves out of the count (departed) or counts again (returned). */
function countDelta (before: MemberTable, after: MemberTable): { departed: string[], returned: string[] } {
  const departed: string[] = []
  const returned: string[] = []
  for (const m of before.active()) {
    const next = after.get(m.id)
    if (next === undefined || next.removed || next.departed === m.departed) continue
    if (next.departed) departed.push(m.id); else returned.push(m.id)
  }
  return { departed, returned }
}

/**
 * Does `next` follow from the installed configuration? 'verified', or 'beyond-log' when it is more versions ahead
 * than the change log covers (the caller then needs other evidence: a majority of voters having installed it).
 * Throws PEM_ERR_BAD_SUCCESSION otherwise. A joiner's trust state (version 0) follows its sponsor unchecked.
 */
export function checkSuccession (installed: ConfigState, members: MemberTable, next: ConfigState, clusterId: Buffer): 'verified' | 'beyond-log' {
  const steps = next.version - installed.version
  if (installed.version === 0 || steps < 1) return 'verified'
  const log = next.clusterLog ?? []
  const last = log[log.length - 1]
  if (last?.version !== next.version || last.origin !== next.changedBy) throw bad(`version ${next.version} has no change log entry of its origin`)
  const originKey = (members.get(last.origin) ?? (steps > 1 ? MemberTable.of(next).get(last.origin) : undefined))
  if (originKey === undefined || members.get(last.origin)?.removed === true) throw bad(`origin ${last.origin.slice(0, 16)} is not a member`)
  if (typeof last.sig !== 'string' || !verify(SIG_CTX_CHANGE_ORIGIN, originInput(clusterId, next), Buffer.from(last.sig, 'base64'), originKey.publicKey)) {
    throw bad(`origin signature of version ${next.version} does not hold`)
  }
  if (steps > CHANGE_LOG_LENGTH) return 'beyond-log'
  const covered = log.filter(e => e.version > installed.version)
  if (covered.length !== steps || covered.some((e, i) => e.version !== installed.version + 1 + i)) {
    throw bad(`version ${next.version} is ${steps} ahead of the installed ${installed.version} but its change log accounts for ${covered.length}`)
  }
  const after = MemberTable.of(next)
  for (const m of members.all()) {
    const kept = after.get(m.id)
    if (kept === undefined) throw bad(`member ${m.id.slice(0, 16)} was dropped from the member list (records are kept)`)
    if (m.removed && !kept.removed) throw bad(`member ${m.id.slice(0, 16)} was removed; a removed key cannot rejoin`)
  }
  // The admins' signing keys are what authorises member-list changes: the only edits of the list are a key-less record
  // gaining its key and a password change, each by a log entry naming it (docs/CLUSTER.md, "The admin's signature and
  // its limit"). A password change is signed with the key the record had before it; a key an upgrade gave inside this
  // span is known from the final record only, and a password change right behind it is taken on the origin's word,
  // as the upgrade itself is.
  const edits = adminEdits(installed.admins, next.admins)
  for (const u of edits.upgraded) if (!covered.some(e => e.adminUpgrade === u)) throw bad(`admin ${u} was given a signing key without a change record naming it`)
  /** Each admin's keys through the span, in order: [from version, encoded key, or UPGRADED, or undefined for none]. */
  const keys = new Map<string, Array<[number, string | undefined]>>()
  for (const u of Object.keys(installed.admins)) keys.set(u, [[installed.version, installed.admins[u].signKey]])
  for (const e of covered) {
    if (typeof e.adminUpgrade === 'string') keys.get(e.adminUpgrade)?.push([e.version, UPGRADED])
    const p = e.adminPasswd
    if (p === undefined) continue
    const chain = Object.prototype.hasOwnProperty.call(installed.admins, p.user) ? keys.get(p.user) : undefined
    const prior = chain?.[chain.length - 1][1]
    const priorKey = prior === UPGRADED ? null : parseAdminKey(prior)
    const held = prior === UPGRADED || (priorKey !== null && verify(SIG_CTX_ADMIN_PASSWD, adminPasswdInput(clusterId, e.version, p.user, p, e.origin), Buffer.from(String(p.sig), 'base64'), priorKey.publicKey))
    if (chain === undefined || !held) throw bad(`the password change of admin ${p.user} at version ${e.version} is not signed with its previous key`)
    chain.push([e.version, p.signKey])
  }
  for (const u of edits.passwd) {
    const last = covered.filter(e => e.adminPasswd?.user === u).at(-1)?.adminPasswd
    if (last === undefined || last.hash !== next.admins[u].hash || last.signKey !== next.admins[u].signKey) throw bad(`admin ${u} has a new password without a change record that sets it`)
  }
  /** The admin's key as of version `version`: the last one the span gave it before that version. */
  const keyOf = (user: string, version: number): ReturnType<typeof parseAdminKey> => {
    const chain = Object.prototype.hasOwnProperty.call(installed.admins, user) ? keys.get(user) ?? [] : []
    const at = chain.filter(([v]) => v < version).at(-1)?.[1]
    return parseAdminKey(at === UPGRADED ? next.admins[user].signKey : at)
  }
  const { added, removed } = memberDelta(members, after)
  const authorised = (op: 'add' | 'remove', id: string): boolean => covered.some(e => {
    if (e.member?.op !== op || e.member.id !== id || typeof e.admin !== 'string' || typeof e.adminSig !== 'string' || (op === 'remove' && e.origin === id)) return false
    const key = keyOf(e.admin, e.version)
    return key !== null && verify(SIG_CTX_ADMIN_MEMBER_CHANGE, adminRecordInput(clusterId, e.version, op, id, e.origin), Buffer.from(e.adminSig, 'base64'), key.publicKey)
  })
  for (const id of added) if (!authorised('add', id)) throw bad(`member ${id.slice(0, 16)} added without a change record signed by an admin`)
  for (const id of removed) if (!authorised('remove', id)) throw bad(`member ${id.slice(0, 16)} removed without a change record signed by an admin (or by itself)`)
  // Departure and return: only the member's own change (its origin signature), one member per entry; a new member is
  // counted from the start, and the last counted member cannot depart (nobody would be left to agree on anything).
  for (const id of added) if (after.get(id)?.departed === true) throw bad(`member ${id.slice(0, 16)} added as departed`)
  const { departed, returned } = countDelta(members, after)
  const own = (op: 'depart' | 'return', id: string): boolean => covered.some(e => e.member?.op === op && e.member.id === id && e.origin === id)
  for (const id of departed) if (!own('depart', id)) throw bad(`member ${id.slice(0, 16)} marked departed without a change of its own`)
  for (const id of returned) if (!own('return', id)) throw bad(`member ${id.slice(0, 16)} counted again without a change of its own`)
  if (departed.length > 0 && after.voterIds().length === 0) throw bad('the last counted member cannot depart')
  return 'verified'
}

/** Did the installed configuration take this member's change at the version it proposed it for? */
export function changeLanded (installed: ConfigState, version: number, self: string, changeId: string): boolean {
  return installed.clusterLog?.some(e => e.version === version && e.origin === self && e.change === changeId) === true
}
