// Reusable data-path buffers (DESIGN §8: pooled, not allocated per block), shared by spd's data service, the
// channel's frame assembly and pemfs's encrypted files. Sizes come in classes four per doubling (4 KiB, 5 KiB,
// 6 KiB, 7 KiB, 8 KiB, 10 KiB, ...), so a buffer wastes at most a fifth of itself and a 4 KiB write never holds a
// 160 KiB buffer; the free lists together keep at most `maxBytes`, anything beyond is left to the GC.
import { PemError } from '../wire/errors'

const MIN_CLASS = 4096

/** The class (allocation size) a request for `bytes` gets: the smallest of m·2^k, m ∈ {4,5,6,7}, k ≥ 10, ≥ bytes. */
export function sizeClass (bytes: number): number {
  if (bytes <= MIN_CLASS) return MIN_CLASS
  const step = 2 ** (Math.ceil(Math.log2(bytes)) - 3) // an eighth of the next power of two: classes are 4..8 steps of it
  return Math.ceil(bytes / step) * step
}

export interface PoolOptions {
  /** Bytes the free lists may hold at once (default 16 MiB). */
  maxBytes?: number
}

export class BufferPool {
  private readonly free = new Map<number, ArrayBuffer[]>()
  /** Every ArrayBuffer this pool allocated (only those come back), and those now on a free list. */
  private readonly ours = new WeakSet<ArrayBuffer>()
  private readonly idle = new Set<ArrayBuffer>()
  private readonly maxBytes: number
  private idleBytes = 0

  constructor (opts: PoolOptions = {}) {
    this.maxBytes = opts.maxBytes ?? 16 * 1024 * 1024
  }

  /** Bytes held on the free lists now. */
  get retained (): number { return this.idleBytes }

  /** A buffer of exactly `bytes` (uninitialised), a view of a pooled allocation of sizeClass(bytes). */
  take (bytes: number): Buffer {
    const size = sizeClass(bytes)
    const ab = this.free.get(size)?.pop()
    if (ab === undefined) {
      const b = Buffer.allocUnsafeSlow(size)
      this.ours.add(b.buffer as ArrayBuffer)
      return b.subarray(0, bytes)
    }
    this.idle.delete(ab)
    this.idleBytes -= size
    return Buffer.from(ab, 0, bytes)
  }

  /**
   * Returns a buffer from take() (any view of it) for reuse; the caller must not touch it afterwards. Foreign buffers
   * (not from this pool) are left to the GC; giving one back twice is a bug and throws.
   */
  give (b: Uint8Array): void {
    const ab = b.buffer as ArrayBuffer
    const size = ab.byteLength
    if (this.idle.has(ab)) throw new PemError('PEM_ERR_UNKNOWN', 'buffer given back to the pool twice')
    if (!this.ours.has(ab) || this.idleBytes + size > this.maxBytes) return
    let list = this.free.get(size)
    if (list === undefined) { list = []; this.free.set(size, list) }
    list.push(ab)
    this.idle.add(ab)
    this.idleBytes += size
  }
}

/**
 * The process's data-path pool: frames the channel assembles, spd's batches and scratch, pemfs's write copies and
 * slot reads. One pool, so a buffer given back by one of them serves the next of any.
 */
export const dataPool = new BufferPool()
