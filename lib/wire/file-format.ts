// On-disk encrypted file, format v1: header codec, slot/record placement, AAD, and plaintext size from the file size.
// Pure functions shared by spd (lib/server/handlers/blocks.ts) and the host (pemfs). Layout: lib/wire/FORMAT.md §4.
//
// API in one screen (the host's view):
//   hdr = decodeHeader(first HEADER_MAX_BYTES of the file)       // PEM_ERR_BAD_HEADER on any damage (CRC-32)
//   plainSize(hdr, st_size)                                      // getattr: no read, no round trip
//   cipherSize(hdr, plainBytes)                                  // the backing file size for a plaintext size
//   blockRange(hdr, offset, length) -> {first, count}            // blocks a read/write touches, nothing else
//   slotOffset(hdr, block)                                       // where block's slot starts; slots are hdr.slotBytes
//   parseSlot(hdr, block, bytesReadFromSlot) -> hole | record    // PEM_ERR_TRUNCATED / _KEY_VERSION / _AUTH_FAILED_BLOCK
//   recordOffset(hdr, block, record)                             // where a sealed record (from spd) is written
// A block holds blockBytes of plaintext; only the file's last block may be shorter. A slot's record is
// nonce | ciphertext | tag | trailer; a full block's record ends at the slot end (compressed ones leave a hole in
// front), a short (last) block's record starts at the slot start and is never compressed, so the file ends at it.
// An all-zero slot is a hole: blockBytes of zeros.
import { PemError } from './errors'
import type { Compression } from './packets'
import { crc32 } from './crc32'

export const FILE_MAGIC = Buffer.from('PEMF', 'latin1')
/** On-disk format versions this build reads / writes. */
export const FILE_FORMAT = { MIN: 1, MAX: 1, CUR: 1 } as const

export const FILE_ID_BYTES = 16
export const NONCE_BYTES = 12
export const TAG_BYTES = 16
/** u32 sealed length | u32 plaintext length | u32 key version, after the sealed bytes, in the clear. */
export const TRAILER_BYTES = 12
/** Bytes a record adds to its payload: nonce + tag + trailer. */
export const RECORD_OVERHEAD = NONCE_BYTES + TAG_BYTES + TRAILER_BYTES
export const AAD_BYTES = 44
export const PAGE_BYTES = 4096
export const MIN_BLOCK_BYTES = 4096
export const MAX_BLOCK_BYTES = 1024 * 1024
/** Reading this many bytes from the start of a file always gets its whole header. */
export const HEADER_MAX_BYTES = PAGE_BYTES
/** 4 KiB blocks without compression (FUSE's page I/O, 1 % overhead); 64 KiB when compressed (room to shrink). */
export const DEFAULT_BLOCK_BYTES = { plain: 4096, compressed: 65536 } as const

/** Numbers travel on disk. ONLY APPEND. */
export const FILE_CIPHERS = { 'aes-256-gcm': 1, 'chacha20-poly1305': 2 } as const
export type FileCipher = keyof typeof FILE_CIPHERS
export const FILE_COMPRESSIONS: Record<Compression, number> = { none: 0, zstd: 1, lz4: 2, zlib: 3 }

const FIXED_BYTES = 39 // up to and including the key-name length byte
const CRC_BYTES = 4

export interface FileHeader {
  version: number
  fileId: Buffer // FILE_ID_BYTES random bytes
  keyName: string // the policy key, 1..255 UTF-8 bytes
  keyVersion: number // version of that key every block of the file is sealed under (u32, >= 1)
  cipher: FileCipher
  compression: Compression
  blockBytes: number // plaintext bytes per block: a power of two in [MIN_BLOCK_BYTES, MAX_BLOCK_BYTES]
  slotBytes: number // on-disk bytes per block
  headerBytes: number // the header's own length; slot 0 starts here
}

export type HeaderFields = Pick<FileHeader, 'fileId' | 'keyName' | 'keyVersion' | 'cipher' | 'compression'> & { blockBytes?: number }

function bad (code: 'PEM_ERR_BAD_HEADER' | 'PEM_ERR_BAD_ARGUMENT', why: string): never { throw new PemError(code, why) }
const roundUp = (n: number, to: number): number => Math.ceil(n / to) * to
const isPow2 = (n: number): boolean => Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0

/**
 * Layout rule of v1: without compression, slots are exactly blockBytes + RECORD_OVERHEAD and the header is as short
 * as it can be; with compression, header and slots are rounded up to whole pages so the hole in front of a compressed
 * record is made of whole pages the file system does not allocate.
 */
export function makeHeader (f: HeaderFields): FileHeader {
  const blockBytes = f.blockBytes ?? DEFAULT_BLOCK_BYTES[f.compression === 'none' ? 'plain' : 'compressed']
  const nameBytes = Buffer.byteLength(f.keyName)
  const paged = f.compression !== 'none'
  const h: FileHeader = {
    version: FILE_FORMAT.CUR,
    fileId: Buffer.from(f.fileId),
    keyName: f.keyName,
    keyVersion: f.keyVersion,
    cipher: f.cipher,
    compression: f.compression,
    blockBytes,
    slotBytes: paged ? roundUp(blockBytes + RECORD_OVERHEAD, PAGE_BYTES) : blockBytes + RECORD_OVERHEAD,
    headerBytes: paged ? PAGE_BYTES : FIXED_BYTES + nameBytes + CRC_BYTES
  }
  checkFields(h, 'PEM_ERR_BAD_ARGUMENT')
  return h
}

function checkFields (h: FileHeader, code: 'PEM_ERR_BAD_HEADER' | 'PEM_ERR_BAD_ARGUMENT'): void {
  const nameBytes = Buffer.byteLength(h.keyName)
  if (h.fileId.length !== FILE_ID_BYTES) bad(code, `file id must be ${FILE_ID_BYTES} bytes`)
  if (nameBytes < 1 || nameBytes > 255) bad(code, 'key name must be 1..255 bytes')
  if (!Number.isInteger(h.keyVersion) || h.keyVersion < 1 || h.keyVersion > 0xffffffff) bad(code, 'key version must be a u32 >= 1')
  if (!(h.cipher in FILE_CIPHERS)) bad(code, `unknown cipher ${String(h.cipher)}`)
  if (!(h.compression in FILE_COMPRESSIONS)) bad(code, `unknown compression ${String(h.compression)}`)
  if (!isPow2(h.blockBytes) || h.blockBytes < MIN_BLOCK_BYTES || h.blockBytes > MAX_BLOCK_BYTES) bad(code, `block size ${h.blockBytes} is not a power of two in [4 KiB, 1 MiB]`)
  if (h.slotBytes < h.blockBytes + RECORD_OVERHEAD || h.slotBytes > h.blockBytes + RECORD_OVERHEAD + PAGE_BYTES) bad(code, `slot size ${h.slotBytes} does not fit block size ${h.blockBytes}`)
  if (h.headerBytes < FIXED_BYTES + nameBytes + CRC_BYTES || h.headerBytes > HEADER_MAX_BYTES) bad(code, `header size ${h.headerBytes} is out of range`)
}

/**
 *   offset  size  field (integers big endian)
 *   0       4     magic "PEMF"
 *   4       2     format version (1)
 *   6       2     header bytes H (slot 0 starts at H)
 *   8       16    file id (random)
 *   24      4     key version
 *   28      1     cipher (FILE_CIPHERS)
 *   29      1     compression (FILE_COMPRESSIONS)
 *   30      4     block bytes B (plaintext per block)
 *   34      4     slot bytes S (on disk per block)
 *   38      1     key name length N
 *   39      N     key name (UTF-8)
 *   39+N    ...   zero padding up to H-4
 *   H-4     4     CRC-32 (IEEE) of bytes [0, H-4)
 */
export function encodeHeader (h: FileHeader): Buffer {
  checkFields(h, 'PEM_ERR_BAD_ARGUMENT')
  const b = Buffer.alloc(h.headerBytes)
  FILE_MAGIC.copy(b, 0)
  b.writeUInt16BE(h.version, 4)
  b.writeUInt16BE(h.headerBytes, 6)
  h.fileId.copy(b, 8)
  b.writeUInt32BE(h.keyVersion, 24)
  b[28] = FILE_CIPHERS[h.cipher]
  b[29] = FILE_COMPRESSIONS[h.compression]
  b.writeUInt32BE(h.blockBytes, 30)
  b.writeUInt32BE(h.slotBytes, 34)
  b[38] = b.write(h.keyName, FIXED_BYTES, 'utf8')
  b.writeUInt32BE(crc32(b.subarray(0, h.headerBytes - CRC_BYTES)), h.headerBytes - CRC_BYTES)
  return b
}

/** Decodes the header at the start of `buf` (which may hold more of the file). Any damage: PEM_ERR_BAD_HEADER. */
export function decodeHeader (buf: Uint8Array): FileHeader {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.length)
  if (b.length < FIXED_BYTES + 1 + CRC_BYTES) bad('PEM_ERR_BAD_HEADER', `${b.length} bytes is shorter than any header`)
  if (!b.subarray(0, 4).equals(FILE_MAGIC)) bad('PEM_ERR_BAD_HEADER', 'not an encrypted file (bad magic)')
  const version = b.readUInt16BE(4)
  if (version < FILE_FORMAT.MIN || version > FILE_FORMAT.MAX) bad('PEM_ERR_BAD_HEADER', `format version ${version} is not supported`)
  const headerBytes = b.readUInt16BE(6)
  if (headerBytes > b.length || headerBytes < FIXED_BYTES + 1 + CRC_BYTES) bad('PEM_ERR_BAD_HEADER', `header size ${headerBytes} is out of range`)
  if (crc32(b.subarray(0, headerBytes - CRC_BYTES)) !== b.readUInt32BE(headerBytes - CRC_BYTES)) bad('PEM_ERR_BAD_HEADER', 'header checksum mismatch')
  const cipher = (Object.keys(FILE_CIPHERS) as FileCipher[]).find(c => FILE_CIPHERS[c] === b[28])
  const compression = (Object.keys(FILE_COMPRESSIONS) as Compression[]).find(c => FILE_COMPRESSIONS[c] === b[29])
  if (cipher === undefined || compression === undefined) bad('PEM_ERR_BAD_HEADER', 'unknown cipher or compression')
  const nameLen = b[38]
  if (FIXED_BYTES + nameLen > headerBytes - CRC_BYTES) bad('PEM_ERR_BAD_HEADER', 'key name overruns the header')
  if (b.subarray(FIXED_BYTES + nameLen, headerBytes - CRC_BYTES).some(x => x !== 0)) bad('PEM_ERR_BAD_HEADER', 'header padding is not zero')
  const h: FileHeader = {
    version,
    fileId: Buffer.from(b.subarray(8, 24)),
    keyName: b.toString('utf8', FIXED_BYTES, FIXED_BYTES + nameLen),
    keyVersion: b.readUInt32BE(24),
    cipher,
    compression,
    blockBytes: b.readUInt32BE(30),
    slotBytes: b.readUInt32BE(34),
    headerBytes
  }
  checkFields(h, 'PEM_ERR_BAD_HEADER')
  return h
}

/** Plaintext size of a file whose backing file is `fileSize` bytes: from the size alone (getattr needs no read). */
export function plainSize (h: FileHeader, fileSize: number): number {
  const d = fileSize - h.headerBytes
  if (d <= 0) return 0
  const n = Math.ceil(d / h.slotBytes)
  const tail = d - (n - 1) * h.slotBytes
  const last = tail === h.slotBytes ? h.blockBytes : Math.min(h.blockBytes, Math.max(0, tail - RECORD_OVERHEAD))
  return (n - 1) * h.blockBytes + last
}

/** Backing file size for `plain` bytes of plaintext (the inverse of plainSize). */
export function cipherSize (h: FileHeader, plain: number): number {
  if (plain <= 0) return h.headerBytes
  const n = Math.ceil(plain / h.blockBytes)
  const last = plain - (n - 1) * h.blockBytes
  return h.headerBytes + (n - 1) * h.slotBytes + (last === h.blockBytes ? h.slotBytes : last + RECORD_OVERHEAD)
}

/** Number of blocks a file of this backing size has (the last may be short). */
export function blockCount (h: FileHeader, fileSize: number): number {
  return Math.ceil(plainSize(h, fileSize) / h.blockBytes)
}

export function slotOffset (h: FileHeader, block: number): number { return h.headerBytes + block * h.slotBytes }

/** Blocks that plaintext bytes [offset, offset + length) touch: first, first + 1, ..., first + count - 1. */
export function blockRange (h: FileHeader, offset: number, length: number): { first: number, count: number } {
  if (length <= 0) return { first: Math.floor(offset / h.blockBytes), count: 0 }
  const first = Math.floor(offset / h.blockBytes)
  return { first, count: Math.floor((offset + length - 1) / h.blockBytes) - first + 1 }
}

export interface Trailer { sealedLen: number, plainLen: number, keyVersion: number }

export function readTrailer (record: Uint8Array): Trailer {
  const b = Buffer.from(record.buffer, record.byteOffset, record.length)
  const at = b.length - TRAILER_BYTES
  return { sealedLen: b.readUInt32BE(at), plainLen: b.readUInt32BE(at + 4), keyVersion: b.readUInt32BE(at + 8) }
}

export function writeTrailer (out: Uint8Array, at: number, t: Trailer): void {
  const b = Buffer.from(out.buffer, out.byteOffset, out.length)
  b.writeUInt32BE(t.sealedLen, at); b.writeUInt32BE(t.plainLen, at + 4); b.writeUInt32BE(t.keyVersion, at + 8)
}

/** True when the stored payload is compressed (it is then shorter than the plaintext; a raw one is exactly as long). */
export function isCompressed (t: Trailer): boolean { return t.sealedLen - NONCE_BYTES - TAG_BYTES < t.plainLen }

/**
 * Checks a record (sealed bytes + trailer, as spd returns and takes them) against the header: lengths agree, the
 * plaintext fits a block, a compressed payload is shorter than its plaintext. Key version differs: PEM_ERR_KEY_VERSION.
 * Other inconsistencies: PEM_ERR_AUTH_FAILED_BLOCK (the record was altered).
 */
export function checkRecord (h: FileHeader, block: number, record: Uint8Array): Trailer {
  if (record.length < RECORD_OVERHEAD) throw new PemError('PEM_ERR_AUTH_FAILED_BLOCK', `block ${block}: record of ${record.length} bytes is too short`)
  const t = readTrailer(record)
  const payload = t.sealedLen - NONCE_BYTES - TAG_BYTES
  if (t.sealedLen + TRAILER_BYTES !== record.length || payload < 0 || t.plainLen > h.blockBytes || payload > t.plainLen ||
      (t.plainLen < h.blockBytes && payload !== t.plainLen)) {
    throw new PemError('PEM_ERR_AUTH_FAILED_BLOCK', `block ${block}: record trailer is inconsistent`)
  }
  if (t.keyVersion !== h.keyVersion) throw new PemError('PEM_ERR_KEY_VERSION', `block ${block} was sealed under key version ${t.keyVersion}, the file header says ${h.keyVersion}`)
  return t
}

export type Slot = { kind: 'hole' } | { kind: 'record', record: Buffer, trailer: Trailer }

/**
 * Finds the record in the bytes read from a block's slot: slotBytes of them for any block but the file's last, which
 * ends where the file ends. An all-zero slot is a hole. A last slot that cannot hold a whole short record is
 * PEM_ERR_TRUNCATED (the file was cut inside a block).
 */
export function parseSlot (h: FileHeader, block: number, slot: Uint8Array): Slot {
  const b = Buffer.from(slot.buffer, slot.byteOffset, slot.length)
  if (b.length > h.slotBytes) bad('PEM_ERR_BAD_ARGUMENT', `slot bytes for block ${block} are longer than a slot`)
  if (b.length === h.slotBytes) {
    const t = readTrailer(b)
    if (t.sealedLen === 0 && t.plainLen === 0 && t.keyVersion === 0) {
      if (isZero(b)) return { kind: 'hole' }
      throw new PemError('PEM_ERR_AUTH_FAILED_BLOCK', `block ${block}: slot has data but no trailer`)
    }
    const len = t.sealedLen + TRAILER_BYTES
    if (len > b.length || len < RECORD_OVERHEAD) throw new PemError('PEM_ERR_AUTH_FAILED_BLOCK', `block ${block}: record length ${len} does not fit its slot`)
    const record = b.subarray(b.length - len)
    return { kind: 'record', record, trailer: checkRecord(h, block, record) }
  }
  // The last slot of the file: a short raw block starting at the slot start, the file ending at its trailer.
  const t = b.length >= RECORD_OVERHEAD ? readTrailer(b) : null
  if (t === null || t.sealedLen + TRAILER_BYTES !== b.length || t.sealedLen - NONCE_BYTES - TAG_BYTES !== t.plainLen || t.plainLen >= h.blockBytes) {
    throw new PemError('PEM_ERR_TRUNCATED', `block ${block}: the file ends inside it (${b.length} of its bytes are there)`)
  }
  return { kind: 'record', record: b, trailer: checkRecord(h, block, b) }
}

/** File offset at which a record for `block` is written: slot start for a short block, else ending at the slot end. */
export function recordOffset (h: FileHeader, block: number, record: Uint8Array): number {
  const t = readTrailer(record)
  return t.plainLen < h.blockBytes ? slotOffset(h, block) : slotOffset(h, block) + h.slotBytes - record.length
}

/**
 * Additional authenticated data of one block (AAD_BYTES):
 *   magic(4) version(2) file id(16) cipher(1) compression(1) block bytes(4) block number(8) key version(4) plain length(4)
 * so a block moved to another position or file, cut, re-labelled with another version or length fails to open.
 */
export function writeAad (h: FileHeader, block: number, keyVersion: number, plainLen: number, out: Uint8Array, at = 0): void {
  const b = Buffer.from(out.buffer, out.byteOffset, out.length)
  FILE_MAGIC.copy(b, at)
  b.writeUInt16BE(h.version, at + 4)
  h.fileId.copy(b, at + 6)
  b[at + 22] = FILE_CIPHERS[h.cipher]
  b[at + 23] = FILE_COMPRESSIONS[h.compression]
  b.writeUInt32BE(h.blockBytes, at + 24)
  b.writeUInt32BE(Math.floor(block / 0x100000000), at + 28)
  b.writeUInt32BE(block >>> 0, at + 32)
  b.writeUInt32BE(keyVersion, at + 36)
  b.writeUInt32BE(plainLen, at + 40)
}

function isZero (b: Buffer): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false
  return true
}

