// One encrypted backing file (lib/wire/FORMAT.md §4) as pemfs serves it, shared by every handle on its inode: the
// header, the backing size (kept here, so getattr and reads need no fstat), a read/write lock, sequential readahead
// and write-behind. Reads pread the slots a range covers and open them at spd in one batch; a reader that goes on
// where it stopped gets the next chunks opened ahead of it. Writes patch partial blocks (the file's last written
// block is kept, so appends need no round trip), then seal and write in the background in arrival order: the call
// returns once the data is copied; a failure is told once to every handle that has written (its fsync or close), and
// reads and truncations first wait for the writes before them. Truncation re-seals the new last block, through a redo
// record when it must overwrite a record in place (crash consistency, lib/wire/FORMAT.md §4.8). Holes stay holes.
import fs from 'node:fs'
import { REDECIDE, type ClusterClient, type Decision } from './client'
import { RwLock } from './rw-lock'
import { dataPool } from '../channel/buffer-pool'
import { failpoint } from '../server/failpoint'
import { crc32 } from '../wire/crc32'
import { PemError } from '../wire/errors'
import { LIMITS } from '../wire/packets'
import { blockRange, cipherSize, parseSlot, plainSize, recordOffset, slotOffset, type FileHeader } from '../wire/file-format'
import { pemfsLog } from './log'

/** encrypted: has a header; empty: 0 bytes (gets a header at its first write); plaintext: left from before the guard. */
export type Kind = 'encrypted' | 'empty' | 'plaintext'

/** Runs one data call with the handle's decision; deciding again and retrying when the grant is gone (crypt-io.ts). */
export type WithGrant = <T>(fn: (d: Decision) => Promise<T>) => Promise<T>

/**
 * Plaintext bytes opened ahead of a sequential reader per chunk, and chunks kept in flight ahead of it. Measured
 * (3 fio reads of 256 MiB each): 2 × 512 KiB 82–94 MiB/s, 2 × 1 MiB 105–123, 3 × 1 MiB 110–145, 4 × 1 MiB 116–126.
 */
export const READAHEAD_CHUNK_BYTES = 1024 * 1024
export const READAHEAD_CHUNKS = 3
/** Plaintext bytes of one file's writes sealed and written in the background at once; a write beyond it waits. */
export const WRITE_BEHIND_BYTES = 2 * 1024 * 1024
/**
 * How long a background seal keeps retrying when no server can take it (timeouts, servers marked down, overload):
 * the application was already told its write succeeded, so a cluster that stalls or restarts for a few seconds must
 * not lose it. Longer than one request timeout (2 s) plus the time a server stays marked down (5 s), so at least one
 * retry reaches a server that came back. A foreground call (read, open) still fails after one try per server.
 */
export const WRITE_BEHIND_PERSIST_MS = 10_000
const PERSIST_BACKOFF_MS = [100, 250, 500, 1000]

/** Seal batches of one file at spd at once; writes queued behind them are sent together, up to SEAL_BATCH_BYTES. */
export const SEALS_IN_FLIGHT = 2
export const SEAL_BATCH_BYTES = 512 * 1024

/** Slots read on the JS thread when this small: a thread-pool trip costs 70–100 µs, a cached 4 KiB pread ~5 µs. */
const SYNC_PREAD_BYTES = 16 * 1024

async function pread (fd: number, buf: Buffer, pos: number): Promise<number> {
  let got = 0
  while (got < buf.length) {
    const n = await new Promise<number>((resolve, reject) => fs.read(fd, buf, got, buf.length - got, pos + got, (e, r) => e === null ? resolve(r) : reject(e)))
    if (n === 0) break
    got += n
  }
  return got
}

/**
 * `call()`, tried again after REDECIDE-class failures (with a short backoff) until WRITE_BEHIND_PERSIST_MS is spent
 * or the result is no longer `wanted()`.
 */
async function persisting<T> (call: () => Promise<T>, wanted: () => boolean): Promise<T> {
  const end = Date.now() + WRITE_BEHIND_PERSIST_MS
  for (let attempt = 0; ; attempt++) {
    try {
      return await call()
    } catch (err) {
      const wait = PERSIST_BACKOFF_MS[Math.min(attempt, PERSIST_BACKOFF_MS.length - 1)]
      if (!(err instanceof PemError) || !REDECIDE.has(err.code) || Date.now() + wait > end || !wanted()) throw err
      await new Promise(resolve => setTimeout(resolve, wait))
    }
  }
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

const fdatasync = async (fd: number): Promise<void> =>
  await new Promise((resolve, reject) => fs.fdatasync(fd, e => e === null ? resolve() : reject(e)))

// ---- the redo record of a truncation (lib/wire/FORMAT.md §4.8) ----

/**
 * The last bytes of a file whose truncation is not finished. Read where a record trailer's plaintext length would
 * be, "PEMF" is 1.3 GB, more than any block: no complete file ends like this.
 */
const REDO_MAGIC = Buffer.from('PEMFredo', 'latin1')
/** u64 target size | u32 entry bytes | u32 CRC-32 of the entries and both fields | magic. */
const REDO_FOOTER_BYTES = 24
/** Before each entry's bytes: u64 file offset | u32 length. */
const REDO_ENTRY_BYTES = 12

/** A truncation's writes in place and the backing size it ends with. */
export interface Redo { target: number, writes: Array<{ at: number, bytes: Buffer }> }

function encodeRedo (r: Redo): Buffer {
  const entries = r.writes.reduce((n, w) => n + REDO_ENTRY_BYTES + w.bytes.length, 0)
  const b = Buffer.alloc(entries + REDO_FOOTER_BYTES)
  let at = 0
  for (const w of r.writes) {
    b.writeBigUInt64BE(BigInt(w.at), at)
    b.writeUInt32BE(w.bytes.length, at + 8)
    w.bytes.copy(b, at + REDO_ENTRY_BYTES)
    at += REDO_ENTRY_BYTES + w.bytes.length
  }
  b.writeBigUInt64BE(BigInt(r.target), at)
  b.writeUInt32BE(entries, at + 8)
  b.writeUInt32BE(crc32(b.subarray(0, at + 12)), at + 12)
  REDO_MAGIC.copy(b, at + 16)
  return b
}

/**
 * The redo record a crash left at the end of the encrypted file open on `fd` (`size` bytes), or null. One that is
 * damaged or does not fit the file (entries outside [header, target), the record not wholly beyond the target, more
 * than the two records a truncation writes) is not taken for one: the file then reads as damaged (EIO).
 */
export function readRedo (fd: number, h: FileHeader, size: number): Redo | null {
  if (size < h.headerBytes + REDO_FOOTER_BYTES) return null
  const foot = Buffer.alloc(REDO_FOOTER_BYTES)
  if (fs.readSync(fd, foot, 0, foot.length, size - foot.length) !== foot.length || !foot.subarray(16).equals(REDO_MAGIC)) return null
  const target = Number(foot.readBigUInt64BE(0))
  const entries = foot.readUInt32BE(8)
  const start = size - REDO_FOOTER_BYTES - entries
  if (target < h.headerBytes || start < target || entries > 2 * (REDO_ENTRY_BYTES + h.slotBytes)) return null
  const b = Buffer.alloc(entries + 12)
  if (fs.readSync(fd, b, 0, b.length, start) !== b.length || crc32(b) !== foot.readUInt32BE(12)) return null
  const writes: Redo['writes'] = []
  for (let at = 0; at < entries;) {
    if (at + REDO_ENTRY_BYTES > entries) return null
    const to = Number(b.readBigUInt64BE(at))
    const len = b.readUInt32BE(at + 8)
    at += REDO_ENTRY_BYTES
    if (at + len > entries || to < h.headerBytes || to + len > target) return null
    writes.push({ at: to, bytes: b.subarray(at, at + len) })
    at += len
  }
  return { target, writes }
}

/**
 * Finishes a truncation a crash interrupted (CryptFiles, when it loads a file that ends with a redo record): its
 * records are written in place again, synced, and the file is cut to the truncation's size, which drops the redo
 * record with the rest. Doing it again is harmless, so a crash in here is finished the same way next time.
 */
export function finishTruncation (fd: number, redo: Redo, real: string): void {
  for (const w of redo.writes) {
    for (let done = 0; done < w.bytes.length;) done += fs.writeSync(fd, w.bytes, done, w.bytes.length - done, w.at + done)
  }
  fs.fdatasyncSync(fd)
  failpoint('pemfs:redo:after-rewrite')
  fs.ftruncateSync(fd, redo.target)
  pemfsLog().info({ path: real, bytes: redo.target }, 'finished a truncation a crash interrupted')
}

type Plain = Map<number, Buffer | null> // block -> plaintext (null: a hole, zeros)
/** Opened blocks: views of pooled reply frames until release() hands those back (then the views must not be read). */
interface Opened { plain: Plain, release: () => void }
const NOTHING_TO_RELEASE = (): void => {}
/** A readahead chunk: readers using it hold `users`; once dropped from `ahead` and unused, its frames go back. */
interface Chunk { opened: Promise<Opened>, users: number, dropped: boolean, released: boolean }
/**
 * One write's blocks waiting to be sealed; `finish` runs once its records are on disk (or failed, or dropped).
 * `failures`: the file's failure count when the write was patched (on top of every write queued before it).
 */
interface Waiting { grant: WithGrant, h: FileHeader, nums: number[], parts: Buffer[], bytes: number, failures: number, release: () => void, finish: () => void }

/**
 * What one open handle knows of its file's background write failures, like Linux's errseq_t per open file: the
 * file counts its failures; a handle notes the count when it opens and each time it is told. crypt-io.ts's CryptHandle.
 */
export interface Writer {
  wrote: boolean // has written through this handle: only such handles are told of failures
  failuresSeen: number // the file's failure count at open or at the last failure this handle was told of
}

export class CryptFile {
  readonly lock = new RwLock()
  refs = 0
  private warned = false
  // write-behind: jobs in flight, their plaintext bytes, the chain that keeps their disk writes in order
  private readonly jobs = new Set<Promise<void>>()
  private readonly waiting: Waiting[] = [] // queued, not yet sent to spd
  private sealing = 0 // batches at spd
  private behind = 0
  private chain: Promise<void> = Promise.resolve()
  /** Background writes that failed so far (the writes dropped behind one are not counted again), and the latest error. */
  failures = 0
  private lastFailure: unknown = null
  /** A write failed or was dropped: size and the kept last block may be ahead of the disk until drain() re-reads them. */
  private stale = false
  /** Plaintext of the last block the latest write wrote (in tailBuf): the next append patches it without spd. */
  private tail: { block: number, plain: Buffer } | null = null
  private tailBuf: Buffer | null = null
  // readahead: the block a sequential reader reads next, and chunks (by index) opened or being opened
  private nextBlock = 0
  private readonly ahead = new Map<number, Chunk>()

  constructor (
    readonly id: string, // dev:ino
    readonly fd: number, // backing fd of the inode, read-write
    private readonly client: ClusterClient,
    public kind: Kind,
    public header: FileHeader | null,
    public headerBytes: Buffer | null,
    public size: number // backing bytes, counting writes still in the background
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
    pemfsLog().info({ path: real }, 'plaintext file without the encrypted header, served read-only as it is')
  }

  /** Writes a new header from spd into an empty file (the caller holds the lock exclusively). */
  private async ensureHeader (grant: WithGrant, real: string): Promise<FileHeader> {
    if (this.kind === 'plaintext') this.refuseWrite('write', real)
    if (this.header !== null && this.headerBytes !== null) return this.header
    const { bytes, header } = await grant(async d => await this.client.newHeader(d))
    fs.writeSync(this.fd, bytes, 0, bytes.length, 0) // 45 bytes or so: a thread-pool trip would cost more
    fs.ftruncateSync(this.fd, bytes.length)
    this.header = header; this.headerBytes = bytes; this.size = bytes.length; this.kind = 'encrypted'
    return header
  }

  async create (grant: WithGrant, real: string): Promise<void> {
    await this.lock.exclusive(async () => { await this.ensureHeader(grant, real) })
  }

  // ---- write-behind ----

  /**
   * Waits until every background write queued so far is on disk (or failed); does not throw. After a failure the
   * size and the kept last block come from the disk again (synchronously: no write may slip in between).
   */
  async drain (): Promise<void> {
    if (this.jobs.size > 0) await Promise.allSettled([...this.jobs])
    if (this.stale && this.jobs.size === 0) {
      this.stale = false
      this.tail = null
      this.size = fs.fstatSync(this.fd).size
    }
  }

  /**
   * fsync and flush (close) of handle `w`: drain(), then, if `w` has written, throw the latest background failure it
   * was not told of yet — once per handle, so every handle that wrote hears of it (its own data may be what was lost)
   * and a reader neither hears of it nor takes it from the writers.
   */
  async settle (w: Writer): Promise<void> {
    await this.drain()
    if (!w.wrote || w.failuresSeen === this.failures) return
    w.failuresSeen = this.failures
    throw this.lastFailure
  }

  /**
   * Queues the blocks of one write to be sealed and written after every earlier background write, without waiting;
   * `release` gets the buffers back once they are sealed. The caller holds the lock exclusively; beyond
   * WRITE_BEHIND_BYTES in flight it waits for the oldest writes.
   */
  private async queue (grant: WithGrant, h: FileHeader, nums: number[], parts: Buffer[], bytes: number, failures: number, release: () => void): Promise<void> {
    let finish = (): void => {}
    const done = new Promise<void>(resolve => { finish = resolve })
    void done.then(() => { this.jobs.delete(done); this.behind -= bytes }) // before any drain() sees it settle
    this.jobs.add(done)
    this.behind += bytes
    this.waiting.push({ grant, h, nums, parts, bytes: parts.reduce((n, p) => n + p.length, 0), failures, release, finish })
    this.pump()
    // Jobs finish in queue order (their disk writes are chained), so waiting for the oldest is waiting for the first
    // to finish. Promise.race over all of them added a reaction to every pending job per write: with 512 queued 4 KiB
    // writes that held ~50 MiB of heap and buffers (8 s of 4 KiB random writes: daemon peak 128 -> 87 MiB, and
    // 3,704 -> 4,016 IOPS, one A/B run).
    while (this.behind > WRITE_BEHIND_BYTES && this.jobs.size > 0) await (this.jobs.values().next().value as Promise<void>)
  }

  /**
   * Sends queued writes to spd, at most SEALS_IN_FLIGHT batches per file at once: writes that queue up behind them
   * (ascending blocks, up to SEAL_BATCH_BYTES) go out together as one batch. Records reach the disk in queue order.
   *
   * A write patched before a failure was patched on top of the failed one (its blocks, the size it set, the kept
   * last block), so once a write fails, every write queued before the failure is dropped, not written: written
   * alone it could leave the disk inconsistent (a block after an old short last block the failed write was to grow
   * makes that block unreadable). Their handles are told of the failure like its own. Writes after it start from
   * the disk again (drain()) and go on normally.
   */
  private pump (): void {
    while (this.sealing < SEALS_IN_FLIGHT && this.waiting.length > 0) {
      const first = this.waiting.shift() as Waiting
      if (first.failures !== this.failures) { this.drop([first]); continue }
      const batch = [first]
      let blocks = batch[0].nums.length
      let bytes = batch[0].bytes
      for (let next = this.waiting[0]; next !== undefined; next = this.waiting[0]) {
        const lastNum = batch[batch.length - 1].nums[batch[batch.length - 1].nums.length - 1]
        if (next.failures !== first.failures || next.nums[0] <= lastNum || blocks + next.nums.length > LIMITS.blocksPerBatch || bytes + next.bytes > SEAL_BATCH_BYTES) break
        batch.push(this.waiting.shift() as Waiting)
        blocks += next.nums.length
        bytes += next.bytes
      }
      const nums = batch.length === 1 ? batch[0].nums : batch.flatMap(w => w.nums)
      const parts = batch.length === 1 ? batch[0].parts : batch.flatMap(w => w.parts)
      const h = first.h
      const header = this.headerBytes as Buffer
      const current = (): boolean => first.failures === this.failures
      this.sealing++
      const sealed = persisting(async () => await first.grant(async d => await this.client.sealBlocks(d, header, nums, parts)), current)
      const after = (): void => { this.sealing--; for (const w of batch) w.release(); this.pump() }
      sealed.then(after, after)
      const job = this.chain.then(async () => {
        if (!current()) { this.stale = true; sealed.then(s => s.release(), () => {}); return }
        const s = await sealed
        try { await this.writeRecords(h, nums, s.parts) } finally { s.release() }
      })
      this.chain = job.catch(err => { this.failures++; this.lastFailure = err; this.stale = true })
      void this.chain.then(() => { for (const w of batch) w.finish() })
    }
  }

  /** Writes dropped before they reach spd (see pump()): finished in queue order, after the disk writes before them. */
  private drop (batch: Waiting[]): void {
    this.stale = true
    for (const w of batch) w.release()
    void this.chain.then(() => { for (const w of batch) w.finish() })
  }

  /** Records that follow each other on disk go out in one pwritev. */
  private async writeRecords (h: FileHeader, nums: number[], records: Buffer[]): Promise<void> {
    for (let i = 0; i < records.length;) {
      const at = recordOffset(h, nums[i], records[i])
      let end = at + records[i].length
      let j = i + 1
      while (j < records.length && recordOffset(h, nums[j], records[j]) === end) end += records[j++].length
      await pwritev(this.fd, records.slice(i, j), at)
      i = j
    }
  }

  // ---- reading ----

  /**
   * Plaintext of `blocks` (ascending, each inside the file): each contiguous run of slots is read with one pread and
   * all records are opened in one call. A hole is null (zeros). Background writes must be on disk (drain()).
   */
  private async openBlocks (grant: WithGrant, h: FileHeader, blocks: number[], size = this.size): Promise<Opened> {
    const out: Plain = new Map()
    const nums: number[] = []
    const records: Buffer[] = []
    const bufs: Buffer[] = []
    try {
      for (let i = 0; i < blocks.length;) {
        let j = i + 1
        while (j < blocks.length && blocks[j] === blocks[j - 1] + 1) j++
        const from = slotOffset(h, blocks[i])
        const buf = dataPool.take(Math.max(0, Math.min(slotOffset(h, blocks[j - 1] + 1), size) - from))
        bufs.push(buf)
        const n = buf.length <= SYNC_PREAD_BYTES ? fs.readSync(this.fd, buf, 0, buf.length, from) : await pread(this.fd, buf, from)
        if (n !== buf.length) throw new PemError('PEM_ERR_TRUNCATED', `the backing file ended at ${from + n} while reading block ${blocks[i]}`)
        for (let b = blocks[i]; b < blocks[i] + (j - i); b++) {
          const at = (b - blocks[i]) * h.slotBytes
          const slot = parseSlot(h, b, buf.subarray(at, Math.min(at + h.slotBytes, buf.length)))
          if (slot.kind === 'hole') out.set(b, null); else { nums.push(b); records.push(slot.record) }
        }
        i = j
      }
      if (nums.length === 0) return { plain: out, release: NOTHING_TO_RELEASE }
      const header = this.headerBytes as Buffer
      const opened = await grant(async d => await this.client.openBlocks(d, header, nums, records))
      nums.forEach((b, i) => out.set(b, opened.parts[i]))
      return { plain: out, release: opened.release }
    } finally { for (const b of bufs) dataPool.give(b) }
  }

  /** Takes chunk k out of the readahead; its frames go back to the pool once no reader uses it. */
  private dropChunk (k: number): void {
    const c = this.ahead.get(k)
    if (c === undefined) return
    this.ahead.delete(k)
    c.dropped = true
    this.unuse(c, 0)
  }

  private unuse (c: Chunk, readers: number): void {
    c.users -= readers
    if (!c.dropped || c.users > 0 || c.released) return
    c.released = true
    c.opened.then(o => o.release(), () => {})
  }

  private dropAhead (): void { for (const k of [...this.ahead.keys()]) this.dropChunk(k) }

  /**
   * Plaintext of blocks first .. first+count-1 of a file of `total` blocks. A read that starts where the last one
   * ended, or inside a chunk already opened ahead, is sequential: its blocks come from readahead chunks, and the
   * chunks after them are opened now (the kernel's own readahead may hand over reads a little out of order). A chunk
   * that fails (damage further on, a lost grant) is dropped and the read opens exactly its own blocks.
   */
  private async fetch (grant: WithGrant, h: FileHeader, first: number, count: number, total: number): Promise<Opened> {
    const exact = Array.from({ length: count }, (_, i) => first + i)
    const per = Math.max(1, Math.floor(READAHEAD_CHUNK_BYTES / h.blockBytes))
    const k0 = Math.floor(first / per)
    const k1 = Math.floor((first + count - 1) / per)
    const sequential = first === this.nextBlock || this.ahead.has(k0)
    this.nextBlock = Math.max(sequential ? this.nextBlock : 0, first + count)
    if (!sequential) { this.dropAhead(); this.nextBlock = first + count; return await this.openBlocks(grant, h, exact) }
    for (const k of [...this.ahead.keys()]) if (k < k0 - 1) this.dropChunk(k)
    const size = this.size
    for (let k = k0; k <= k1 + READAHEAD_CHUNKS && k * per < total; k++) {
      if (this.ahead.has(k)) continue
      const blocks = Array.from({ length: Math.min(per, total - k * per) }, (_, i) => k * per + i)
      const opened = this.openBlocks(grant, h, blocks, size)
      opened.catch(() => {}) // a chunk nobody waits for may fail unobserved; a reader that needs it falls back below
      this.ahead.set(k, { opened, users: 0, dropped: false, released: false })
    }
    // This read uses chunks k0..k1 until its caller is done copying (release), so none of them is reused before.
    const used: Chunk[] = []
    for (let k = k0; k <= k1; k++) { const c = this.ahead.get(k) as Chunk; c.users++; used.push(c) }
    const done = (): void => { for (const c of used) this.unuse(c, 1) }
    const out: Plain = new Map()
    for (let k = k0; k <= k1; k++) {
      const c = used[k - k0]
      let m: Plain
      try { m = (await c.opened).plain } catch {
        if (this.ahead.get(k) === c) this.dropChunk(k)
        done()
        return await this.openBlocks(grant, h, exact)
      }
      for (const b of exact) if (m.has(b)) out.set(b, m.get(b) as Buffer | null)
    }
    return { plain: out, release: done }
  }

  async read (grant: WithGrant, out: Buffer, len: number, pos: number): Promise<number> {
    return await this.lock.shared(async () => {
      if (this.kind === 'plaintext') return await pread(this.fd, out.subarray(0, len), pos)
      await this.drain() // the slots of writes still in the background are not on disk yet
      const h = this.header
      if (h === null) return 0
      const plainTotal = plainSize(h, this.size)
      const end = Math.min(plainTotal, pos + len)
      if (end <= pos) return 0
      const { first, count } = blockRange(h, pos, end - pos)
      const opened = await this.fetch(grant, h, first, count, Math.ceil(plainTotal / h.blockBytes))
      const B = h.blockBytes
      try {
        for (let b = first; b < first + count; b++) {
          const s = Math.max(pos, b * B)
          const e = Math.min(end, (b + 1) * B)
          const p = opened.plain.get(b) ?? null
          const have = p === null ? 0 : Math.max(0, Math.min(e, b * B + p.length) - s)
          if (have > 0) (p as Buffer).copy(out, s - pos, s - b * B, s - b * B + have)
          if (have < e - s) out.fill(0, s - pos + have, e - pos)
        }
      } finally { opened.release() }
      return end - pos
    })
  }

  // ---- writing ----

  /** Block b's new plaintext of `len` bytes: its old bytes (or zeros) with [s, e) of the file taken from `data` at `dataPos`. */
  private patch (b: number, B: number, len: number, old: Buffer | null | undefined, data: Buffer, dataPos: number, s: number, e: number, scratch: Buffer[]): Buffer {
    if (s === b * B && e - s === len) return data.subarray(s - dataPos, e - dataPos)
    const part = dataPool.take(len)
    scratch.push(part)
    const keep = old === null || old === undefined ? 0 : Math.min(old.length, len)
    if (keep > 0) (old as Buffer).copy(part, 0, 0, keep)
    part.fill(0, keep)
    if (e > s) data.copy(part, s - b * B, s - dataPos, e - dataPos)
    return part
  }

  /** Old plaintext of `need`: the kept last block when that is all, else opened from disk after the background writes. */
  private async oldBlocks (grant: WithGrant, h: FileHeader, need: number[]): Promise<Opened> {
    const t = this.tail
    if (need.length === 0) return { plain: new Map(), release: NOTHING_TO_RELEASE }
    if (t !== null && need.length === 1 && need[0] === t.block) return { plain: new Map([[t.block, t.plain]]), release: NOTHING_TO_RELEASE }
    await this.drain()
    return await this.openBlocks(grant, h, need)
  }

  private keepTail (block: number, plain: Buffer, blockBytes: number): void {
    if (this.tailBuf === null || this.tailBuf.length < blockBytes) this.tailBuf = Buffer.allocUnsafeSlow(blockBytes)
    plain.copy(this.tailBuf)
    this.tail = { block, plain: this.tailBuf.subarray(0, plain.length) }
  }

  /**
   * Writes `len` bytes of `data` at `pos`, or, when `append`, at the end of the file as it is under the lock: an
   * O_APPEND handle's write lands at the true end even when the kernel's idea of the size was stale (docs/PEMFS.md
   * "O_APPEND"). Returns the bytes taken.
   */
  async write (grant: WithGrant, real: string, data: Buffer, len: number, at: number, append = false): Promise<number> {
    if (len === 0) return 0
    return await this.lock.exclusive(async () => {
      if (this.stale) await this.drain() // after a failure: patch on top of what is on disk
      const pos = append ? this.plainSize() : at
      const failures = this.failures
      this.dropAhead()
      const h = await this.ensureHeader(grant, real)
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
      const old = await this.oldBlocks(grant, h, [...need].sort((a, b) => a - b))
      // The caller's buffer is reused once we return: the blocks are sealed from our own copy.
      const copy = dataPool.take(len)
      data.copy(copy, 0, 0, len)
      const nums: number[] = []
      const parts: Buffer[] = []
      const scratch: Buffer[] = [copy]
      try {
        if (grow >= 0) { nums.push(grow); parts.push(this.patch(grow, B, B, old.plain.get(grow), copy, pos, 0, 0, scratch)) }
        for (let b = first; b <= last; b++) {
          const blen = Math.min(B, newPlain - b * B)
          nums.push(b)
          parts.push(this.patch(b, B, blen, old.plain.get(b), copy, pos, Math.max(pos, b * B), Math.min(end, b * B + blen), scratch))
        }
      } catch (err) { for (const b of scratch) dataPool.give(b); throw err } finally { old.release() } // patch() copied what it kept
      this.keepTail(last, parts[parts.length - 1], B)
      if (newPlain > oldPlain) this.size = cipherSize(h, newPlain)
      await this.queue(grant, h, nums, parts, len, failures, () => { for (const b of scratch) dataPool.give(b) })
      return len
    })
  }

  /**
   * Cut: the block the new size ends inside is re-sealed short (the new last block); the rest goes. Growth: an old
   * short last block is re-sealed full (or longer, if the new size ends inside it), a new short last block is sealed
   * zeros, the slots in between stay holes. Either way at most one record on disk is replaced: block `k`, the block
   * the kept bytes end inside.
   */
  async truncate (grant: WithGrant, real: string, size: number): Promise<void> {
    await this.lock.exclusive(async () => {
      await this.drain()
      this.dropAhead()
      this.tail = null
      if (this.kind !== 'encrypted' && size === 0) { await ftruncate(this.fd, 0); this.size = 0; this.kind = 'empty'; return }
      const h = await this.ensureHeader(grant, real)
      const B = h.blockBytes
      const oldPlain = plainSize(h, this.size)
      if (size === oldPlain) return
      const keep = Math.min(size, oldPlain)
      const k = Math.floor(keep / B)
      const kNew = Math.floor(size / B)
      const nums: number[] = []
      const parts: Buffer[] = []
      const scratch: Buffer[] = []
      try {
        if (keep % B !== 0) {
          const old = await this.openBlocks(grant, h, [k])
          try { nums.push(k); parts.push(this.patch(k, B, Math.min(B, size - k * B), old.plain.get(k), Buffer.alloc(0), 0, 0, 0, scratch)) } finally { old.release() }
        }
        if (size > oldPlain && size % B !== 0 && (keep % B === 0 || kNew > k)) {
          nums.push(kNew); parts.push(this.patch(kNew, B, size % B, null, Buffer.alloc(0), 0, 0, 0, scratch))
        }
        await this.resize(grant, h, nums, parts, cipherSize(h, size), keep % B !== 0)
      } finally { for (const b of scratch) dataPool.give(b) }
      this.size = cipherSize(h, size)
    })
  }

  /**
   * Writes the records of `nums` and gives the backing file `target` bytes, so that a crash at any point leaves the
   * file as it was or as the truncation makes it, with every byte that was durable below the new size (FORMAT.md
   * §4.8). Records beyond the old end and a cut or growth by whole slots are single steps. Replacing block k's
   * record (`inPlace`) is not: the new record overlaps the old one (a short record starts at the slot start, a full
   * one fills the slot), and the two layouts hold two sizes, so no order of plain writes keeps the block readable
   * throughout. It goes through a redo record instead: the new records and the target size, written beyond both
   * ends of the file and synced; then the records in place, synced; then the cut to `target`, which drops the redo
   * record. A crash before the redo record is complete leaves the old file (its end is only read as a redo record
   * when whole: CRC); after it, the next load finishes the truncation (finishTruncation).
   */
  private async resize (grant: WithGrant, h: FileHeader, nums: number[], parts: Buffer[], target: number, inPlace: boolean): Promise<void> {
    if (nums.length > 0) {
      const header = this.headerBytes as Buffer
      const s = await grant(async d => await this.client.sealBlocks(d, header, nums, parts))
      try {
        if (inPlace) {
          const redo = encodeRedo({ target, writes: nums.map((b, i) => ({ at: recordOffset(h, b, s.parts[i]), bytes: s.parts[i] })) })
          await pwritev(this.fd, [redo], Math.max(this.size, target))
          await fdatasync(this.fd)
          failpoint('pemfs:truncate:after-redo')
        }
        await this.writeRecords(h, nums, s.parts)
        if (inPlace) {
          await fdatasync(this.fd)
          failpoint('pemfs:truncate:after-rewrite')
        }
      } finally { s.release() }
    }
    await ftruncate(this.fd, target)
  }
}
