// Online conversion of a guard point's files (issue 19): encrypt plaintext left from before, rekey files under an
// old key version, decrypt to leave. Each file is copied to a temporary name in its own directory and renamed over the
// original through the mount once the copy is verified and the original is known unchanged (docs/PEMFS.md,
// "Converting existing files").
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { decodeHeader, FILE_MAGIC, HEADER_MAX_BYTES, plainSize, type FileHeader } from '../wire/file-format'
import { PemError } from '../wire/errors'
import { raw } from '../native/binding'

export type ConvertMode = 'encrypt' | 'rekey' | 'decrypt'

/** Names that start so are a conversion's temporary copies: reserved, removed by the next run. */
export const TEMP_PREFIX = '.pemfs-convert.'
const TEMP_NAME = /^\.pemfs-convert\.[0-9a-f]{8}\./

const CHUNK_BYTES = 1024 * 1024 // one FUSE write at most
const ZERO_RUN_BYTES = 64 * 1024 // a run of zeros this long (aligned) is left a hole
const ZEROS = Buffer.alloc(ZERO_RUN_BYTES)
const CHANGE_RETRIES = 3

export interface ConvertOptions {
  mode: ConvertMode
  /** The guard point (the mounted directory). */
  mountDir: string
  /** A path that reaches the backing directory from this process (the guard point as it is underneath). */
  backingRoot: string
  /** The backing directory's own path as other processes' descriptors name it (for the open-writer check). */
  backingPath: string
  /** Relative to the guard point: '' for all of it. */
  sub: string
  /** Pids whose descriptors do not count as users of a file (the mount daemon). */
  ignorePids: ReadonlySet<number>
  /** Root converts every file; anyone else only their own. */
  uid: number
  /** Names left alone (relative to the guard point, e.g. the embedded store file). */
  exclude: ReadonlySet<string>
  /** Bytes per second over the whole run; 0: no limit. */
  rateBytes: number
  /** How long a file that another process has open for writing is waited for before it is skipped. */
  waitMs: number
  onFile?: (r: FileResult) => void
  onBytes?: (done: number) => void
}

/** converted; current: nothing to do (any more); plaintext: the policy does not encrypt it; skipped: refused; failed. */
export type FileState = 'converted' | 'current' | 'plaintext' | 'skipped' | 'failed'
export interface FileResult { path: string, state: FileState, bytes: number, reason?: string }

export interface Candidate { rel: string, bytes: number }

export interface Summary {
  mode: ConvertMode
  files: number
  bytes: number
  converted: number
  current: number
  plaintext: number
  skipped: number
  failed: number
  leftoversRemoved: number
  seconds: number
}

interface Snapshot { dev: bigint, ino: bigint, size: bigint, mtimeNs: bigint, ctimeNs: bigint, nlink: bigint }

const snapshot = (s: fs.BigIntStats): Snapshot => ({ dev: s.dev, ino: s.ino, size: s.size, mtimeNs: s.mtimeNs, ctimeNs: s.ctimeNs, nlink: s.nlink })
const sameSnapshot = (a: Snapshot, b: Snapshot): boolean =>
  a.dev === b.dev && a.ino === b.ino && a.size === b.size && a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs && a.nlink === b.nlink

class Retry extends Error {}
class Defer extends Error {}

/** The header of an encrypted file (its first bytes), or undefined for plaintext; a damaged header throws. */
function headerOf (first: Buffer): FileHeader | undefined {
  if (first.length < FILE_MAGIC.length || !first.subarray(0, FILE_MAGIC.length).equals(FILE_MAGIC)) return undefined
  return decodeHeader(first)
}

async function readFirst (fh: fs.promises.FileHandle): Promise<Buffer> {
  const b = Buffer.alloc(HEADER_MAX_BYTES)
  const { bytesRead } = await fh.read(b, 0, b.length, 0)
  return b.subarray(0, bytesRead)
}

async function headerAt (file: string): Promise<FileHeader | undefined> {
  const fh = await fs.promises.open(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW)
  try { return headerOf(await readFirst(fh)) } finally { await fh.close() }
}

/** Processes other than `ignore` that hold one of `paths` open with write access. */
export function writersOf (paths: readonly string[], ignore: ReadonlySet<number>): Array<{ pid: number, command: string }> {
  const out = []
  for (const name of fs.readdirSync('/proc')) {
    const pid = Number(name)
    if (!Number.isInteger(pid) || pid <= 0 || ignore.has(pid) || pid === process.pid) continue
    let fds: string[] = []
    try { fds = fs.readdirSync(`/proc/${pid}/fd`) } catch { continue }
    for (const fd of fds) {
      let link: string
      try { link = fs.readlinkSync(`/proc/${pid}/fd/${fd}`) } catch { continue }
      if (!paths.includes(link)) continue
      let flags = 0
      try { flags = parseInt(/^flags:\s*([0-7]+)/m.exec(fs.readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'))?.[1] ?? '0', 8) } catch { continue }
      if ((flags & 3) !== 0) { // O_WRONLY or O_RDWR
        let command = '?'
        try { command = fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim() } catch {}
        out.push({ pid, command })
        break
      }
    }
  }
  return out
}

/** A temporary name in the same directory that ends with the file's own name (rules by suffix see the same). */
function tempName (base: string): string {
  const prefix = `${TEMP_PREFIX}${crypto.randomBytes(4).toString('hex')}.`
  let tail = base
  while (Buffer.byteLength(prefix + tail) > 255) tail = tail.slice(1)
  return prefix + tail
}

/** Spreads the run's bytes over time: at most `rate` bytes per second since the start. */
class Throttle {
  private readonly started = Date.now()
  private bytes = 0
  constructor (private readonly rate: number) {}
  async take (n: number): Promise<void> {
    this.bytes += n
    if (this.rate <= 0) return
    const due = this.started + this.bytes / this.rate * 1000
    const wait = due - Date.now()
    if (wait > 0) await new Promise(resolve => setTimeout(resolve, wait))
  }
}

export class Converter {
  private readonly throttle: Throttle
  private bytesDone = 0
  private leftovers = 0

  constructor (private readonly o: ConvertOptions) {
    this.throttle = new Throttle(o.rateBytes)
  }

  /** Temporary copies of interrupted runs that plan() removed. */
  get leftoversRemoved (): number { return this.leftovers }

  private mountPath (rel: string): string { return path.join(this.o.mountDir, rel) }
  // A trailing '/' for the root itself: backingRoot may be a /proc/self/fd/N link, which lstat would not follow.
  private backingPath (rel: string): string { return rel === '' || rel === '.' ? this.o.backingRoot + '/' : path.join(this.o.backingRoot, rel) }

  /** Walks the backing tree under `sub`: removes leftover temporary copies, returns the files this mode converts. */
  async plan (): Promise<Candidate[]> {
    const out: Candidate[] = []
    const top = this.backingPath(this.o.sub)
    const st = await fs.promises.lstat(top).catch(() => { throw new PemError('PEM_ERR_NOT_FOUND', `${this.mountPath(this.o.sub)} does not exist`) })
    if (st.isDirectory()) await this.walk(this.o.sub, st.dev, out)
    else if (st.isFile()) await this.consider(this.o.sub, out)
    else throw new PemError('PEM_ERR_BAD_ARGUMENT', `${this.mountPath(this.o.sub)} is neither a directory nor a regular file`)
    return out
  }

  private async walk (rel: string, dev: number, out: Candidate[]): Promise<void> {
    const entries = await fs.promises.readdir(this.backingPath(rel), { withFileTypes: true })
    for (const e of entries.sort((a, b) => a.name < b.name ? -1 : 1)) {
      const child = rel === '' ? e.name : path.join(rel, e.name)
      if (TEMP_NAME.test(e.name)) { await this.removeLeftover(child); continue }
      if (e.isDirectory()) {
        const st = await fs.promises.lstat(this.backingPath(child))
        if (st.dev === dev) await this.walk(child, dev, out) // another file system mounted inside is not this guard point's
      } else if (e.isFile()) await this.consider(child, out)
    }
  }

  private async removeLeftover (rel: string): Promise<void> {
    // Through the mount, so the kernel's view follows; underneath when the policy refuses it (it was ours).
    await fs.promises.unlink(this.mountPath(rel)).catch(async () => await fs.promises.unlink(this.backingPath(rel)))
    this.leftovers++
  }

  private async consider (rel: string, out: Candidate[]): Promise<void> {
    if (this.o.exclude.has(rel)) return
    const fh = await fs.promises.open(this.backingPath(rel), fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW)
    try {
      const st = await fh.stat()
      let header: FileHeader | undefined
      try { header = headerOf(await readFirst(fh)) } catch (err) {
        if (this.o.mode !== 'encrypt') this.report({ path: rel, state: 'failed', bytes: 0, reason: `damaged header: ${PemError.from(err).message}` })
        return // encrypt: a damaged encrypted file is not plaintext
      }
      if (this.o.mode === 'encrypt' ? header !== undefined || st.size === 0 : header === undefined) return // an empty file is an empty encrypted one
      out.push({ rel, bytes: header === undefined ? st.size : plainSize(header, st.size) })
    } finally { await fh.close() }
  }

  /** Converts every candidate, waiting (up to waitMs) for files others have open for writing. */
  async run (files: Candidate[]): Promise<Summary> {
    const started = Date.now()
    const counts: Record<FileState, number> = { converted: 0, current: 0, plaintext: 0, skipped: 0, failed: 0 }
    let deferred: Candidate[] = []
    const deadline = Date.now() + this.o.waitMs
    const attempt = async (c: Candidate, last: boolean): Promise<boolean> => {
      const r = await this.convertOne(c, last)
      if (r === undefined) return false
      counts[r.state]++
      this.report(r)
      return true
    }
    for (const c of files) if (!await attempt(c, false)) deferred.push(c)
    while (deferred.length > 0) {
      const last = Date.now() >= deadline
      if (!last) await new Promise(resolve => setTimeout(resolve, 200))
      const again: Candidate[] = []
      for (const c of deferred) if (!await attempt(c, last)) again.push(c)
      deferred = again
    }
    return { mode: this.o.mode, files: files.length, bytes: this.bytesDone, ...counts, leftoversRemoved: this.leftovers, seconds: (Date.now() - started) / 1000 }
  }

  private report (r: FileResult): void { this.o.onFile?.(r) }

  /** One file to its end state, or undefined to try it again later (another process has it open for writing). */
  private async convertOne (c: Candidate, last: boolean): Promise<FileResult | undefined> {
    for (let i = 0; ; i++) {
      const doneBefore = this.bytesDone
      try {
        return await this.convertFile(c.rel)
      } catch (err) {
        this.bytesDone = doneBefore
        this.o.onBytes?.(this.bytesDone)
        if (err instanceof Defer) return last ? { path: c.rel, state: 'skipped', bytes: 0, reason: err.message } : undefined
        if (err instanceof Retry && i + 1 < CHANGE_RETRIES) continue
        if (err instanceof Retry) return { path: c.rel, state: 'failed', bytes: 0, reason: `${err.message} (${CHANGE_RETRIES} tries)` }
        const e = err as NodeJS.ErrnoException
        if (e.code === 'ENOENT') return { path: c.rel, state: 'current', bytes: 0, reason: 'removed meanwhile' }
        return { path: c.rel, state: 'failed', bytes: 0, reason: e.code !== undefined ? `${e.code}: ${e.message}` : PemError.from(err).message }
      }
    }
  }

  private writers (rel: string): string | undefined {
    const paths = [this.mountPath(rel), path.join(this.o.backingPath, rel)]
    const w = writersOf(paths, this.o.ignorePids)
    return w.length === 0 ? undefined : `open for writing by ${w.map(p => `pid ${p.pid} (${p.command})`).join(', ')}`
  }

  private async convertFile (rel: string): Promise<FileResult> {
    const o = this.o
    const orig = await fs.promises.open(this.backingPath(rel), fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW)
    const dir = path.dirname(rel)
    const tmpRel = path.join(dir, tempName(path.basename(rel)))
    let tmpMade = false
    try {
      const st = await orig.stat({ bigint: true })
      const before = snapshot(st)
      if (!st.isFile()) return { path: rel, state: 'current', bytes: 0, reason: 'no longer a regular file' }
      if (st.nlink > 1n) return { path: rel, state: 'skipped', bytes: 0, reason: `has ${st.nlink} hard links: converting one name would split it from the others (convert by hand: copy to one new file, then link the other names to it)` }
      if (o.uid !== 0 && Number(st.uid) !== o.uid) return { path: rel, state: 'skipped', bytes: 0, reason: `owned by uid ${st.uid}: only root or the owner may convert it` }
      const header = headerOf(await readFirst(orig))
      if (o.mode === 'encrypt' ? header !== undefined || st.size === 0n : header === undefined) return { path: rel, state: 'current', bytes: 0 }
      const busy = this.writers(rel)
      if (busy !== undefined) throw new Defer(busy)

      // The copy: encrypt and rekey write through the mount (its policy and encrypt path decide the new file);
      // decrypt writes the plaintext underneath. Either way the source is read through the mount.
      const throughMount = o.mode !== 'decrypt'
      const tmpWrite = throughMount ? this.mountPath(tmpRel) : this.backingPath(tmpRel)
      const out = await fs.promises.open(tmpWrite, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600)
      tmpMade = true
      let digest: string
      let bytes = 0
      try {
        // Once its first bytes are on disk the copy has the header the policy and spd give it now: stored as
        // plaintext, the policy does not encrypt this file; under the original's key version, it is current.
        const probe = !throughMount ? undefined : async (): Promise<FileResult | undefined> => {
          await out.sync()
          const fresh = await headerAt(this.backingPath(tmpRel))
          if (fresh === undefined) return { path: rel, state: 'plaintext', bytes: 0, reason: `the policy stores its copy (${path.basename(tmpRel)}) as plaintext for this caller: it does not encrypt this file, or a rule names the file so exactly that the copy's name is not under it` }
          if (header !== undefined && fresh.keyName === header.keyName && fresh.keyVersion === header.keyVersion) return { path: rel, state: 'current', bytes: 0 }
          return undefined
        }
        const copied = await this.copy(this.mountPath(rel), out, probe)
        if ('state' in copied) return copied
        ;({ digest, bytes } = copied)
        await out.sync()
      } finally { await out.close() }
      const target = throughMount ? this.mountPath(tmpRel) : this.backingPath(tmpRel)
      if (o.uid === 0) await fs.promises.lchown(target, Number(st.uid), Number(st.gid))
      copyXattrs(this.backingPath(rel), target) // ACLs among them, before chmod sets the mode bits they share
      await fs.promises.chmod(target, Number(st.mode) & 0o7777) // after chown, which clears set-id bits
      await fs.promises.utimes(target, Number(st.atimeNs) / 1e9, Number(st.mtimeNs) / 1e9)

      // Verify: the new file reads back the same bytes through the mount and is stored as this mode says (an empty
      // encrypted file gets its header at its first write).
      const newHeader = await headerAt(this.backingPath(tmpRel))
      if (o.mode === 'decrypt' ? newHeader !== undefined : newHeader === undefined && bytes > 0) {
        throw new PemError('PEM_ERR_BAD_HEADER', `the copy of ${rel} is stored ${o.mode === 'decrypt' ? 'encrypted' : 'as plaintext'}`)
      }
      const check = await this.hashOf(this.mountPath(tmpRel))
      if (check !== digest) throw new PemError('PEM_ERR_AUTH_FAILED_BLOCK', `the copy of ${rel} does not read back the same bytes`)

      // The original must be as it was when the copy began, and nobody may be writing it.
      const now = snapshot(await orig.stat({ bigint: true }))
      const named = snapshot(await fs.promises.lstat(this.backingPath(rel), { bigint: true }))
      if (!sameSnapshot(before, now) || !sameSnapshot(before, named)) throw new Retry('changed while it was copied')
      const busyNow = this.writers(rel)
      if (busyNow !== undefined) throw new Defer(busyNow)

      await fs.promises.rename(this.mountPath(tmpRel), this.mountPath(rel)) // the crash-safety point: old or new
      tmpMade = false
      await syncDir(this.backingPath(dir))
      const after = snapshot(await orig.stat({ bigint: true }))
      if (after.size !== before.size || after.mtimeNs !== before.mtimeNs) {
        return { path: rel, state: 'failed', bytes, reason: 'written to in the instant of the rename: those bytes went to the replaced file' }
      }
      return { path: rel, state: 'converted', bytes }
    } finally {
      await orig.close()
      if (tmpMade) await fs.promises.unlink(this.mountPath(tmpRel)).catch(async () => await fs.promises.unlink(this.backingPath(tmpRel)).catch(() => {}))
    }
  }

  /**
   * Copies `src` (through the mount) into `out`, leaving 64 KiB runs of zeros as holes; the SHA-256 of the bytes.
   * `stopAfterFirst`, asked once the first 64 KiB are written, may end it with a result: nothing to do.
   */
  private async copy (src: string, out: fs.promises.FileHandle, stopAfterFirst?: () => Promise<FileResult | undefined>): Promise<{ digest: string, bytes: number } | FileResult> {
    const hash = crypto.createHash('sha256')
    const inp = await fs.promises.open(src, 'r')
    const buf = Buffer.alloc(CHUNK_BYTES)
    let offset = 0
    try {
      for (;;) {
        const { bytesRead } = await inp.read(buf, 0, buf.length, offset)
        if (bytesRead === 0) break
        const chunk = buf.subarray(0, bytesRead)
        hash.update(chunk)
        if (offset === 0 && stopAfterFirst !== undefined) {
          const first = chunk.subarray(0, ZERO_RUN_BYTES) // written even when zero: the header comes with a write
          await writeAll(out, first, 0)
          const stop = await stopAfterFirst()
          if (stop !== undefined) return stop
          await writeSparse(out, chunk.subarray(first.length), first.length)
        } else await writeSparse(out, chunk, offset)
        offset += bytesRead
        this.bytesDone += bytesRead
        this.o.onBytes?.(this.bytesDone)
        await this.throttle.take(bytesRead)
      }
    } finally { await inp.close() }
    await out.truncate(offset) // the end, when it is a hole
    return { digest: hash.digest('hex'), bytes: offset }
  }

  private async hashOf (file: string): Promise<string> {
    const hash = crypto.createHash('sha256')
    const fh = await fs.promises.open(file, 'r')
    try {
      const buf = Buffer.alloc(CHUNK_BYTES)
      for (let offset = 0; ;) {
        const { bytesRead } = await fh.read(buf, 0, buf.length, offset)
        if (bytesRead === 0) break
        hash.update(buf.subarray(0, bytesRead))
        offset += bytesRead
      }
    } finally { await fh.close() }
    return hash.digest('hex')
  }
}

/** Writes `chunk` at `offset`, skipping aligned all-zero runs of ZERO_RUN_BYTES (they stay holes). */
async function writeSparse (out: fs.promises.FileHandle, chunk: Buffer, offset: number): Promise<void> {
  let start = -1
  for (let at = 0; at < chunk.length; at += ZERO_RUN_BYTES) {
    const piece = chunk.subarray(at, Math.min(chunk.length, at + ZERO_RUN_BYTES))
    const zero = piece.length === ZERO_RUN_BYTES && piece.equals(ZEROS)
    if (!zero && start < 0) start = at
    if (zero && start >= 0) { await writeAll(out, chunk.subarray(start, at), offset + start); start = -1 }
  }
  if (start >= 0) await writeAll(out, chunk.subarray(start), offset + start)
}

async function writeAll (out: fs.promises.FileHandle, data: Buffer, position: number): Promise<void> {
  for (let done = 0; done < data.length;) {
    const { bytesWritten } = await out.write(data, done, data.length - done, position + done)
    done += bytesWritten
  }
}

/** pemfs's own attribute names: the mount refuses them, and they describe the old file. */
const OWN_XATTR = /^(user|trusted|security)\.pemfs\./

/** Every extended attribute of `from` (ACLs too) set on `to`; a file system without xattrs has none to carry. */
function copyXattrs (from: string, to: string): void {
  let names: string[]
  try { names = raw.xattrList(from) } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOTSUP') return
    throw err
  }
  for (const name of names) if (!OWN_XATTR.test(name)) raw.xattrSet(to, name, raw.xattrGet(from, name))
}

async function syncDir (dir: string): Promise<void> {
  const fh = await fs.promises.open(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY)
  try { await fh.sync() } finally { await fh.close() }
}
