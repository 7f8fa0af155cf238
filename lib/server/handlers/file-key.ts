// FileKey handler (host placement, issue 18): checks the grant and the file header like the blocks handlers, then
// releases the file's key sealed to the requesting host's enrolled key, for the decision's remaining ttl; audited.
// A FileHeader request with `keys` releases the keys of the new files it makes the same way (handleFileHeader).
import { parsePublicKey } from '../../crypto/identity'
import { PemError } from '../../wire/errors'
import { decodeHeader } from '../../wire/file-format'
import type { Action, FileHeaderBody, FileHeaderReply, FileKeyBody, FileKeyReply, HostContext } from '../../wire/packets'
import type { Grant } from '../grants'
import type { Member } from '../member'
import { begin, newHeaders } from './blocks'

/** Decisions for these actions may have their file key released; any other (getattr, list, delete...) may not. */
const RELEASES_KEY: ReadonlySet<Action> = new Set(['read', 'write', 'create', 'truncate'])

/** The enrolled key of the requesting host, and the grant if it may release file keys. */
function releasing (m: Member, grant: string, ctx: HostContext, seal: boolean): { hostKey: Buffer, g: Grant } {
  const host = m.store.state.hosts[ctx.host]
  if (host === undefined) throw new PemError('PEM_ERR_NOT_ENROLLED', 'this host is not enrolled (or was removed)')
  if (host.keysRevoked === true) throw new PemError('PEM_ERR_KEY_NOT_GRANTED', 'key releases to this host are revoked (spctl host revoke)')
  const g = m.data.grants.check(grant, ctx.host, null, seal)
  if (g.placement !== 'host') throw new PemError('PEM_ERR_KEY_NOT_GRANTED', 'the decision places crypto on the appliance: use BlocksSeal/BlocksOpen')
  if (!RELEASES_KEY.has(g.action)) throw new PemError('PEM_ERR_KEY_NOT_GRANTED', `a grant for '${g.action}' releases no file key`)
  return { hostKey: parsePublicKey(host.key), g }
}

/** One file's key sealed to the host, audited. */
function release (m: Member, hostKey: Buffer, g: Grant, ctx: HostContext, keyName: string, keyVersion: number, fileId: Buffer, ttlMs: number): Buffer {
  const sealed = m.data.sealedFileKey(keyName, keyVersion, fileId, m.identity, hostKey)
  m.audit.write({ kind: 'security', event: 'key_release', host: ctx.host, ip: ctx.ip, key: keyName, version: keyVersion, file: fileId.toString('hex'), action: g.action, ttlMs })
  return sealed
}

export function handleFileKey (m: Member, body: FileKeyBody, ctx: HostContext): FileKeyReply {
  const { hostKey, g } = releasing(m, body.grant, ctx, false)
  const h = begin(m.data, body, ctx, false) // checks the grant again, then the header, and binds the grant to its file
  const ttlMs = m.data.grants.remainingMs(g)
  return { sealed: release(m, hostKey, g, ctx, h.keyName, h.keyVersion, h.fileId, ttlMs), ttlMs }
}

/** FileHeader: new headers; with `keys`, each new file's key sealed to the host (a host-placement create or write). */
export function handleFileHeader (m: Member, body: FileHeaderBody, ctx: HostContext): FileHeaderReply {
  if (body.keys !== true) return newHeaders(m.data, body, ctx)
  const { hostKey, g } = releasing(m, body.grant, ctx, true)
  const reply = newHeaders(m.data, body, ctx)
  const ttlMs = m.data.grants.remainingMs(g)
  reply.sealed = [reply.header, ...(reply.more ?? [])].map(bytes => {
    const h = decodeHeader(bytes)
    return release(m, hostKey, g, ctx, h.keyName, h.keyVersion, h.fileId, ttlMs)
  })
  reply.ttlMs = ttlMs
  return reply
}
