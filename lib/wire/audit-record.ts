// The audit record format (lib/wire/FORMAT.md §7): version, the first prev, the line hash, the bytes a checkpoint
// signs, and the decision record a replay reads. Shared by the writer (lib/server/audit.ts), the verifier
// (lib/server/audit-verify.ts) and decision replay (lib/policy/simulate.ts).
import crypto from 'node:crypto'
import { type AccessAttrs, type Action, type HostContext, isAction } from './packets'

/** Version of the record format, named by every `start` record. */
export const AUDIT_FORMAT = 1
/** `prev` of the first record ever: base64url of 32 zero bytes. */
export const GENESIS_HASH = 'A'.repeat(43)
/** base64url SHA-256 of one line's exact bytes, without its newline. */
export function lineHash (line: string | Buffer): string {
  return crypto.hash('sha256', line, 'base64url')
}

/** The bytes a checkpoint signs: member id (32 bytes) || seq (u64 big-endian) || SHA-256 of the line before it. */
export function checkpointMessage (memberId: string, seq: number, prev: string): Buffer {
  const out = Buffer.alloc(32 + 8 + 32)
  out.write(memberId, 0, 32, 'hex')
  out.writeBigUInt64BE(BigInt(seq), 32)
  Buffer.from(prev, 'base64url').copy(out, 40)
  return out
}

/**
 * A `decision` record's own fields: what was asked (host, attributes, guard point, path, action), what was decided
 * (effect, rule, key) and under which configuration version (`pv`). Records written before the attributes were
 * recorded in full lack `gids`, `user`, `groups`, `domain`, `sid`, `exeHash` and `auth` (FORMAT.md §7).
 */
export type DecisionRecord = { // a type alias, so that it is an AuditEvent (lib/server/audit.ts) as it stands
  kind: 'decision'
  host: string
  ip: string
  uid: number
  gids?: number[]
  user?: string
  groups?: string[]
  domain?: string
  pid: number
  sid?: number
  exe: string
  exeHash?: string
  auth?: number
  guard: string
  path: string
  action: Action
  effect: 'permit' | 'deny'
  rule: string | null
  key: string | null
  pv: number
  audit: string[]
  /** Chain fields of the line the record was read from (absent on a record not written yet). */
  seq?: number
  ts?: string
}

/** The record of one decision, every attribute a replay needs to decide it again (lib/policy/simulate.ts). */
export function decisionRecord (guard: string, path: string, action: Action, a: AccessAttrs, ctx: HostContext,
  d: { effect: 'permit' | 'deny', rule: string | null, key: string | null, audit: string[] }, pv: number): DecisionRecord {
  const r: DecisionRecord = {
    kind: 'decision', host: ctx.host, ip: ctx.ip, uid: a.uid, gids: a.gids, pid: a.pid, sid: a.sid, exe: a.exe, exeHash: a.exeHash,
    auth: a.auth, guard, path, action, effect: d.effect, rule: d.rule, key: d.key, pv, audit: d.audit
  }
  if (a.user !== undefined) r.user = a.user
  if (a.groups !== undefined) r.groups = a.groups
  if (a.domain !== undefined) r.domain = a.domain
  return r
}

/** True when the record carries every attribute a decision can test (see DecisionRecord). */
export function recordsAllAttributes (r: DecisionRecord): boolean {
  return Array.isArray(r.gids) && typeof r.sid === 'number' && typeof r.exeHash === 'string' && typeof r.auth === 'number'
}

/**
 * A parsed audit line as a decision record, or null when it is not one or a field a replay needs is missing or of
 * the wrong type. Attributes the record lacks read as none (no groups, no executable hash, authentication level 0).
 */
export function asDecisionRecord (v: unknown): DecisionRecord | null {
  if (typeof v !== 'object' || v === null) return null
  const r = v as Partial<DecisionRecord>
  if (r.kind !== 'decision' || typeof r.guard !== 'string' || typeof r.path !== 'string' || !isAction(r.action)) return null
  if (typeof r.uid !== 'number' || typeof r.exe !== 'string' || typeof r.host !== 'string' || typeof r.ip !== 'string' || typeof r.pv !== 'number') return null
  if ((r.effect !== 'permit' && r.effect !== 'deny') || (r.rule !== null && typeof r.rule !== 'string')) return null
  if (r.gids !== undefined && !(Array.isArray(r.gids) && r.gids.every(g => typeof g === 'number'))) return null
  if (r.groups !== undefined && !(Array.isArray(r.groups) && r.groups.every(g => typeof g === 'string'))) return null
  return r as DecisionRecord
}

/** What a replay decides again: the request as the record holds it. */
export function recordedAttrs (r: DecisionRecord): AccessAttrs {
  const a: AccessAttrs = { uid: r.uid, gids: r.gids ?? [], pid: r.pid ?? 0, sid: r.sid ?? 0, exe: r.exe, exeHash: r.exeHash ?? '', auth: r.auth ?? 0 }
  if (typeof r.user === 'string') a.user = r.user
  if (r.groups !== undefined) a.groups = r.groups
  if (typeof r.domain === 'string') a.domain = r.domain
  return a
}
