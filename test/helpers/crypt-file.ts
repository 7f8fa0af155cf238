// Test helper: reads and writes whole files in the encrypted layout through the host client, the way pemfs does —
// header first, blocks at slotOffset/recordOffset, holes left unwritten — and counts the slots each read touches.
import fs from 'node:fs'
import type { ClusterClient, Decision } from '../../lib/pem-fs/client'
import {
  HEADER_MAX_BYTES, blockRange, cipherSize, decodeHeader, parseSlot, plainSize, recordOffset, slotOffset, type FileHeader
} from '../../lib/wire/file-format'

export interface Opened { header: FileHeader, bytes: Buffer, size: number }

export function readHeader (file: string): Opened {
  const fd = fs.openSync(file, 'r')
  try {
    const buf = Buffer.alloc(HEADER_MAX_BYTES)
    const n = fs.readSync(fd, buf, 0, buf.length, 0)
    const header = decodeHeader(buf.subarray(0, n))
    return { header, bytes: buf.subarray(0, header.headerBytes), size: plainSize(header, fs.fstatSync(fd).size) }
  } finally { fs.closeSync(fd) }
}

/**
 * Writes `plain` as the file's content from block `first` on (a new file gets `header` first). Blocks that are all
 * zero and not the last are skipped when `sparse` is set: they stay holes.
 */
export async function writeBlocks (client: ClusterClient, d: Decision, file: string, header: Buffer, first: number, plain: Buffer, sparse = false): Promise<void> {
  const h = decodeHeader(header)
  const nums: number[] = []
  const parts: Buffer[] = []
  for (let off = 0, b = first; off < plain.length; off += h.blockBytes, b++) {
    const part = plain.subarray(off, off + h.blockBytes)
    if (sparse && off + h.blockBytes < plain.length && part.every(x => x === 0)) continue
    nums.push(b); parts.push(part)
  }
  const records = (await client.sealBlocks(d, header, nums, parts)).parts
  const fd = fs.openSync(file, fs.existsSync(file) ? 'r+' : 'w+')
  try {
    if (first === 0) fs.writeSync(fd, header, 0, header.length, 0)
    records.forEach((r, i) => fs.writeSync(fd, r, 0, r.length, recordOffset(h, nums[i], r)))
    const size = cipherSize(h, first * h.blockBytes + plain.length)
    if (fs.fstatSync(fd).size > size) fs.ftruncateSync(fd, size)
  } finally { fs.closeSync(fd) }
}

export interface ReadStats { slotsRead: number[] }

/** Plaintext bytes [offset, offset + length) (clipped to the file's size), reading only the slots they cover. */
export async function readRange (client: ClusterClient, d: Decision, file: string, offset = 0, length = Infinity, stats?: ReadStats): Promise<Buffer> {
  const { header: h, bytes, size } = readHeader(file)
  const end = Math.min(size, offset + length)
  if (end <= offset) return Buffer.alloc(0)
  const { first, count } = blockRange(h, offset, end - offset)
  const fd = fs.openSync(file, 'r')
  const plain = Buffer.alloc(count * h.blockBytes)
  try {
    const nums: number[] = []
    const records: Buffer[] = []
    for (let b = first; b < first + count; b++) {
      const slot = Buffer.alloc(h.slotBytes)
      const n = fs.readSync(fd, slot, 0, slot.length, slotOffset(h, b))
      stats?.slotsRead.push(b)
      const s = parseSlot(h, b, slot.subarray(0, n))
      if (s.kind === 'record') { nums.push(b); records.push(s.record) }
    }
    const opened = nums.length > 0 ? (await client.openBlocks(d, bytes, nums, records)).parts : []
    opened.forEach((p, i) => p.copy(plain, (nums[i] - first) * h.blockBytes))
  } finally { fs.closeSync(fd) }
  const from = offset - first * h.blockBytes
  return plain.subarray(from, from + end - offset)
}
