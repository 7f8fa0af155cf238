// Enroll handler: a host with a one-time token (from `spctl host add`) has its key recorded; the token is spent.
import { encodePublicKey } from '../../crypto/identity'
import { tokenHash } from '../../crypto/password'
import { PemError } from '../../wire/errors'
import type { EnrollBody, EnrollReply } from '../../wire/packets'
import type { Member } from '../member'
import { parseToken } from '../../wire/token'

export function handleEnroll (m: Member, body: EnrollBody, peer: { id: string, key: Buffer, remoteAddress: string }): EnrollReply {
  const { secret } = parseToken(body.token)
  const hash = tokenHash(secret)
  const record = m.store.state.tokens[hash]
  if (record === undefined || Date.parse(record.expires) < Date.now()) {
    m.audit.write({ kind: 'security', event: 'enroll_refused', host: peer.id, ip: peer.remoteAddress })
    throw new PemError('PEM_ERR_BAD_TOKEN')
  }
  m.store.commit(`host:${peer.id.slice(0, 16)}`, draft => {
    delete draft.tokens[hash]
    draft.hosts[peer.id] = { id: peer.id, name: record.name, key: encodePublicKey(peer.key), enrolled: new Date().toISOString() }
  })
  m.counters.enrolled++
  m.audit.write({ kind: 'admin', event: 'host_enrolled', host: peer.id, name: record.name, ip: peer.remoteAddress })
  return { host: peer.id, servers: m.servers() }
}
