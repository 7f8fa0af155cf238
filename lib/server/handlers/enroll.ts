// Enroll handler: a host with a one-time token (from `spctl host add`) has its key recorded cluster-wide; the token is
// spent in the same change, so a token presented to two members at once enrolls one host only. Its expiry is checked
// again inside that change (it may have waited behind others), and the change drops every expired token.
import { encodePublicKey } from '../../crypto/identity'
import { tokenHash } from '../../crypto/password'
import { PemError } from '../../wire/errors'
import type { EnrollBody, EnrollReply } from '../../wire/packets'
import type { Member } from '../member'
import type { ConfigState } from '../state'
import { parseToken } from '../../wire/token'

export async function handleEnroll (m: Member, body: EnrollBody, peer: { id: string, key: Buffer, remoteAddress: string }): Promise<EnrollReply> {
  const { secret } = parseToken(body.token)
  const hash = tokenHash(secret)
  const record = m.store.state.tokens[hash]
  if (record === undefined || Date.parse(record.expires) < Date.now()) {
    m.audit.write({ kind: 'security', event: 'enroll_refused', host: peer.id, ip: peer.remoteAddress })
    throw new PemError('PEM_ERR_BAD_TOKEN')
  }
  let spent = 'enrolled' as 'enrolled' | 'expired'
  await m.change(`host:${peer.id.slice(0, 16)}`, 'enroll', draft => {
    spent = spendToken(draft, hash, Date.now())
    if (spent === 'enrolled') draft.hosts[peer.id] = { id: peer.id, name: record.name, key: encodePublicKey(peer.key), enrolled: new Date().toISOString() }
  })
  if (spent === 'expired') {
    m.audit.write({ kind: 'security', event: 'enroll_refused', host: peer.id, ip: peer.remoteAddress, reason: 'token expired while the enrollment waited' })
    throw new PemError('PEM_ERR_BAD_TOKEN', 'the token expired before the enrollment was agreed')
  }
  m.counters.enrolled++
  m.audit.write({ kind: 'admin', event: 'host_enrolled', host: peer.id, name: record.name, ip: peer.remoteAddress })
  return { host: peer.id, servers: m.servers(peer.id), name: record.name }
}

/** Drop every token expired at `nowMs` (a token's expiry is an ISO time, the same on every member). */
export function dropExpiredTokens (draft: ConfigState, nowMs: number): void {
  for (const [h, t] of Object.entries(draft.tokens)) if (!(Date.parse(t.expires) >= nowMs)) delete draft.tokens[h]
}

/**
 * Inside the enrollment change: drop expired tokens, then spend this one. 'expired': it expired while the change
 * waited (the change then only drops tokens: the host is not added). A token already spent throws PEM_ERR_BAD_TOKEN.
 */
export function spendToken (draft: ConfigState, hash: string, nowMs: number): 'enrolled' | 'expired' {
  const present = draft.tokens[hash] !== undefined
  dropExpiredTokens(draft, nowMs)
  if (draft.tokens[hash] === undefined) {
    if (present) return 'expired'
    throw new PemError('PEM_ERR_BAD_TOKEN', 'the token was spent by a concurrent enrollment')
  }
  delete draft.tokens[hash]
  return 'enrolled'
}
