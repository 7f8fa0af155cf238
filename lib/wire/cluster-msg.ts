// Cluster message codec (DESIGN §4): byte layout, limits and strict decoding; signing lives in lib/crypto/cluster-auth.ts.
// Layout (integers big endian), lib/wire/FORMAT.md §5:
//
//   offset  size  field
//   0       1     message type (ClusterMsgType)
//   1       1     header version (CLUSTER_HEADER_VERSION)
//   2       32    sender id: SHA-256 of the sender's Ed25519 public key
//   34      4     sequence: boot epoch (u32), + 1 on every start of the sender, persisted before the first send
//   38      4     sequence: counter (u32) within the epoch
//   42      1     authentication type (AUTH_ED25519)
//   43      4     checksum: CRC-32 (IEEE) of the body
//   47      4     body length B (u32), 1 <= B <= MAX_CLUSTER_BODY
//   51      B     body: one msgpack array, canonical (re-encoding it gives the same bytes)
//   51+B    64    Ed25519 signature over cluster id (32) ‖ type (1) ‖ bytes 0 .. 51+B
//
// The signature is checked over the received bytes, before the body is decoded. A heartbeat carries its digest list
// either in full or as the list's SHA-256 only (header version 2; FORMAT.md §5 says when each is sent).
import { createHash } from 'node:crypto'
import { PemError } from './errors'
import { pack, unpack } from './frame'
import { crc32 } from './crc32'

export const CLUSTER_HEADER_VERSION = 2
export const AUTH_ED25519 = 1
export const CLUSTER_HEADER_BYTES = 51
export const CLUSTER_SIG_BYTES = 64
export const MAX_CLUSTER_BODY = 64 * 1024
export const MAX_CLUSTER_MSG_BYTES = CLUSTER_HEADER_BYTES + MAX_CLUSTER_BODY + CLUSTER_SIG_BYTES
export const MAX_DIGEST_LIST = 256
export const MAX_ADDR_CHARS = 255
export const DIGEST_BYTES = 32

/** Message types. ONLY APPEND; never renumber or reuse. */
export const ClusterMsgType = {
  Heartbeat: 1, // presence, versions, digest list; sent every interval to every known member
  SetFetch: 2, // ask the receiver for its encrypted policy set of (version, digest)
  ListFetch: 3 // ask the receiver for a heartbeat carrying its full digest list (its list digest was unknown)
} as const
export type ClusterMsgType = (typeof ClusterMsgType)[keyof typeof ClusterMsgType]

/** Heartbeat status (the patent's status value). ONLY APPEND; never renumber or reuse. */
export const ClusterStatus = {
  Discovery: 1,
  Join: 2,
  Leave: 3,
  Remove: 4,
  SyncInProgress: 5,
  SyncDone: 6,
  SwitchNetwork: 7
} as const
export type ClusterStatus = (typeof ClusterStatus)[keyof typeof ClusterStatus]

/** A member's state in a digest list. ONLY APPEND; never renumber or reuse. */
export const MemberState = {
  Active: 1,
  Joining: 2,
  Leaving: 3,
  Removed: 4,
  Down: 5
} as const
export type MemberState = (typeof MemberState)[keyof typeof MemberState]

/** Phase of the advertised pending version (lib/server/cluster/sync.ts). ONLY APPEND. */
export const PendingPhase = { None: 0, Held: 1, Locked: 2 } as const
export type PendingPhase = (typeof PendingPhase)[keyof typeof PendingPhase]

export interface DigestEntry { digest: Buffer, addr: string, state: MemberState }

/**
 * Body of a Heartbeat: msgpack [status, iv, idg, pv, pdg|nil, phase, bar|nil, list], where list is either the full
 * digest list [[digest, addr, state], ...] or, in the short form, the list digest (bin 32): SHA-256 of the msgpack
 * bytes the full form carries in that place.
 */
export interface HeartbeatBody {
  status: ClusterStatus
  installedVersion: number
  installedDigest: Buffer
  pendingVersion: number // 0 with pendingDigest null when nothing is pending
  pendingDigest: Buffer | null
  phase: PendingPhase
  /** An equivocation this member saw: [version, origin id]; sets of that origin at that version are refused. */
  bar: [number, Buffer] | null
  /** The full digest list, or null in the short form (only `listDigest` is sent). */
  members: DigestEntry[] | null
  /** SHA-256 of the full list's encoding: sent in the short form, computed from the list in the full form. */
  listDigest: Buffer
}

/** Body of a SetFetch: msgpack [version, digest]. */
export interface SetFetchBody { version: number, digest: Buffer }

/** Body of a ListFetch: msgpack [list digest]: the digest the asker could not match to a full list from the receiver. */
export interface ListFetchBody { listDigest: Buffer }

export interface ClusterHeader {
  type: ClusterMsgType
  headerVersion: number
  sender: Buffer
  epoch: number
  counter: number
  auth: number
  checksum: number
  bodyLength: number
}

export interface RawClusterMsg {
  header: ClusterHeader
  /** Bytes 0 .. 51+B: what the signature covers (after the cluster id and type). */
  signed: Buffer
  body: Buffer
  signature: Buffer
}


function bad (detail: string): PemError { return new PemError('PEM_ERR_CLUSTER_MSG', detail) }

function isU32 (n: unknown): n is number { return Number.isInteger(n) && (n as number) >= 0 && (n as number) <= 0xffffffff }
function isVersion (n: unknown): n is number { return Number.isSafeInteger(n) && (n as number) >= 0 }
function isDigest (b: unknown): b is Buffer { return Buffer.isBuffer(b) && b.length === DIGEST_BYTES }

function listValue (members: DigestEntry[]): unknown[] { return members.map(m => [m.digest, m.addr, m.state]) }

/** The list digest of a full digest list: SHA-256 of its msgpack encoding (the bytes the full form carries). */
export function digestListDigest (members: DigestEntry[]): Buffer {
  return createHash('sha256').update(pack(listValue(members))).digest()
}

/** Full form when `b.members` is set (its `listDigest` is not sent), short form (`listDigest` only) when it is null. */
export function encodeHeartbeatBody (b: HeartbeatBody): Buffer {
  if (b.members === null && !isDigest(b.listDigest)) throw new PemError('PEM_ERR_BAD_ARGUMENT', 'a short heartbeat needs a 32-byte list digest')
  return pack([b.status, b.installedVersion, b.installedDigest, b.pendingVersion, b.pendingDigest, b.phase, b.bar,
    b.members === null ? b.listDigest : listValue(b.members)])
}

export function encodeSetFetchBody (b: SetFetchBody): Buffer { return pack([b.version, b.digest]) }
export function encodeListFetchBody (b: ListFetchBody): Buffer { return pack([b.listDigest]) }

/** The unsigned part of a message: header ‖ body. The caller appends the 64-byte signature. */
export function encodeUnsigned (type: ClusterMsgType, sender: Buffer, epoch: number, counter: number, body: Buffer): Buffer {
  if (!isDigest(sender)) throw new PemError('PEM_ERR_BAD_ARGUMENT', 'sender id must be 32 bytes')
  if (!isU32(epoch) || !isU32(counter)) throw new PemError('PEM_ERR_BAD_ARGUMENT', 'epoch and counter are u32')
  if (body.length < 1 || body.length > MAX_CLUSTER_BODY) throw new PemError('PEM_ERR_FRAME_TOO_LARGE', `cluster body of ${body.length} bytes`)
  const out = Buffer.alloc(CLUSTER_HEADER_BYTES + body.length)
  out[0] = type
  out[1] = CLUSTER_HEADER_VERSION
  sender.copy(out, 2)
  out.writeUInt32BE(epoch, 34)
  out.writeUInt32BE(counter, 38)
  out[42] = AUTH_ED25519
  out.writeUInt32BE(crc32(body), 43)
  out.writeUInt32BE(body.length, 47)
  body.copy(out, CLUSTER_HEADER_BYTES)
  return out
}

/**
 * Split a received message into header, body and signature. Lengths are checked before anything is copied;
 * the body is not decoded here (the signature is checked first, over `signed`).
 */
export function splitClusterMsg (bytes: Buffer): RawClusterMsg {
  if (!Buffer.isBuffer(bytes)) throw bad('not a buffer')
  if (bytes.length > MAX_CLUSTER_MSG_BYTES) throw new PemError('PEM_ERR_FRAME_TOO_LARGE', `cluster message of ${bytes.length} bytes`)
  if (bytes.length < CLUSTER_HEADER_BYTES + 1 + CLUSTER_SIG_BYTES) throw bad(`cluster message of ${bytes.length} bytes is too short`)
  const type = bytes[0]
  if (type !== ClusterMsgType.Heartbeat && type !== ClusterMsgType.SetFetch && type !== ClusterMsgType.ListFetch) throw bad(`unknown message type ${type}`)
  if (bytes[1] !== CLUSTER_HEADER_VERSION) throw new PemError('PEM_ERR_VERSION', `cluster header version ${bytes[1]}`)
  if (bytes[42] !== AUTH_ED25519) throw bad(`unknown authentication type ${bytes[42]}`)
  const bodyLength = bytes.readUInt32BE(47)
  if (bodyLength < 1 || bodyLength > MAX_CLUSTER_BODY) throw new PemError('PEM_ERR_FRAME_TOO_LARGE', `declared body length ${bodyLength}`)
  if (bytes.length !== CLUSTER_HEADER_BYTES + bodyLength + CLUSTER_SIG_BYTES) throw bad(`length ${bytes.length} does not match declared body ${bodyLength}`)
  const end = CLUSTER_HEADER_BYTES + bodyLength
  return {
    header: {
      type: type as ClusterMsgType,
      headerVersion: bytes[1],
      sender: bytes.subarray(2, 34),
      epoch: bytes.readUInt32BE(34),
      counter: bytes.readUInt32BE(38),
      auth: bytes[42],
      checksum: bytes.readUInt32BE(43),
      bodyLength
    },
    signed: bytes.subarray(0, end),
    body: bytes.subarray(CLUSTER_HEADER_BYTES, end),
    signature: bytes.subarray(end)
  }
}

export function checkChecksum (raw: RawClusterMsg): void {
  if (crc32(raw.body) !== raw.header.checksum) throw new PemError('PEM_ERR_CHECKSUM', 'body checksum mismatch')
}

/** Decode a body strictly: one canonical msgpack array (no duplicate keys, no non-canonical integers, no trailing bytes). */
function decodeCanonical (body: Buffer): unknown[] {
  let v: unknown
  try { v = unpack(body) } catch (err) { throw bad((err as Error).message) }
  if (!Array.isArray(v)) throw bad('body is not an array')
  if (!pack(v).equals(body)) throw bad('body is not canonically encoded')
  return v
}

export function decodeHeartbeatBody (body: Buffer): HeartbeatBody {
  const a = decodeCanonical(body)
  if (a.length !== 8) throw bad('heartbeat body has the wrong arity')
  const [status, iv, idg, pv, pdg, phase, barV, list] = a
  if (!Number.isInteger(status) || (status as number) < 1 || (status as number) > 255) throw bad('bad status')
  if (!isVersion(iv) || !isDigest(idg)) throw bad('bad installed version')
  if (!isVersion(pv) || !(pdg === null || isDigest(pdg)) || ((pdg === null) !== (pv === 0))) throw bad('bad pending version')
  if (phase !== PendingPhase.None && phase !== PendingPhase.Held && phase !== PendingPhase.Locked) throw bad('bad phase')
  if ((phase === PendingPhase.None) !== (pdg === null)) throw bad('phase and pending disagree')
  let bar: [number, Buffer] | null = null
  if (barV !== null) {
    if (!Array.isArray(barV) || barV.length !== 2 || !isVersion(barV[0]) || !isDigest(barV[1])) throw bad('bad bar')
    bar = [barV[0], barV[1]]
  }
  const head = { status: status as ClusterStatus, installedVersion: iv, installedDigest: idg, pendingVersion: pv, pendingDigest: pdg as Buffer | null, phase: phase as PendingPhase, bar }
  if (isDigest(list)) return { ...head, members: null, listDigest: list }
  if (!Array.isArray(list) || list.length > MAX_DIGEST_LIST) throw bad('bad digest list')
  const members: DigestEntry[] = list.map(e => {
    if (!Array.isArray(e) || e.length !== 3 || !isDigest(e[0]) || typeof e[1] !== 'string' || e[1].length > MAX_ADDR_CHARS) throw bad('bad digest list entry')
    if (!Number.isInteger(e[2]) || e[2] < 1 || e[2] > 255) throw bad('bad member state')
    return { digest: e[0], addr: e[1], state: e[2] as MemberState }
  })
  return { ...head, members, listDigest: digestListDigest(members) }
}

export function decodeSetFetchBody (body: Buffer): SetFetchBody {
  const a = decodeCanonical(body)
  if (a.length !== 2 || !isVersion(a[0]) || !isDigest(a[1])) throw bad('bad set fetch body')
  return { version: a[0], digest: a[1] }
}

export function decodeListFetchBody (body: Buffer): ListFetchBody {
  const a = decodeCanonical(body)
  if (a.length !== 1 || !isDigest(a[0])) throw bad('bad list fetch body')
  return { listDigest: a[0] }
}
