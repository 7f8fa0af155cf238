// Enroll handler: a host with a one-time token (from `spctl host add`) has its key recorded cluster-wide; the token is
// spent in the same change, so a token presented to two members at once enrolls one host only.
import { encodePublicKey } from '../../crypto/identity'
import { tokenHash } from '../../crypto/password'
import { PemError } from '../../wire/errors'
import type { EnrollBody, EnrollReply } from '../../wire/packets'
import type { Member } from '../member'
import { parseToken } from '../../wire/token'

export async function handleEnroll (m: Member, body: EnrollBody, peer: { id: string, key: Buffer, remoteAddress: string }): Promise<EnrollReply> {
  const { secret } = parseToken(body.token)
  const hash = tokenHash(secret)
  const record = m.store.state.tokens[hash]
  if (record === undefined || Date.parse(record.expires) < Date.now()) {
    m.audit.write({ kind: 'security', event: 'enroll_refused', host: peer.id, ip: peer.remoteAddress })
    throw new PemError('PEM_ERR_BAD_TOKEN')
  }
  await m.change(`host:${peer.id.slice(0, 16)}`, 'enroll', draft => {
    if (draft.tokens[hash] === undefined) throw new PemError('PEM_ERR_BAD_TOKEN', 'the token was spent by a concurrent enrollment')
    delete draft.tokens[hash]
    draft.hosts[peer.id] = { id: peer.id, name: record.name, key: encodePublicKey(peer.key), enrolled: new Date().toISOString() }
  })
  m.counters.enrolled++
  m.audit.write({ kind: 'admin', event: 'host_enrolled', host: peer.id, name: record.name, ip: peer.remoteAddress })
  return { host: peer.id, servers: m.servers(peer.id), name: record.name }
}
