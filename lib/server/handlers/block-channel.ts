// BlockChannel handler (issue 17, appliance placement through spd's native block service): checks the grant and the
// file header like the blocks handlers, installs the grant natively for this host and file (the key stays in this
// process), and hands out a one-use token for a block channel keyed from this TLS channel's exporter.
import type { Channel } from '../../channel/channel'
import { PemError } from '../../wire/errors'
import { FILE_CIPHERS } from '../../wire/file-format'
import type { Action, BlockChannelReply, FileKeyBody, HostContext } from '../../wire/packets'
import { GRANT_SLACK_MS } from '../grants'
import type { Member } from '../member'
import { begin } from './blocks'

/** Decisions whose grants reach the block service, and those of them that may seal. */
const DATA_ACTIONS: ReadonlySet<Action> = new Set(['read', 'write', 'create', 'truncate'])
const SEALS: ReadonlySet<Action> = new Set(['write', 'create', 'truncate'])

export function handleBlockChannel (m: Member, body: FileKeyBody, ctx: HostContext, ch: Channel): BlockChannelReply {
  if (!m.blocks.running) throw new PemError('PEM_ERR_BAD_OPCODE', 'this server runs no native block service')
  const g = m.data.grants.check(body.grant, ctx.host, null, false)
  if (!DATA_ACTIONS.has(g.action)) throw new PemError('PEM_ERR_KEY_NOT_GRANTED', `a grant for '${g.action}' opens no blocks`)
  const h = begin(m.data, body, ctx, false) // checks the grant again, then the header, and binds the grant to its file
  const key = m.data.fileKey(h.keyName, h.keyVersion, h.fileId)
  const ttlMs = m.data.grants.remainingMs(g)
  const seal = SEALS.has(g.action)
  const handle = m.blocks.grant(ctx.host, h.fileId, h.keyVersion, FILE_CIPHERS[h.cipher], key, seal, ttlMs + GRANT_SLACK_MS)
  return { port: m.blocks.port, token: m.blocks.token(ch, ctx.host), handle, ttlMs, seal }
}
