// Data service handlers: FileHeader's headers, BlocksSeal, BlocksOpen. Each checks the host's grant, decodes the file header
// the host sends (the grant's first header binds it to that file), and runs the batch through the engine
// asynchronously (the event loop never waits on a batch).
// Output batches come from the data pool and go back to it once the channel has written the reply (PooledReply).
// Record layout and AAD: lib/wire/file-format.ts; byte counts: lib/wire/FORMAT.md §4.
import crypto from 'node:crypto'
import { dataPool } from '../../channel/buffer-pool'
import { PooledReply } from '../../channel/channel'
import { compressBatch, decompressBatch, type Codec } from '../../native/compress'
import { PemError } from '../../wire/errors'
import {
  AAD_BYTES, NONCE_BYTES, TAG_BYTES, TRAILER_BYTES, checkRecord, decodeHeader, encodeHeader, isCompressed, makeHeader,
  writeAad, writeTrailer, type FileHeader
} from '../../wire/file-format'
import type { BlocksBody, BlocksReply, FileHeaderBody, FileHeaderReply, HostContext } from '../../wire/packets'
import type { DataService } from '../keys'

const SEALED_OVERHEAD = NONCE_BYTES + TAG_BYTES

/** FileHeader's headers (handlers/file-key.ts adds the keys a host-placement request asks for). */
export function newHeaders (ds: DataService, body: FileHeaderBody, ctx: HostContext): FileHeaderReply {
  const g = ds.grants.check(body.grant, ctx.host, null, true)
  const count = body.count ?? 1
  const ids = crypto.randomBytes(16 * count)
  for (let i = 0; i < count; i++) ds.grants.noteIssued(ctx.host, g.key, ids.subarray(16 * i, 16 * (i + 1)))
  const headers = Array.from({ length: count }, (_, i) => encodeHeader(makeHeader({
    fileId: ids.subarray(16 * i, 16 * (i + 1)),
    keyName: g.key,
    keyVersion: ds.newestVersion(g.key),
    cipher: ds.cipher,
    compression: g.compression,
    blockBytes: body.blockBytes
  })))
  return count === 1 ? { header: headers[0] } : { header: headers[0], more: headers.slice(1) }
}

/** The grant, the header, that the header names the granted key, and that the grant serves this file (or now does). */
export function begin (ds: DataService, body: { grant: string, header: Buffer }, ctx: HostContext, seal: boolean): FileHeader {
  const g = ds.grants.check(body.grant, ctx.host, null, seal)
  const h = decodeHeader(body.header)
  if (h.keyName !== g.key) throw new PemError('PEM_ERR_KEY_NOT_GRANTED', `the file is under key '${h.keyName}', the grant is for '${g.key}'`)
  ds.grants.bindFile(g, h.fileId)
  return h
}

function aadOf (h: FileHeader, blocks: number[], plainLens: number[]): Buffer {
  const aad = dataPool.take(blocks.length * AAD_BYTES)
  for (let i = 0; i < blocks.length; i++) writeAad(h, blocks[i], h.keyVersion, plainLens[i], aad, i * AAD_BYTES)
  return aad
}

/** Engine errors name a block by batch index; hosts get the block number and our code. */
function blockError (err: unknown, blocks: number[]): PemError {
  const e = PemError.from(err)
  const i = (e as PemError & { index?: number }).index
  const n = typeof i === 'number' ? blocks[i] : undefined
  if (e.code === 'ENGINE_ERR_AUTH') return new PemError('PEM_ERR_AUTH_FAILED_BLOCK', `block ${n ?? '?'} failed authentication`)
  return n === undefined ? e : new PemError(e.code, `block ${n}: ${e.message}`)
}

export async function handleSeal (ds: DataService, body: BlocksBody, ctx: HostContext): Promise<PooledReply> {
  const h = begin(ds, body, ctx, true)
  const { blocks, lens, data } = body
  const n = blocks.length
  for (let i = 0; i < n; i++) {
    if (lens[i] < 1 || lens[i] > h.blockBytes) throw new PemError('PEM_ERR_BAD_ARGUMENT', `block ${blocks[i]}: ${lens[i]} bytes, blocks are 1..${h.blockBytes}`)
  }
  const key = ds.fileKey(h.keyName, h.keyVersion, h.fileId)
  const payloadLens = new Uint32Array(lens)
  const scratch: Buffer[] = []
  try {
    let input: Buffer = data
    if (h.compression !== 'none') input = await compressFull(h, lens, data, payloadLens, scratch)
    const aad = aadOf(h, blocks, lens)
    scratch.push(aad)
    let payload = 0
    for (let i = 0; i < n; i++) payload += payloadLens[i]
    const sealed = payload + n * SEALED_OVERHEAD
    const out = dataPool.take(sealed + n * TRAILER_BYTES)
    try {
      await ds.engine(h.cipher).sealBatch(key, input, payloadLens, aad, AAD_BYTES, out.subarray(0, sealed))
    } catch (err) { dataPool.give(out); throw blockError(err, blocks) }
    // Sealed blocks are back to back; move each to its record position (last first) and write its trailer.
    const outLens = new Array<number>(n)
    let end = out.length
    let src = sealed
    for (let i = n - 1; i >= 0; i--) {
      const len = payloadLens[i] + SEALED_OVERHEAD
      src -= len
      end -= len + TRAILER_BYTES
      if (end !== src) out.copyWithin(end, src, src + len)
      writeTrailer(out, end + len, { sealedLen: len, plainLen: lens[i], keyVersion: h.keyVersion })
      outLens[i] = len + TRAILER_BYTES
    }
    const reply: BlocksReply = { lens: outLens, data: out }
    return new PooledReply(reply, [out])
  } finally {
    for (const b of scratch) dataPool.give(b)
  }
}

/**
 * Compresses every full block (a short block is the file's last and stays raw, so the file size gives the plaintext
 * size). Returns the payloads back to back and sets payloadLens; a block that does not shrink stays raw.
 */
async function compressFull (h: FileHeader, lens: number[], data: Buffer, payloadLens: Uint32Array, scratch: Buffer[]): Promise<Buffer> {
  const codec = h.compression as Codec
  const packed = dataPool.take(data.length)
  const payloads = dataPool.take(data.length)
  scratch.push(packed, payloads)
  const n = lens.length
  const outLens = new Uint32Array(n)
  // Runs of full blocks are contiguous in data: one compress call per run.
  let off = 0
  for (let i = 0; i < n;) {
    let j = i
    let runBytes = 0
    while (j < n && lens[j] === h.blockBytes) runBytes += lens[j++]
    if (j > i) {
      await compressBatch(codec, data.subarray(off, off + runBytes), new Uint32Array(lens.slice(i, j)), packed.subarray(off, off + runBytes), outLens.subarray(i, j))
      off += runBytes
      i = j
    } else { off += lens[i]; i++ }
  }
  // packed holds each run's compressed blocks packed from the run's start; gather payloads in block order.
  let w = 0
  let runStart = 0
  let p = 0
  let inOff = 0
  for (let i = 0; i < n; i++) {
    if (i === 0 || lens[i - 1] !== h.blockBytes) { runStart = inOff; p = runStart }
    if (outLens[i] > 0) {
      packed.copy(payloads, w, p, p + outLens[i])
      p += outLens[i]
      payloadLens[i] = outLens[i]
    } else {
      data.copy(payloads, w, inOff, inOff + lens[i])
    }
    w += payloadLens[i]
    inOff += lens[i]
  }
  return payloads.subarray(0, w)
}

export async function handleOpen (ds: DataService, body: BlocksBody, ctx: HostContext): Promise<PooledReply> {
  const h = begin(ds, body, ctx, false)
  const { blocks, lens, data } = body
  const n = blocks.length
  const trailers = new Array<ReturnType<typeof checkRecord>>(n)
  const sealedLens = new Uint32Array(n)
  // Check every trailer, then close the gaps they leave so the sealed parts are back to back (in the request buffer).
  let r = 0
  let w = 0
  let plainTotal = 0
  let anyCompressed = false
  for (let i = 0; i < n; i++) {
    const t = checkRecord(h, blocks[i], data.subarray(r, r + lens[i]))
    trailers[i] = t
    sealedLens[i] = t.sealedLen
    if (w !== r) data.copyWithin(w, r, r + t.sealedLen)
    r += lens[i]
    w += t.sealedLen
    plainTotal += t.plainLen
    anyCompressed ||= isCompressed(t)
  }
  const key = ds.fileKey(h.keyName, h.keyVersion, h.fileId)
  const plainLens = trailers.map(t => t.plainLen)
  const aad = aadOf(h, blocks, plainLens)
  const out = dataPool.take(plainTotal)
  const payloads = anyCompressed ? dataPool.take(w - n * SEALED_OVERHEAD) : out
  let replied = false
  try {
    try {
      await ds.engine(h.cipher).openBatch(key, data.subarray(0, w), sealedLens, aad, AAD_BYTES, payloads)
    } catch (err) { throw blockError(err, blocks) }
    if (anyCompressed) await decompressRuns(h, blocks, trailers, payloads, out)
    const reply: BlocksReply = { lens: plainLens, data: out }
    replied = true
    return new PooledReply(reply, [out])
  } finally {
    dataPool.give(aad)
    if (payloads !== out) dataPool.give(payloads)
    if (!replied) dataPool.give(out)
  }
}

/** Raw payloads are copied; each run of compressed ones is decompressed in one call, straight into the reply. */
async function decompressRuns (h: FileHeader, blocks: number[], trailers: Array<ReturnType<typeof checkRecord>>, payloads: Buffer, out: Buffer): Promise<void> {
  let inOff = 0
  let outOff = 0
  for (let i = 0; i < trailers.length;) {
    const comp = isCompressed(trailers[i])
    let j = i
    let inBytes = 0
    let outBytes = 0
    while (j < trailers.length && isCompressed(trailers[j]) === comp) {
      inBytes += trailers[j].sealedLen - SEALED_OVERHEAD
      outBytes += trailers[j].plainLen
      j++
    }
    if (comp) {
      const run = trailers.slice(i, j)
      const outLens = new Uint32Array(run.map(t => t.plainLen))
      try {
        await decompressBatch(h.compression as Codec, payloads.subarray(inOff, inOff + inBytes), new Uint32Array(run.map(t => t.sealedLen - SEALED_OVERHEAD)), out.subarray(outOff, outOff + outBytes), outLens)
      } catch (err) { throw blockError(err, blocks.slice(i, j)) }
      for (let k = 0; k < run.length; k++) {
        if (outLens[k] !== run[k].plainLen) throw new PemError('ENGINE_ERR_COMPRESS', `block ${blocks[i + k]} decompressed to ${outLens[k]} bytes, not ${run[k].plainLen}`)
      }
    } else {
      payloads.copy(out, outOff, inOff, inOff + inBytes)
    }
    inOff += inBytes
    outOff += outBytes
    i = j
  }
}
