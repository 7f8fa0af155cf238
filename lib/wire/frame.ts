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
import { isOp } from './opcodes'

export const FRAME_HEADER_BYTES = 10
/** Default largest frame (length field value): a 1 MiB batch of blocks plus its metadata. */
export const MAX_FRAME_BYTES = 4 * 1024 * 1024
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
}

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

/** Check a frame header (the first 10 bytes) before anything is allocated for the body. Returns the total frame size. */
export function checkHeader (buf: Uint8Array, offset: number, maxBytes: number): number {
  const len = ((buf[offset] << 24) >>> 0) + (buf[offset + 1] << 16) + (buf[offset + 2] << 8) + buf[offset + 3]
  if (len < FRAME_HEADER_BYTES - 4) throw new PemError('PEM_ERR_BAD_FRAME', `frame length ${len} is below the header size`)
  if (len > maxBytes) throw new PemError('PEM_ERR_FRAME_TOO_LARGE', `frame of ${len} bytes exceeds the limit of ${maxBytes}`)
  const op = buf[offset + 4]
  if (!isOp(op)) throw new PemError('PEM_ERR_BAD_OPCODE', `unknown opcode 0x${op.toString(16)}`)
  if ((buf[offset + 5] & ~KNOWN_FLAGS) !== 0) throw new PemError('PEM_ERR_BAD_FRAME', `unknown flags 0x${buf[offset + 5].toString(16)}`)
  return len + 4
}

/** Decode one whole frame (header and body, nothing after it). */
export function decodeFrame (buf: Uint8Array, maxBytes = MAX_FRAME_BYTES): Frame {
  if (buf.length < FRAME_HEADER_BYTES) throw new PemError('PEM_ERR_BAD_FRAME', `frame of ${buf.length} bytes is shorter than its header`)
  const total = checkHeader(buf, 0, maxBytes)
  if (total !== buf.length) throw new PemError('PEM_ERR_BAD_FRAME', `frame length field says ${total} bytes, got ${buf.length}`)
  const id = ((buf[6] << 24) >>> 0) + (buf[7] << 16) + (buf[8] << 8) + buf[9]
  return { op: buf[4], flags: buf[5], id, body: unpack(buf.subarray(FRAME_HEADER_BYTES)) }
}

/**
 * Splits a byte stream into frames. push() returns the frames completed by a chunk; a malformed or oversized
 * header throws before its body is buffered, and the splitter is then unusable (the channel must close). With a
 * pool, a frame of POOLED_FRAME_BYTES or more that spans chunks is copied into a buffer from the pool as its bytes
 * arrive (Frame.pooled); whoever is done with the frame may give that buffer back.
 */
export class FrameSplitter {
  private chunks: Buffer[] = []
  private buffered = 0
  private need = 0 // total size of the frame being assembled, 0 = header not yet read
  private failed = false
  private assembly: Buffer | null = null // the pooled buffer the current large frame is copied into
  private filled = 0

  constructor (private readonly maxBytes = MAX_FRAME_BYTES, private readonly pool?: FramePool) {}

  push (chunk: Buffer): Frame[] {
    if (this.failed) throw new PemError('PEM_ERR_BAD_FRAME', 'stream already failed')
    const out: Frame[] = []
    try {
      const rest = this.assembly === null ? chunk : this.fill(chunk, out)
      if (rest.length > 0) { this.chunks.push(rest); this.buffered += rest.length }
      while (this.assembly === null) {
        if (this.need === 0) {
          if (this.buffered < FRAME_HEADER_BYTES) break
          const head = this.peek(FRAME_HEADER_BYTES)
          this.need = checkHeader(head, 0, this.maxBytes)
        }
        if (this.buffered < this.need) {
          if (this.pool !== undefined && this.need >= POOLED_FRAME_BYTES) this.startAssembly()
          break
        }
        out.push(decodeFrame(this.take(this.need), this.maxBytes))
        this.need = 0
      }
    } catch (err) {
      this.failed = true
      throw err
    }
    return out
  }

  /** Moves the bytes buffered so far (fewer than the frame's) into a pooled buffer of the frame's size. */
  private startAssembly (): void {
    const a = (this.pool as FramePool).take(this.need)
    let at = 0
    for (const c of this.chunks) at += c.copy(a, at)
    this.chunks = []
    this.buffered = 0
    this.assembly = a
    this.filled = at
  }

  /** Copies the next bytes of the frame being assembled; returns what is left of `chunk` after it. */
  private fill (chunk: Buffer, out: Frame[]): Buffer {
    const a = this.assembly as Buffer
    const n = Math.min(chunk.length, a.length - this.filled)
    chunk.copy(a, this.filled, 0, n)
    this.filled += n
    if (this.filled < a.length) return chunk.subarray(chunk.length)
    this.assembly = null
    this.need = 0
    out.push({ ...decodeFrame(a, this.maxBytes), pooled: a })
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
