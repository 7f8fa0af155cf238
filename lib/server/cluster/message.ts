// Cluster messages for one member: build and sign heartbeats, set fetches and list fetches; accept a received message
// only from an installed member, with a valid signature over the received bytes and a fresh sequence number (coded
// refusals).
// Format: lib/wire/cluster-msg.ts (FORMAT.md §5). Cheap checks (size, sender lookup, checksum) run before verify.
import { signClusterMsg, verifyClusterMsg } from '../../crypto/cluster-auth'
import type { Identity } from '../../crypto/identity'
import {
  checkChecksum, ClusterMsgType, decodeHeartbeatBody, decodeListFetchBody, decodeSetFetchBody, encodeHeartbeatBody,
  encodeListFetchBody, encodeSetFetchBody, encodeUnsigned, splitClusterMsg, type HeartbeatBody, type ListFetchBody,
  type SetFetchBody
} from '../../wire/cluster-msg'
import { PemError } from '../../wire/errors'
import type { MemberTable } from './members'
import type { ReplayGuard, Seq, SequenceSource } from './sequence'

export type ClusterMessage =
  | { type: typeof ClusterMsgType.Heartbeat, sender: string, seq: Seq, body: HeartbeatBody }
  | { type: typeof ClusterMsgType.SetFetch, sender: string, seq: Seq, body: SetFetchBody }
  | { type: typeof ClusterMsgType.ListFetch, sender: string, seq: Seq, body: ListFetchBody }

export interface Signer { clusterId: Buffer, identity: Identity, seq: SequenceSource }

function signed (s: Signer, type: ClusterMsgType, body: Buffer): Buffer {
  const { epoch, counter } = s.seq.next()
  return signClusterMsg(s.clusterId, encodeUnsigned(type, Buffer.from(s.identity.id, 'hex'), epoch, counter, body), s.identity.signKey)
}

export function buildHeartbeat (s: Signer, body: HeartbeatBody): Buffer { return signed(s, ClusterMsgType.Heartbeat, encodeHeartbeatBody(body)) }
export function buildSetFetch (s: Signer, body: SetFetchBody): Buffer { return signed(s, ClusterMsgType.SetFetch, encodeSetFetchBody(body)) }
export function buildListFetch (s: Signer, body: ListFetchBody): Buffer { return signed(s, ClusterMsgType.ListFetch, encodeListFetchBody(body)) }

export interface AcceptContext {
  clusterId: Buffer
  members: MemberTable
  guard: ReplayGuard
  /**
   * Optional per-sender memo of the last heartbeat body accepted: a verified body byte-identical to it (the steady
   * state) is not decoded again. Decoding is a pure function of the bytes, so the result is the same; the caller
   * must treat the returned body as read-only.
   */
  bodies?: Map<string, { bytes: Buffer, body: HeartbeatBody }>
}

function heartbeatBodyOf (sender: string, bytes: Buffer, memo: AcceptContext['bodies']): HeartbeatBody {
  const prev = memo?.get(sender)
  if (prev !== undefined && prev.bytes.equals(bytes)) return prev.body
  const body = decodeHeartbeatBody(bytes)
  memo?.set(sender, { bytes: Buffer.from(bytes), body })
  return body
}

/** Throws a PemError with the refusal's code; on success the sequence number is consumed. */
export function acceptMessage (bytes: Buffer, ctx: AcceptContext): ClusterMessage {
  const raw = splitClusterMsg(bytes)
  const sender = raw.header.sender.toString('hex')
  const member = ctx.members.get(sender)
  if (member === undefined) throw new PemError('PEM_ERR_UNKNOWN_MEMBER', `sender ${sender.slice(0, 16)} is not a member`)
  if (member.removed) throw new PemError('PEM_ERR_REMOVED_MEMBER', `sender ${sender.slice(0, 16)} was removed`)
  checkChecksum(raw)
  const seq = { epoch: raw.header.epoch, counter: raw.header.counter }
  const fresh = ctx.guard.check(sender, seq)
  if (fresh !== 'fresh') throw new PemError('PEM_ERR_REPLAY', `${fresh} sequence ${seq.epoch}.${seq.counter} from ${sender.slice(0, 16)}`)
  if (!verifyClusterMsg(ctx.clusterId, raw, member.publicKey)) throw new PemError('PEM_ERR_BAD_SIGNATURE', `bad signature from ${sender.slice(0, 16)}`)
  let msg: ClusterMessage
  if (raw.header.type === ClusterMsgType.Heartbeat) msg = { type: ClusterMsgType.Heartbeat, sender, seq, body: heartbeatBodyOf(sender, raw.body, ctx.bodies) }
  else if (raw.header.type === ClusterMsgType.SetFetch) msg = { type: ClusterMsgType.SetFetch, sender, seq, body: decodeSetFetchBody(raw.body) }
  else msg = { type: ClusterMsgType.ListFetch, sender, seq, body: decodeListFetchBody(raw.body) }
  ctx.guard.accept(sender, seq)
  return msg
}
