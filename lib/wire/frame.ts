// Frame codec: bytes <-> {op, flags, id, body}, and a streaming splitter with limits. Layout: lib/wire/FORMAT.md §1.
//
//   offset  size  field
//   0       4     length L of everything after this field (u32 BE), FRAME_HEADER_BYTES-4 <= L <= limit
//   4       1     opcode (lib/wire/opcodes.ts)
//   5       1     flags: bit0 REPLY, bit1 ERROR; the other bits are zero
//   6       4     request id (u32 BE), chosen by the requester, echoed by the reply
//   10      L-6   body: exactly one msgpack value (lib/wire/packets.ts), no trailing bytes
//
// Frames ride a channel that is already encrypted and mutually authenticated (lib/channel/tls.ts),
// so they carry no signature of their own (lib/channel/channel.ts).
import { Packr, Unpackr } from 'msgpackr'
import { PemError } from './errors'
import { Op, isOp } from './opcodes'
import { LIMITS, type HelloBody } from './packets'

export const FRAME_HEADER_BYTES = 10
/** Default largest frame (length field value): a 1 MiB batch of blocks plus its metadata. */
export const MAX_FRAME_BYTES = 4 * 1024 * 1024
/**
 * Largest frame a server reads from a peer that has not completed its Hello, or that holds an enrollment channel
 * (only Hello and Enroll, each well under 1 KiB): an unauthenticated peer cannot make it buffer or decode more.
 */
export const PREAUTH_FRAME_BYTES = 4 * 1024
/**
 * Largest control frame an enrolled host sends: a Decide with every field at its limit (guard, path and exe of
 * LIMITS.pathBytes, user and domain of LIMITS.stringBytes, LIMITS.gids gids and group names) packs to about 81 KiB;
 * FileHeader, FileKey, BlockChannel, Ping and Servers are under 5 KiB.
 */
export const HOST_CONTROL_FRAME_BYTES = 96 * 1024
/**
 * Largest BlocksSeal/BlocksOpen frame an enrolled host sends (the JS block path, docs/CHANNEL.md §8 "Fallback"):
 * LIMITS.batchBytes of plaintext, plus per block its record overhead, number and length, plus a header and a grant
 * (about 18 KiB in all at LIMITS.blocksPerBatch blocks).
 */
export const HOST_DATA_FRAME_BYTES = LIMITS.batchBytes + 32 * 1024

/**
 * The largest frame spd's host listener reads once the Hello named the peer's role, by the frame's opcode (judged
 * from its header, before its body is buffered): a host's data batches, a host's control requests, and a member,
 * which reads audit records there with AuditRead requests of under 3 KiB.
 */
export function hostListenerFrameLimit (role: HelloBody['role'], op: number): number {
  if (role !== 'host') return PREAUTH_FRAME_BYTES
  return op === Op.BlocksSeal || op === Op.BlocksOpen ? HOST_DATA_FRAME_BYTES : HOST_CONTROL_FRAME_BYTES
}
export const FLAG_REPLY = 0x01
export const FLAG_ERROR = 0x02
const KNOWN_FLAGS = FLAG_REPLY | FLAG_ERROR

export interface Frame {
  op: number
  flags: number
  id: number
  body: unknown
  /** The pooled buffer a large frame was assembled in (its body's Buffers are views of it); see FrameSplitter. */
  pooled?: Buffer
  /** The gate skipped this frame: its body was dropped unread (body is undefined). */
  skipped?: true
}

/** A frame's header fields; `length` is the length field (the frame is length + 4 bytes). */
export interface FrameHeader { length: number, op: number, flags: number, id: number }

/**
 * Decides on a frame from its header alone, before any of its body is buffered: 'decode' it, or 'skip' it (its
 * body is dropped unread as it arrives); a thrown PemError fails the stream.
 */
export type FrameGate = (header: FrameHeader) => 'decode' | 'skip'

/** Where FrameSplitter assembles large frames (lib/channel/buffer-pool.ts dataPool). */
export interface FramePool { take: (bytes: number) => Buffer }

/** Frames at least this large that arrive in several chunks are assembled in a pooled buffer, not concatenated. */
export const POOLED_FRAME_BYTES = 64 * 1024

// One msgpack configuration for the whole product: plain maps and arrays, no records, no structure sharing.
const packr = new Packr({ useRecords: false, moreTypes: false, encodeUndefinedAsNil: true })
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, moreTypes: false, int64AsType: 'number' })

export function pack (value: unknown): Buffer { return packr.pack(value) }

export const MAX_BODY_DEPTH = 16

/** Decode exactly one msgpack value; anything else (trailing bytes, truncation, extension types) is PEM_ERR_BAD_FRAME. */
export function unpack (bytes: Uint8Array): unknown {
  let value: unknown
  try {
    value = unpackr.unpack(bytes)
  } catch (err) {
    throw new PemError('PEM_ERR_BAD_FRAME', `bad msgpack body: ${(err as Error).message}`)
  }
  assertPlain(value)
  return value
}

/**
 * msgpackr decodes some extension types (timestamps, typed arrays, sets) by itself and cannot be told not to, so
 * the decoded value is walked once: only nil, booleans, numbers, strings, Buffers, arrays and plain maps pass.
 */
function assertPlain (root: unknown): void {
  const stack: Array<[unknown, number]> = [[root, 0]]
  while (stack.length > 0) {
    const [v, depth] = stack.pop() as [unknown, number]
    if (v === null || typeof v === 'boolean' || typeof v === 'number' || typeof v === 'string') continue
    if (typeof v !== 'object') throw new PemError('PEM_ERR_BAD_FRAME', `body holds a ${typeof v}`)
    if (depth >= MAX_BODY_DEPTH) throw new PemError('PEM_ERR_BAD_FRAME', `body nests deeper than ${MAX_BODY_DEPTH}`)
    if (Buffer.isBuffer(v)) continue
    if (Array.isArray(v)) { for (const x of v) stack.push([x, depth + 1]); continue }
    if (Object.getPrototypeOf(v) !== Object.prototype) throw new PemError('PEM_ERR_BAD_FRAME', 'body uses a msgpack extension type')
    for (const x of Object.values(v)) stack.push([x, depth + 1])
  }
}

/**
 * A body map whose last value is a Buffer of at least this many bytes is encoded without copying that Buffer
 * (smaller frames are copied into one socket write by the channel anyway).
 */
export const SPLIT_BIN_BYTES = 64 * 1024
const EMPTY_BIN = Buffer.alloc(0)

/** The frame header and `payload` (head bytes of the body, `tail` bytes more after it) in one new buffer. */
function frameHead (op: number, id: number, flags: number, payload: Uint8Array, payloadBytes: number, extra: number, tail: number): Buffer {
  const out = Buffer.allocUnsafe(FRAME_HEADER_BYTES + payloadBytes + extra)
  out.writeUInt32BE(FRAME_HEADER_BYTES - 4 + payloadBytes + extra + tail, 0)
  out[4] = op
  out[5] = flags
  out.writeUInt32BE(id >>> 0, 6)
  out.set(payload.subarray(0, payloadBytes), FRAME_HEADER_BYTES)
  return out
}

/**
 * One frame as the buffers to write back to back: [frame], or, for a body map whose last value is a large Buffer
 * (a data batch), [header and the body up to that Buffer's msgpack bin header, the Buffer itself] — the same bytes
 * msgpackr would produce, without copying the bulk (docs/CHANNEL.md).
 */
export function encodeFrameParts (op: number, id: number, body: unknown, flags = 0): Buffer[] {
  const big = trailingBin(body)
  if (big !== null) {
    // The body with an empty bin in that last field ends in c4 00; the real bin header (bin 8/16/32) replaces it.
    const payload = packr.pack({ ...(body as object), [big.key]: EMPTY_BIN })
    const n = big.value.length
    if (payload.length >= 2 && payload[payload.length - 2] === 0xc4 && payload[payload.length - 1] === 0) {
      const at = payload.length - 2
      const binHead = n < 0x100 ? 2 : n < 0x10000 ? 3 : 5
      const head = frameHead(op, id, flags, payload, at, binHead, n)
      const o = FRAME_HEADER_BYTES + at
      if (binHead === 2) { head[o] = 0xc4; head[o + 1] = n } else if (binHead === 3) { head[o] = 0xc5; head.writeUInt16BE(n, o + 1) } else { head[o] = 0xc6; head.writeUInt32BE(n, o + 1) }
      return [head, big.value]
    }
  }
  const payload = packr.pack(body)
  return [frameHead(op, id, flags, payload, payload.length, 0, 0)]
}

function trailingBin (body: unknown): { key: string, value: Buffer } | null {
  if (body === null || typeof body !== 'object' || Array.isArray(body) || Buffer.isBuffer(body)) return null
  let key: string | undefined
  for (const k in body) key = k // the last own enumerable key: bodies are plain object literals
  if (key === undefined || !Object.prototype.hasOwnProperty.call(body, key)) return null
  const value = (body as Record<string, unknown>)[key]
  return Buffer.isBuffer(value) && value.length >= SPLIT_BIN_BYTES ? { key, value } : null
}

/** One frame in one buffer. */
export function encodeFrame (op: number, id: number, body: unknown, flags = 0): Buffer {
  const parts = encodeFrameParts(op, id, body, flags)
  return parts.length === 1 ? parts[0] : Buffer.concat(parts)
}

/** Read and check a frame header (the first 10 bytes) before anything is allocated for the body. */
export function readHeader (buf: Uint8Array, offset: number, maxBytes: number): FrameHeader {
  const length = ((buf[offset] << 24) >>> 0) + (buf[offset + 1] << 16) + (buf[offset + 2] << 8) + buf[offset + 3]
  if (length < FRAME_HEADER_BYTES - 4) throw new PemError('PEM_ERR_BAD_FRAME', `frame length ${length} is below the header size`)
  if (length > maxBytes) throw new PemError('PEM_ERR_FRAME_TOO_LARGE', `frame of ${length} bytes exceeds the limit of ${maxBytes}`)
  const op = buf[offset + 4]
  if (!isOp(op)) throw new PemError('PEM_ERR_BAD_OPCODE', `unknown opcode 0x${op.toString(16)}`)
  const flags = buf[offset + 5]
  if ((flags & ~KNOWN_FLAGS) !== 0) throw new PemError('PEM_ERR_BAD_FRAME', `unknown flags 0x${flags.toString(16)}`)
  const id = ((buf[offset + 6] << 24) >>> 0) + (buf[offset + 7] << 16) + (buf[offset + 8] << 8) + buf[offset + 9]
  return { length, op, flags, id }
}

/** Decode one whole frame (header and body, nothing after it). */
export function decodeFrame (buf: Uint8Array, maxBytes = MAX_FRAME_BYTES): Frame {
  if (buf.length < FRAME_HEADER_BYTES) throw new PemError('PEM_ERR_BAD_FRAME', `frame of ${buf.length} bytes is shorter than its header`)
  const h = readHeader(buf, 0, maxBytes)
  if (h.length + 4 !== buf.length) throw new PemError('PEM_ERR_BAD_FRAME', `frame length field says ${h.length + 4} bytes, got ${buf.length}`)
  return { op: h.op, flags: h.flags, id: h.id, body: unpack(buf.subarray(FRAME_HEADER_BYTES)) }
}

/**
 * Splits a byte stream into frames: feed() the chunks, then take frames one at a time with next() (push() does
 * both), so that whoever reads them can change what the gate admits between one frame and the next. A malformed
 * or oversized header, or one the gate refuses, throws before its body is buffered, and the splitter is then
 * unusable (the channel must close). With a pool, a frame of POOLED_FRAME_BYTES or more that spans chunks is copied
 * into a buffer from the pool as its bytes arrive (Frame.pooled); whoever is done with the frame may give it back.
 */
export class FrameSplitter {
  private chunks: Buffer[] = []
  private buffered = 0
  private head: FrameHeader | null = null // header of the frame being read, null = not yet read
  private skipping = 0 // bytes of a skipped frame still to drop
  private failed = false
  private assembly: Buffer | null = null // the pooled buffer the current large frame is copied into
  private filled = 0
  private assembled: Frame | null = null // a pooled frame completed by feed(), handed out by the next next()

  constructor (private readonly maxBytes = MAX_FRAME_BYTES, private readonly pool?: FramePool, private readonly gate?: FrameGate) {}

  /** Every frame the chunk completes (feed, then next until null). */
  push (chunk: Buffer): Frame[] {
    this.feed(chunk)
    const out: Frame[] = []
    for (let f = this.next(); f !== null; f = this.next()) out.push(f)
    return out
  }

  feed (chunk: Buffer): void {
    if (this.failed) throw new PemError('PEM_ERR_BAD_FRAME', 'stream already failed')
    let rest = chunk
    if (this.skipping > 0) { // chunks is empty while a skip is still pending (next() dropped all of it)
      const n = Math.min(this.skipping, rest.length)
      this.skipping -= n
      rest = rest.subarray(n)
    }
    if (this.assembly !== null) rest = this.fill(rest)
    if (rest.length > 0) { this.chunks.push(rest); this.buffered += rest.length }
  }

  /** The next complete frame, or null until more bytes are fed. */
  next (): Frame | null {
    if (this.failed) throw new PemError('PEM_ERR_BAD_FRAME', 'stream already failed')
    try {
      if (this.assembled !== null) { const f = this.assembled; this.assembled = null; return f }
      if (this.assembly !== null) return null
      if (this.skipping > 0) this.drop()
      if (this.skipping > 0) return null
      if (this.head === null) {
        if (this.buffered < FRAME_HEADER_BYTES) return null
        const h = readHeader(this.peek(FRAME_HEADER_BYTES), 0, this.maxBytes)
        if (this.gate?.(h) === 'skip') {
          this.skipping = h.length + 4
          this.drop()
          return { op: h.op, flags: h.flags, id: h.id, body: undefined, skipped: true }
        }
        this.head = h
      }
      const need = this.head.length + 4
      if (this.buffered < need) {
        if (this.pool !== undefined && need >= POOLED_FRAME_BYTES) this.startAssembly(need)
        return null
      }
      const f = decodeFrame(this.take(need), this.maxBytes)
      this.head = null
      return f
    } catch (err) {
      this.failed = true
      throw err
    }
  }

  /** Drops buffered bytes of the frame being skipped. */
  private drop (): void {
    while (this.skipping > 0 && this.chunks.length > 0) {
      const first = this.chunks[0]
      const n = Math.min(first.length, this.skipping)
      if (n === first.length) this.chunks.shift(); else this.chunks[0] = first.subarray(n)
      this.buffered -= n
      this.skipping -= n
    }
  }

  /** Moves the bytes buffered so far (fewer than the frame's) into a pooled buffer of the frame's size. */
  private startAssembly (need: number): void {
    const a = (this.pool as FramePool).take(need)
    let at = 0
    for (const c of this.chunks) at += c.copy(a, at)
    this.chunks = []
    this.buffered = 0
    this.assembly = a
    this.filled = at
  }

  /** Copies the next bytes of the frame being assembled; returns what is left of `chunk` after it. */
  private fill (chunk: Buffer): Buffer {
    const a = this.assembly as Buffer
    const n = Math.min(chunk.length, a.length - this.filled)
    chunk.copy(a, this.filled, 0, n)
    this.filled += n
    if (this.filled < a.length) return chunk.subarray(chunk.length)
    this.assembly = null
    this.head = null
    try {
      this.assembled = { ...decodeFrame(a, this.maxBytes), pooled: a }
    } catch (err) {
      this.failed = true
      throw err
    }
    return chunk.subarray(n)
  }

  private peek (n: number): Buffer {
    if (this.chunks[0].length < n) this.chunks = [Buffer.concat(this.chunks)]
    return this.chunks[0]
  }

  private take (n: number): Buffer {
    const first = this.chunks[0]
    let out: Buffer
    if (first.length >= n) {
      out = first.subarray(0, n)
      if (first.length === n) this.chunks.shift(); else this.chunks[0] = first.subarray(n)
    } else {
      const all = Buffer.concat(this.chunks)
      out = all.subarray(0, n)
      this.chunks = all.length > n ? [all.subarray(n)] : []
    }
    this.buffered -= n
    return out
  }
}
