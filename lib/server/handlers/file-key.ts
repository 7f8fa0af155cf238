// FileKey handler (host placement, issue 18): checks the grant and the file header like the blocks handlers, then
// releases the file's key sealed to the requesting host's enrolled key, for the decision's remaining ttl; audited.
import { parsePublicKey } from '../../crypto/identity'
import { PemError } from '../../wire/errors'
import type { Action, FileKeyBody, FileKeyReply, HostContext } from '../../wire/packets'
import type { Member } from '../member'
import { begin } from './blocks'

/** Decisions for these actions may have their file key released; any other (getattr, list, delete...) may not. */
const RELEASES_KEY: ReadonlySet<Action> = new Set(['read', 'write', 'create', 'truncate'])

export function handleFileKey (m: Member, body: FileKeyBody, ctx: HostContext): FileKeyReply {
  const host = m.store.state.hosts[ctx.host]
  if (host === undefined) throw new PemError('PEM_ERR_NOT_ENROLLED', 'this host is not enrolled (or was removed)')
  if (host.keysRevoked === true) throw new PemError('PEM_ERR_KEY_NOT_GRANTED', 'key releases to this host are revoked (spctl host revoke)')
  const g = m.data.grants.check(body.grant, ctx.host, null, false)
  if (g.placement !== 'host') throw new PemError('PEM_ERR_KEY_NOT_GRANTED', 'the decision places crypto on the appliance: use BlocksSeal/BlocksOpen')
  if (!RELEASES_KEY.has(g.action)) throw new PemError('PEM_ERR_KEY_NOT_GRANTED', `a grant for '${g.action}' releases no file key`)
  const h = begin(m.data, body, ctx, false) // checks the grant again, then the header, and binds the grant to its file
  const sealed = m.data.sealedFileKey(h.keyName, h.keyVersion, h.fileId, parsePublicKey(host.key))
  const ttlMs = m.data.grants.remainingMs(g)
  m.audit.write({ kind: 'security', event: 'key_release', host: ctx.host, ip: ctx.ip, key: h.keyName, version: h.keyVersion, file: h.fileId.toString('hex'), action: g.action, ttlMs })
  return { sealed, ttlMs }
}
