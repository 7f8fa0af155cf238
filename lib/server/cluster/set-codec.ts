// Encrypted policy sets for one member: build (source side, a fresh data key per call) and open (member side:
// parse, anti-rollback, known source, signature, own row, unwrap, decrypt, digest, and the succession rules of
// changes.ts against the installed configuration: origin signature, one log entry per version, member list) with a
// coded refusal each.
// Format: lib/wire/policy-set.ts (FORMAT.md §6); crypto: lib/crypto/cluster-auth.ts.
import { openPolicySetRow, sealPolicySet, sha256, verifyPolicySet } from '../../crypto/cluster-auth'
import type { Identity } from '../../crypto/identity'
import { PemError } from '../../wire/errors'
import { pack, unpack } from '../../wire/frame'
import { parsePolicySet } from '../../wire/policy-set'
import type { ConfigState } from '../state'
import { checkSuccession } from './changes'
import { MemberTable } from './members'

export interface OpenedSet {
  version: number
  digest: Buffer
  origin: string
  source: string
  plaintext: Buffer
  state: ConfigState
  /** More versions ahead of the installed one than the change log covers: only the origin's signature was checked. */
  beyondLog: boolean
}

/** Canonical plaintext of a configuration and its content digest (what heartbeats advertise). */
export function contentOf (state: ConfigState): { plaintext: Buffer, digest: Buffer } {
  const plaintext = pack(state)
  return { plaintext, digest: sha256(plaintext) }
}

/** Seal `plaintext` (a packed ConfigState) to every active member of that state, the source first. */
export function buildSet (clusterId: Buffer, source: Identity, plaintext: Buffer, origin: string): Buffer {
  const state = unpack(plaintext) as ConfigState
  const members = MemberTable.of(state).active()
  const self = members.find(m => m.id === source.id)
  if (self === undefined) throw new PemError('PEM_ERR_BAD_ARGUMENT', 'the source is not an active member of the configuration it seals')
  const recipients = [self, ...members.filter(m => m.id !== source.id)].map(m => ({ digest: m.digest, publicKey: m.publicKey }))
  return sealPolicySet(clusterId, source, state.version, Buffer.from(origin, 'hex'), plaintext, recipients)
}

export interface OpenContext {
  clusterId: Buffer
  identity: Identity
  /** The receiver's installed members: the source must be one of them and not removed. */
  members: MemberTable
  /** The receiver's installed configuration: the set must follow from it (changes.ts checkSuccession). */
  installed: ConfigState
}

export function openSet (bytes: Buffer, ctx: OpenContext): OpenedSet {
  const raw = parsePolicySet(bytes)
  const source = raw.index[0].toString('hex')
  const member = ctx.members.get(source)
  if (member === undefined) throw new PemError('PEM_ERR_UNKNOWN_MEMBER', `set source ${source.slice(0, 16)} is not a member`)
  if (member.removed) throw new PemError('PEM_ERR_REMOVED_MEMBER', `set source ${source.slice(0, 16)} was removed`)
  if (!verifyPolicySet(ctx.clusterId, raw, member.publicKey)) throw new PemError('PEM_ERR_BAD_SIGNATURE', 'policy set signature check failed')
  if (raw.version < ctx.installed.version) throw new PemError('PEM_ERR_ROLLBACK', `set version ${raw.version} is below the installed ${ctx.installed.version}`)
  const ids = raw.index.map(d => d.toString('hex'))
  if (new Set(ids).size !== ids.length) throw new PemError('PEM_ERR_BAD_POLICY_SET', 'index lists a key twice')
  const row = ids.indexOf(ctx.identity.id)
  if (row < 0) throw new PemError('PEM_ERR_NOT_LISTED', 'this member is not listed in the policy set')
  const plaintext = openPolicySetRow(ctx.identity, raw, row)
  if (plaintext === false) throw new PemError('PEM_ERR_POLICY_SET_AUTH', 'wrapped key or sealed configuration failed authentication')
  let state: ConfigState
  try { state = unpack(plaintext) as ConfigState } catch (err) { throw new PemError('PEM_ERR_BAD_POLICY_SET', `configuration does not decode: ${(err as Error).message}`) }
  if (state === null || typeof state !== 'object' || state.version !== raw.version || typeof state.members !== 'object') {
    throw new PemError('PEM_ERR_BAD_POLICY_SET', 'configuration does not match the set header')
  }
  const origin = raw.origin.toString('hex')
  if (ctx.installed.version > 0 && origin !== state.changedBy) throw new PemError('PEM_ERR_BAD_SUCCESSION', 'the set header names another origin than its configuration')
  const beyondLog = checkSuccession(ctx.installed, ctx.members, state, ctx.clusterId) === 'beyond-log'
  return { version: raw.version, digest: Buffer.from(raw.contentDigest), origin, source, plaintext: Buffer.from(plaintext), state, beyondLog }
}
