// One encrypted backing file (lib/wire/FORMAT.md §4) as pemfs serves it, shared by every handle on its inode: the
// header, the backing size (kept here, so getattr and reads need no fstat), and a read/write lock. Reads pread the
// slots a range covers in one call and open them at spd in one batch; writes read-modify-write partial blocks and
// seal every block of the request in one batch; truncation re-seals the new last block. Holes stay holes.
import fs from 'node:fs'
import type { ClusterClient, Decision } from './client'
import { RwLock } from './rw-lock'
import { PemError } from '../wire/errors'
import { blockRange, cipherSize, parseSlot, plainSize, recordOffset, slotOffset, type FileHeader } from '../wire/file-format'

/** encrypted: has a header; empty: 0 bytes (gets a header at its first write); plaintext: left from before the guard. */
export type Kind = 'encrypted' | 'empty' | 'plaintext'

const POOL_BYTES = 160 * 1024 // a FUSE request's 128 KiB of slots plus overhead
const pool: Buffer[] = []
const take = (n: number): Buffer => n <= POOL_BYTES ? (pool.pop() ?? Buffer.allocUnsafe(POOL_BYTES)).subarray(0, n) : Buffer.allocUnsafe(n)
const give = (b: Buffer): void => { if (b.buffer.byteLength === POOL_BYTES && b.byteOffset === 0 && pool.length < 16) pool.push(Buffer.from(b.buffer, 0, POOL_BYTES)) }

export async function pread (fd: number, buf: Buffer, pos: number): Promise<number> {
  let got = 0
  while (got < buf.length) {
    const n = await new Promise<number>((resolve, reject) => fs.read(fd, buf, got, buf.length - got, pos + got, (e, r) => e === null ? resolve(r) : reject(e)))
    if (n === 0) break
    got += n
  }
  return got
}

async function pwritev (fd: number, bufs: Buffer[], pos: number): Promise<void> {
  let rest = bufs
  while (rest.length > 0) {
    const n = await new Promise<number>((resolve, reject) => fs.writev(fd, rest, pos, (e, r) => e === null ? resolve(r) : reject(e)))
    pos += n
    let skip = n
    while (rest.length > 0 && skip >= rest[0].length) { skip -= rest[0].length; rest = rest.slice(1) }
    if (skip > 0) rest = [rest[0].subarray(skip), ...rest.slice(1)]
  }
}

const ftruncate = async (fd: number, size: number): Promise<void> =>
  await new Promise((resolve, reject) => fs.ftruncate(fd, size, e => e === null ? resolve() : reject(e)))

export class CryptFile {
  readonly lock = new RwLock()
  refs = 0
  private warned = false

  constructor (
    readonly id: string, // dev:ino
    readonly fd: number, // backing fd of the inode, read-write
    private readonly client: ClusterClient,
    public kind: Kind,
    public header: FileHeader | null,
    public headerBytes: Buffer | null,
    public size: number // backing bytes
  ) {}

  /** Plaintext size applications see (plaintext files: their own size). */
  plainSize (): number { return this.kind === 'plaintext' ? this.size : this.header === null ? 0 : plainSize(this.header, this.size) }

  /** Plaintext left from before the guard point: readable as it is, never written (docs/PEMFS.md). */
  private refuseWrite (what: string, real: string): never {
    throw Object.assign(new Error(`${real}: ${what} refused: plaintext file left from before the guard point is read-only (truncate it to 0 or replace it to encrypt)`), { code: 'EROFS', syscall: what })
  }

  noteLegacy (real: string): void {
    if (this.warned) return
    this.warned = true
    process.stderr.write(`${new Date().toISOString()} ${real}: plaintext file without the encrypted header, served read-only as it is\n`)
  }

  /** Writes a new header from spd into an empty file (the caller holds the lock exclusively). */
  private async ensureHeader (d: Decision, real: string): Promise<FileHeader> {
    if (this.kind === 'plaintext') this.refuseWrite('write', real)
    if (this.header !== null && this.headerBytes !== null) return this.header
    const { bytes, header } = await this.client.newHeader(d)
    await pwritev(this.fd, [bytes], 0)
    await ftruncate(this.fd, bytes.length)
    this.header = header; this.headerBytes = bytes; this.size = bytes.length; this.kind = 'encrypted'
    return header
  }

  async create (d: Decision, real: string): Promise<void> {
    await this.lock.exclusive(async () => { await this.ensureHeader(d, real) })
  }

  /**
   * Plaintext of `blocks` (ascending, each inside the file): each contiguous run of slots is read with one pread and
   * all records are opened in one call. A hole is null (zeros).
   */
  private async openBlocks (d: Decision, h: FileHeader, blocks: number[]): Promise<Map<number, Buffer | null>> {
    const out = new Map<number, Buffer | null>()
    const nums: number[] = []
    const records: Buffer[] = []
    const bufs: Buffer[] = []
    try {
      for (let i = 0; i < blocks.length;) {
        let j = i + 1
        while (j < blocks.length && blocks[j] === blocks[j - 1] + 1) j++
        const from = slotOffset(h, blocks[i])
        const buf = take(Math.max(0, Math.min(slotOffset(h, blocks[j - 1] + 1), this.size) - from))
        bufs.push(buf)
        const n = await pread(this.fd, buf, from)
        if (n !== buf.length) throw new PemError('PEM_ERR_TRUNCATED', `the backing file ended at ${from + n} while reading block ${blocks[i]}`)
        for (let b = blocks[i]; b < blocks[i] + (j - i); b++) {
          const at = (b - blocks[i]) * h.slotBytes
          const slot = parseSlot(h, b, buf.subarray(at, Math.min(at + h.slotBytes, buf.length)))
          if (slot.kind === 'hole') out.set(b, null); else { nums.push(b); records.push(slot.record) }
        }
        i = j
      }
      if (nums.length > 0) {
        const plain = await this.client.openBlocks(d, this.headerBytes as Buffer, nums, records)
        nums.forEach((b, i) => out.set(b, plain[i]))
      }
      return out
    } finally { for (const b of bufs) give(b) }
  }

  /** Seals blocks and writes their records; records that follow each other on disk go out in one pwritev. */
  private async sealAndWrite (d: Decision, h: FileHeader, nums: number[], parts: Buffer[]): Promise<void> {
    if (nums.length === 0) return
    const records = await this.client.sealBlocks(d, this.headerBytes as Buffer, nums, parts)
    for (let i = 0; i < records.length;) {
      const at = recordOffset(h, nums[i], records[i])
      let end = at + records[i].length
      let j = i + 1
      while (j < records.length && recordOffset(h, nums[j], records[j]) === end) end += records[j++].length
      await pwritev(this.fd, records.slice(i, j), at)
      i = j
    }
  }

  async read (d: Decision, out: Buffer, len: number, pos: number): Promise<number> {
    return await this.lock.shared(async () => {
      if (this.kind === 'plaintext') return await pread(this.fd, out.subarray(0, len), pos)
      const h = this.header
      if (h === null) return 0
      const end = Math.min(plainSize(h, this.size), pos + len)
      if (end <= pos) return 0
      const { first, count } = blockRange(h, pos, end - pos)
      const blocks = await this.openBlocks(d, h, Array.from({ length: count }, (_, i) => first + i))
      const B = h.blockBytes
      for (let b = first; b < first + count; b++) {
        const s = Math.max(pos, b * B)
        const e = Math.min(end, (b + 1) * B)
        const p = blocks.get(b) ?? null
        const have = p === null ? 0 : Math.max(0, Math.min(e, b * B + p.length) - s)
        if (have > 0) (p as Buffer).copy(out, s - pos, s - b * B, s - b * B + have)
        if (have < e - s) out.fill(0, s - pos + have, e - pos)
      }
      return end - pos
    })
  }

  /** Block b's new plaintext of `len` bytes: its old bytes (or zeros) with [s, e) of the file taken from `data` at `dataPos`. */
  private patch (b: number, B: number, len: number, old: Buffer | null | undefined, data: Buffer, dataPos: number, s: number, e: number, scratch: Buffer[]): Buffer {
    if (s === b * B && e - s === len) return data.subarray(s - dataPos, e - dataPos)
    const part = take(len)
    scratch.push(part)
    const keep = old === null || old === undefined ? 0 : Math.min(old.length, len)
    if (keep > 0) (old as Buffer).copy(part, 0, 0, keep)
    part.fill(0, keep)
    if (e > s) data.copy(part, s - b * B, s - dataPos, e - dataPos)
    return part
  }

  async write (d: Decision, real: string, data: Buffer, len: number, pos: number): Promise<number> {
    if (len === 0) return 0
    return await this.lock.exclusive(async () => {
      const h = await this.ensureHeader(d, real)
      const B = h.blockBytes
      const oldPlain = plainSize(h, this.size)
      const end = pos + len
      const newPlain = Math.max(oldPlain, end)
      const { first, count } = blockRange(h, pos, len)
      const last = first + count - 1
      const oldBlocks = Math.ceil(oldPlain / B)
      // Only the file's last block may be short: an old short last block before this write grows to a full block.
      const grow = oldPlain % B !== 0 && oldBlocks - 1 < first ? oldBlocks - 1 : -1
      const need = new Set<number>()
      if (grow >= 0) need.add(grow)
      if (pos > first * B && first < oldBlocks) need.add(first)
      if (end < Math.min(oldPlain, (last + 1) * B)) need.add(last)
      const old = await this.openBlocks(d, h, [...need].sort((a, b) => a - b))
      const nums: number[] = []
      const parts: Buffer[] = []
      const scratch: Buffer[] = []
      try {
        if (grow >= 0) { nums.push(grow); parts.push(this.patch(grow, B, B, old.get(grow), data, pos, 0, 0, scratch)) }
        for (let b = first; b <= last; b++) {
          const blen = Math.min(B, newPlain - b * B)
          nums.push(b)
          parts.push(this.patch(b, B, blen, old.get(b), data, pos, Math.max(pos, b * B), Math.min(end, b * B + blen), scratch))
        }
        await this.sealAndWrite(d, h, nums, parts)
      } finally { for (const b of scratch) give(b) }
      if (newPlain > oldPlain) this.size = cipherSize(h, newPlain)
      return len
    })
  }

  async truncate (d: Decision, real: string, size: number): Promise<void> {
    await this.lock.exclusive(async () => {
      if (this.kind !== 'encrypted' && size === 0) { await ftruncate(this.fd, 0); this.size = 0; this.kind = 'empty'; return }
      const h = await this.ensureHeader(d, real)
      const B = h.blockBytes
      const oldPlain = plainSize(h, this.size)
      if (size === oldPlain) return
      const nums: number[] = []
      const parts: Buffer[] = []
      const scratch: Buffer[] = []
      try {
        if (size < oldPlain) {
          // Cut inside block k: it is re-sealed short (the new last block); the rest of the file goes.
          const k = Math.floor(size / B)
          if (size % B !== 0) {
            const old = await this.openBlocks(d, h, [k])
            nums.push(k); parts.push(this.patch(k, B, size % B, old.get(k), Buffer.alloc(0), 0, 0, 0, scratch))
          }
          await ftruncate(this.fd, cipherSize(h, size))
          await this.sealAndWrite(d, h, nums, parts)
        } else {
          // Growing: an old short last block becomes full (or the new short last block); a new short last block is
          // sealed zeros; the slots between stay holes.
          const k = Math.floor(oldPlain / B)
          if (oldPlain % B !== 0) {
            const old = await this.openBlocks(d, h, [k])
            nums.push(k); parts.push(this.patch(k, B, Math.min(B, size - k * B), old.get(k), Buffer.alloc(0), 0, 0, 0, scratch))
          }
          const kNew = Math.floor(size / B)
          if (size % B !== 0 && (oldPlain % B === 0 || kNew > k)) {
            nums.push(kNew); parts.push(this.patch(kNew, B, size % B, null, Buffer.alloc(0), 0, 0, 0, scratch))
          }
          await this.sealAndWrite(d, h, nums, parts)
          await ftruncate(this.fd, cipherSize(h, size))
        }
      } finally { for (const b of scratch) give(b) }
      this.size = cipherSize(h, size)
    })
  }
}
