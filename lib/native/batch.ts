// Batch plumbing shared by the AEAD and compression wrappers: argument checks, splitting a large batch into
// contiguous per-thread groups, and settling the groups' promises into one result or the first failing block.
import { PemError } from '../wire/errors'
import { fromNative } from './errors'

export const EMPTY = new Uint8Array(0)

/** Batches below this many bytes run synchronously on the calling thread (queueing costs more than they take). */
export const SYNC_BELOW_BYTES = 64 * 1024
/** Groups are never cut smaller than this: each group is one task on the engine pool. */
export const MIN_GROUP_BYTES = 64 * 1024

export interface Group { start: number, end: number }

export function isBytes (x: unknown): x is Uint8Array { return x instanceof Uint8Array }

export function checkBytes (name: string, x: unknown): asserts x is Uint8Array {
  if (!(x instanceof Uint8Array)) throw new PemError('ENGINE_ERR_BAD_ARGUMENT', `${name} must be a Uint8Array`)
}

export function checkLens (name: string, x: unknown): asserts x is Uint32Array {
  if (!(x instanceof Uint32Array)) throw new PemError('ENGINE_ERR_BAD_ARGUMENT', `${name} must be a Uint32Array`)
}

export function badLength (detail: string): PemError { return new PemError('ENGINE_ERR_BAD_LENGTH', detail) }

/** Sum of lens[i] + add per block. */
export function sumLens (lens: Uint32Array, add = 0): number {
  let s = 0
  for (let i = 0; i < lens.length; i++) s += lens[i] + add
  return s
}

/** Same memory, same length: the in-place form. */
export function sameView (a: Uint8Array, b: Uint8Array): boolean {
  return a.buffer === b.buffer && a.byteOffset === b.byteOffset && a.length === b.length && a.length > 0
}

export function overlaps (a: Uint8Array, b: Uint8Array): boolean {
  if (a.buffer !== b.buffer || a.length === 0 || b.length === 0) return false
  return a.byteOffset < b.byteOffset + b.length && b.byteOffset < a.byteOffset + a.length
}

/** Splits blocks into at most `parts` contiguous groups of about equal bytes (lens[i] + perBlock each). */
export function splitBlocks (lens: Uint32Array, total: number, parts: number, perBlock = 0): Group[] {
  const groups: Group[] = []
  if (parts <= 1 || lens.length <= 1) return [{ start: 0, end: lens.length }]
  let start = 0
  let acc = 0
  for (let i = 0; i < lens.length; i++) {
    acc += lens[i] + perBlock
    if (acc >= (total * (groups.length + 1)) / parts && groups.length < parts - 1 && i + 1 < lens.length) {
      groups.push({ start, end: i + 1 })
      start = i + 1
    }
  }
  groups.push({ start, end: lens.length })
  return groups
}

/** How many groups a batch of `total` bytes is worth on `threads` threads. */
export function groupCount (total: number, blocks: number, threads: number): number {
  return Math.max(1, Math.min(threads, blocks, Math.floor(total / MIN_GROUP_BYTES)))
}

/**
 * Waits for every group. All resolve: the sum of their results. Some fail: the error of the lowest failing block,
 * its `index` rebased to the whole batch (groups after it may have completed; the failing block's output is wiped).
 */
export async function settle (groups: Group[], runs: Array<Promise<number>>): Promise<number> {
  const done = await Promise.allSettled(runs)
  let total = 0
  let worst: { err: PemError, index: number } | null = null
  done.forEach((r, g) => {
    if (r.status === 'fulfilled') { total += r.value; return }
    const err = fromNative(r.reason)
    const local = (err as PemError & { index?: number }).index
    const index = typeof local === 'number' ? local + groups[g].start : Number.MAX_SAFE_INTEGER
    if (typeof local === 'number') (err as PemError & { index?: number }).index = index
    if (worst === null || index < worst.index) worst = { err, index }
  })
  if (worst !== null) throw (worst as { err: PemError }).err
  return total
}

/** Runs a sync native call as a settled promise (so callers see one async shape). */
export async function asPromise (fn: () => number): Promise<number> {
  try {
    return fn()
  } catch (err) {
    throw fromNative(err)
  }
}
