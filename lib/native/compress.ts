// Per-block compression over the addon (zstd, lz4, zlib) with caller-owned buffers; large batches use all cores.
// A block that does not shrink gets outLens[i] = 0 and nothing in out: store it raw. Formats: native/compress.cc
import { PemError } from '../wire/errors'
import {
  SYNC_BELOW_BYTES, asPromise, badLength, checkBytes, checkLens, groupCount, overlaps, settle, splitBlocks, sumLens
} from './batch'
import { raw, type RawCodec } from './binding'
import { call } from './errors'
import { CRYPTO_THREADS, MAX_BLOCK_BYTES } from './crypto-engine'

export type Codec = RawCodec
export const CODECS: readonly Codec[] = ['zstd', 'lz4', 'zlib']
/** zstd: its level (3); lz4: acceleration (1 = best ratio of the fast mode); zlib: 1..9 (6). */
export const DEFAULT_LEVEL: Readonly<Record<Codec, number>> = { zstd: 3, lz4: 1, zlib: 6 }

export interface CodecOptions { level?: number, threads?: number, syncBelowBytes?: number }

function checkCodec (codec: unknown): asserts codec is Codec {
  if (!CODECS.includes(codec as Codec)) throw new PemError('ENGINE_ERR_BAD_ARGUMENT', `unknown codec ${String(codec)}`)
}

function checkArgs (codec: Codec, input: Uint8Array, lens: Uint32Array, out: Uint8Array, outLens: Uint32Array, outNeed: (inSum: number) => number): number {
  checkCodec(codec)
  checkBytes('input', input)
  checkLens('lens', lens)
  checkBytes('out', out)
  checkLens('outLens', outLens)
  if (outLens.length !== lens.length) throw badLength('outLens.length must equal lens.length')
  for (let i = 0; i < lens.length; i++) if (lens[i] > MAX_BLOCK_BYTES) throw badLength(`block ${i} is longer than MAX_BLOCK_BYTES`)
  const sum = sumLens(lens)
  if (input.length !== sum) throw badLength(`input must hold exactly sum(lens) = ${sum} bytes`)
  if (out.length < outNeed(sum)) throw badLength(`out must hold at least ${outNeed(sum)} bytes`)
  if (overlaps(input, out)) throw new PemError('ENGINE_ERR_BAD_ARGUMENT', 'input and out overlap')
  return sum
}

/** Compresses each block; returns bytes written to out (blocks packed back to back; raw blocks take none). */
export function compressBatchSync (codec: Codec, input: Uint8Array, lens: Uint32Array, out: Uint8Array, outLens: Uint32Array, opts: CodecOptions = {}): number {
  checkArgs(codec, input, lens, out, outLens, s => s)
  return call(() => raw.compress(codec, opts.level ?? DEFAULT_LEVEL[codec], input, lens, out, outLens))
}

export async function compressBatch (codec: Codec, input: Uint8Array, lens: Uint32Array, out: Uint8Array, outLens: Uint32Array, opts: CodecOptions = {}): Promise<number> {
  const sum = checkArgs(codec, input, lens, out, outLens, s => s)
  const level = opts.level ?? DEFAULT_LEVEL[codec]
  if (sum < (opts.syncBelowBytes ?? SYNC_BELOW_BYTES)) return await asPromise(() => raw.compress(codec, level, input, lens, out, outLens))
  // Each group compresses into the slice of out that matches its input slice; the groups are then packed.
  const groups = splitBlocks(lens, sum, groupCount(sum, lens.length, opts.threads ?? CRYPTO_THREADS))
  const starts: number[] = []
  const runs: Array<Promise<number>> = []
  let off = 0
  for (const g of groups) {
    const gl = lens.subarray(g.start, g.end)
    const gIn = sumLens(gl)
    starts.push(off)
    runs.push(raw.compressAsync(codec, level, input.subarray(off, off + gIn), gl, out.subarray(off, off + gIn), outLens.subarray(g.start, g.end)))
    off += gIn
  }
  await settle(groups, runs)
  let packed = 0
  groups.forEach((g, i) => {
    const written = sumLens(outLens.subarray(g.start, g.end))
    if (starts[i] !== packed) out.copyWithin(packed, starts[i], starts[i] + written)
    packed += written
  })
  return packed
}

/**
 * Decompresses each block into its slot of out (slot i is outLens[i] bytes, after the slots before it); outLens[i]
 * becomes the size block i decompressed to. Returns the total. Garbage or a block larger than its slot:
 * ENGINE_ERR_COMPRESS with `index`.
 */
export function decompressBatchSync (codec: Codec, input: Uint8Array, lens: Uint32Array, out: Uint8Array, outLens: Uint32Array): number {
  checkArgs(codec, input, lens, out, outLens, () => sumLens(outLens))
  return call(() => raw.decompress(codec, input, lens, out, outLens))
}

export async function decompressBatch (codec: Codec, input: Uint8Array, lens: Uint32Array, out: Uint8Array, outLens: Uint32Array, opts: Omit<CodecOptions, 'level'> = {}): Promise<number> {
  checkArgs(codec, input, lens, out, outLens, () => sumLens(outLens))
  const rooms = sumLens(outLens)
  if (rooms < (opts.syncBelowBytes ?? SYNC_BELOW_BYTES)) return await asPromise(() => raw.decompress(codec, input, lens, out, outLens))
  const groups = splitBlocks(outLens, rooms, groupCount(rooms, lens.length, opts.threads ?? CRYPTO_THREADS))
  const runs: Array<Promise<number>> = []
  let inOff = 0
  let outOff = 0
  for (const g of groups) {
    const gl = lens.subarray(g.start, g.end)
    const gol = outLens.subarray(g.start, g.end)
    const gIn = sumLens(gl)
    const gOut = sumLens(gol)
    runs.push(raw.decompressAsync(codec, input.subarray(inOff, inOff + gIn), gl, out.subarray(outOff, outOff + gOut), gol))
    inOff += gIn
    outOff += gOut
  }
  return await settle(groups, runs)
}
