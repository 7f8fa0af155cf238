// Encrypted policy set codec (DESIGN §4): byte layout and limits; sealing/opening lives in lib/crypto/cluster-auth.ts.
// Layout (integers big endian), lib/wire/FORMAT.md §6:
//
//   offset      size   field
//   0           4      magic "PSET"
//   4           1      format version (1)
//   5           8      configuration version (u64, <= 2^53 - 1)
//   13          32     content digest: SHA-256 of the plaintext configuration (what heartbeats advertise)
//   45          32     origin: id of the member whose admin change made this version
//   77          2      M: number of index rows (1 .. MAX_SET_MEMBERS)
//   79          M×32   index: key digest (= member id) of each member; row 0 is the source (the signer)
//   79+32M      M×80   wrapped data keys, same order: sealed box of the 32-byte data key to that member's key
//   79+112M     4      C: length of the sealed configuration (u32, <= MAX_SET_SEALED)
//   83+112M     C      XChaCha20-Poly1305: nonce (24) ‖ ciphertext ‖ tag (16), AAD = AAD_CTX_POLICY_SET ‖ bytes 0..77
//   83+112M+C   64     source's Ed25519 signature (SIG_CTX_POLICY_SET) over cluster id (32) ‖ bytes 0 .. 83+112M+C
import { PemError } from './errors'

export const SET_MAGIC = Buffer.from('PSET')
export const SET_FORMAT_VERSION = 1
export const SET_FIXED_BYTES = 79
export const SET_HEADER_AAD_BYTES = 77
export const WRAPPED_KEY_BYTES = 80
export const MAX_SET_MEMBERS = 256
export const MAX_SET_SEALED = 16 * 1024 * 1024
export const SET_SIG_BYTES = 64
export const MAX_SET_BYTES = SET_FIXED_BYTES + MAX_SET_MEMBERS * (32 + WRAPPED_KEY_BYTES) + 4 + MAX_SET_SEALED + SET_SIG_BYTES

export interface PolicySetParts {
  version: number
  contentDigest: Buffer
  origin: Buffer
  index: Buffer[]
  wrappedKeys: Buffer[]
  sealed: Buffer
}

export interface RawPolicySet extends PolicySetParts {
  /** Bytes 0 .. 77: bound into the AEAD as associated data. */
  aadHeader: Buffer
  /** Everything the signature covers (after the cluster id). */
  signed: Buffer
  signature: Buffer
}

function bad (detail: string): PemError { return new PemError('PEM_ERR_BAD_POLICY_SET', detail) }

/** Header ‖ index ‖ wrapped keys ‖ sealed config: the part the source signs. */
export function encodeSetUnsigned (p: PolicySetParts): Buffer {
  const m = p.index.length
  if (m < 1 || m > MAX_SET_MEMBERS || p.wrappedKeys.length !== m) throw new PemError('PEM_ERR_BAD_ARGUMENT', `policy set with ${m} index rows and ${p.wrappedKeys.length} keys`)
  if (!Number.isSafeInteger(p.version) || p.version < 1) throw new PemError('PEM_ERR_BAD_ARGUMENT', 'policy set version must be a positive safe integer')
  if (p.sealed.length > MAX_SET_SEALED) throw new PemError('PEM_ERR_FRAME_TOO_LARGE', 'sealed configuration too large')
  const out = Buffer.alloc(SET_FIXED_BYTES + m * (32 + WRAPPED_KEY_BYTES) + 4 + p.sealed.length)
  SET_MAGIC.copy(out, 0)
  out[4] = SET_FORMAT_VERSION
  out.writeBigUInt64BE(BigInt(p.version), 5)
  p.contentDigest.copy(out, 13)
  p.origin.copy(out, 45)
  out.writeUInt16BE(m, 77)
  let o = SET_FIXED_BYTES
  for (const d of p.index) { if (d.length !== 32) throw new PemError('PEM_ERR_BAD_ARGUMENT', 'index digest must be 32 bytes'); d.copy(out, o); o += 32 }
  for (const w of p.wrappedKeys) { if (w.length !== WRAPPED_KEY_BYTES) throw new PemError('PEM_ERR_BAD_ARGUMENT', 'wrapped key must be 80 bytes'); w.copy(out, o); o += WRAPPED_KEY_BYTES }
  out.writeUInt32BE(p.sealed.length, o); o += 4
  p.sealed.copy(out, o)
  return out
}

/** The header bytes 0..77 for given fields (the AAD of the sealed configuration). */
export function setAadHeader (version: number, contentDigest: Buffer, origin: Buffer): Buffer {
  const h = Buffer.alloc(SET_HEADER_AAD_BYTES)
  SET_MAGIC.copy(h, 0)
  h[4] = SET_FORMAT_VERSION
  h.writeBigUInt64BE(BigInt(version), 5)
  contentDigest.copy(h, 13)
  origin.copy(h, 45)
  return h
}

/** Parse with every length checked against the buffer before anything is sliced; exact size, no trailing bytes. */
export function parsePolicySet (bytes: Buffer): RawPolicySet {
  if (!Buffer.isBuffer(bytes)) throw bad('not a buffer')
  if (bytes.length > MAX_SET_BYTES) throw new PemError('PEM_ERR_FRAME_TOO_LARGE', `policy set of ${bytes.length} bytes`)
  if (bytes.length < SET_FIXED_BYTES + 32 + WRAPPED_KEY_BYTES + 4 + SET_SIG_BYTES) throw bad(`policy set of ${bytes.length} bytes is too short`)
  if (!bytes.subarray(0, 4).equals(SET_MAGIC)) throw bad('bad magic')
  if (bytes[4] !== SET_FORMAT_VERSION) throw new PemError('PEM_ERR_VERSION', `policy set format ${bytes[4]}`)
  const big = bytes.readBigUInt64BE(5)
  if (big < 1n || big > BigInt(Number.MAX_SAFE_INTEGER)) throw bad(`version ${big} out of range`)
  const m = bytes.readUInt16BE(77)
  if (m < 1 || m > MAX_SET_MEMBERS) throw bad(`${m} index rows`)
  const lenAt = SET_FIXED_BYTES + m * (32 + WRAPPED_KEY_BYTES)
  if (bytes.length < lenAt + 4 + SET_SIG_BYTES) throw bad('index runs past the end')
  const c = bytes.readUInt32BE(lenAt)
  if (c > MAX_SET_SEALED) throw new PemError('PEM_ERR_FRAME_TOO_LARGE', `declared sealed length ${c}`)
  if (bytes.length !== lenAt + 4 + c + SET_SIG_BYTES) throw bad(`length ${bytes.length} does not match the declared sizes`)
  const index: Buffer[] = []
  const wrappedKeys: Buffer[] = []
  for (let i = 0; i < m; i++) index.push(bytes.subarray(SET_FIXED_BYTES + 32 * i, SET_FIXED_BYTES + 32 * (i + 1)))
  const wk = SET_FIXED_BYTES + 32 * m
  for (let i = 0; i < m; i++) wrappedKeys.push(bytes.subarray(wk + WRAPPED_KEY_BYTES * i, wk + WRAPPED_KEY_BYTES * (i + 1)))
  const end = lenAt + 4 + c
  return {
    version: Number(big),
    contentDigest: bytes.subarray(13, 45),
    origin: bytes.subarray(45, 77),
    index,
    wrappedKeys,
    sealed: bytes.subarray(lenAt + 4, end),
    aadHeader: bytes.subarray(0, SET_HEADER_AAD_BYTES),
    signed: bytes.subarray(0, end),
    signature: bytes.subarray(end)
  }
}
