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

/**
 * Names that start so are a conversion's own: its temporary copies (`.pemfs-convert.<8 hex>.NAME`, removed by the
 * next run) and, in the guard point's root, the journals of hard-linked files (`.pemfs-convert.links.<8 hex>`,
 * completed by the next run). The mount serves them only to a registered conversion (docs/PEMFS.md).
 */
export const TEMP_PREFIX = '.pemfs-convert.'
const TEMP_NAME = /^\.pemfs-convert\.[0-9a-f]{8}\./
const LINKS_JOURNAL = /^\.pemfs-convert\.links\.[0-9a-f]{8}$/

const CHUNK_BYTES = 1024 * 1024 // one FUSE write at most
const ZERO_RUN_BYTES = 64 * 1024 // a run of zeros this long (aligned) is left a hole
const ZEROS = Buffer.alloc(ZERO_RUN_BYTES)
const CHANGE_RETRIES = 3
const GROUP_FILES = 64 // copies committed after one scan for writers (the scan reads every process's descriptors)
const GROUP_BYTES = 64 * 1024 * 1024
const GROUP_MS = 500 // …or after this long: what a kill can cost, and how long copies wait on disk

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
  /** Awaited after every chunk: resolves when the copy may go on (backing off for load); the wait is not owed to --rate. */
  pace?: () => Promise<void>
}

/** converted; current: nothing to do (any more); plaintext: the policy does not encrypt it; skipped: refused; failed. */
export type FileState = 'converted' | 'current' | 'plaintext' | 'skipped' | 'failed'
export interface FileResult { path: string, state: FileState, bytes: number, reason?: string, links?: string[] }

/** A file to convert: `rel` and, for a file with several names, its other names (all under the walked path). */
export interface Candidate { rel: string, bytes: number, links: string[] }

/**
 * What a run writes underneath before it renames the copy of a hard-linked file over its first name: the file's names,
 * its old inode and the copy's. The next run (plan) links every name still on the old inode to the new one.
 */
interface LinksJournal { names: string[], oldIno: string, newIno: string }

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
  /** Hard-linked files whose renames an interrupted run left half done, completed by this one. */
  linksCompleted: number
  seconds: number
}

/** A file the walk found: one of its names, and its inode and link count (names of one inode become one candidate). */
interface Found { rel: string, bytes: number, ino: bigint, nlink: bigint }

interface Snapshot { dev: bigint, ino: bigint, size: bigint, mtimeNs: bigint, ctimeNs: bigint, nlink: bigint }

const snapshot = (s: fs.BigIntStats): Snapshot => ({ dev: s.dev, ino: s.ino, size: s.size, mtimeNs: s.mtimeNs, ctimeNs: s.ctimeNs, nlink: s.nlink })
const sameSnapshot = (a: Snapshot, b: Snapshot): boolean =>
  a.dev === b.dev && a.ino === b.ino && a.size === b.size && a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs && a.nlink === b.nlink

/** A verified copy waiting for its group's commit: the original's descriptor and state when the copy began. */
interface Prepared { c: Candidate, rel: string, orig: fs.promises.FileHandle, before: Snapshot, tmpRel: string, bytes: number }

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

/**
 * Which of `paths` processes other than `ignore` hold open with write access: one pass over every /proc/PID/fd (and the
 * fdinfo flags of the descriptors that name one of them), for a whole group of files at once.
 */
export function writersOf (paths: readonly string[], ignore: ReadonlySet<number>): Map<string, string[]> {
  const wanted = new Set(paths)
  const out = new Map<string, string[]>()
  for (const name of fs.readdirSync('/proc')) {
    const pid = Number(name)
    if (!Number.isInteger(pid) || pid <= 0 || ignore.has(pid) || pid === process.pid) continue
    let fds: string[] = []
    try { fds = fs.readdirSync(`/proc/${pid}/fd`) } catch { continue }
    for (const fd of fds) {
      let link: string
      try { link = fs.readlinkSync(`/proc/${pid}/fd/${fd}`) } catch { continue }
      if (!wanted.has(link)) continue
      let flags = 0
      try { flags = parseInt(/^flags:\s*([0-7]+)/m.exec(fs.readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'))?.[1] ?? '0', 8) } catch { continue }
      if ((flags & 3) === 0) continue // O_RDONLY
      let command = '?'
      try { command = fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim() } catch {}
      const who = `pid ${pid} (${command})`
      const list = out.get(link) ?? []
      if (!list.includes(who)) list.push(who)
      out.set(link, list)
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
  private started = Date.now()
  private bytes = 0
  constructor (private readonly rate: number) {}
  async take (n: number): Promise<void> {
    this.bytes += n
    if (this.rate <= 0) return
    const due = this.started + this.bytes / this.rate * 1000
    const wait = due - Date.now()
    if (wait > 0) await new Promise(resolve => setTimeout(resolve, wait))
  }

  /** `ms` spent waiting for another reason: not made up for by a burst afterwards. */
  skip (ms: number): void { this.started += ms }
}

export class Converter {
  private readonly throttle: Throttle
  private bytesDone = 0
  private leftovers = 0
  private linksCompleted = 0
  private readonly unfinishedLinks = new Set<string>() // names of a journal that could not be completed: left alone
  private readonly foundAtPlan: FileResult[] = [] // damaged headers, hard links not all under the path: reported by run()

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
    await this.completeLinks()
    const found: Found[] = []
    const top = this.backingPath(this.o.sub)
    const st = await fs.promises.lstat(top).catch(() => { throw new PemError('PEM_ERR_NOT_FOUND', `${this.mountPath(this.o.sub)} does not exist`) })
    if (st.isDirectory()) await this.walk(this.o.sub, st.dev, found)
    else if (st.isFile()) await this.consider(this.o.sub, found)
    else throw new PemError('PEM_ERR_BAD_ARGUMENT', `${this.mountPath(this.o.sub)} is neither a directory nor a regular file`)
    // One candidate per inode: a hard-linked file is converted once, under its first name, and relinked to the others.
    const byIno = new Map<bigint, Found[]>()
    for (const f of found) byIno.set(f.ino, [...(byIno.get(f.ino) ?? []), f])
    const out: Candidate[] = []
    for (const names of byIno.values()) {
      const [first, ...others] = names
      if (first.nlink > BigInt(names.length)) {
        const reason = `has ${first.nlink} hard links, ${first.nlink - BigInt(names.length)} of them not under ${this.mountPath(this.o.sub)}: converting these names would split them from the others (convert the directory that holds them all)`
        for (const f of names) this.foundAtPlan.push({ path: f.rel, state: 'skipped', bytes: 0, reason })
        continue
      }
      out.push({ rel: first.rel, bytes: first.bytes, links: others.map(f => f.rel) })
    }
    return out
  }

  /** Finishes what interrupted runs left of hard-linked files (their journals in the root), then removes the journals. */
  private async completeLinks (): Promise<void> {
    for (const name of await fs.promises.readdir(this.backingPath(''))) {
      if (!LINKS_JOURNAL.test(name)) continue
      const journal = JSON.parse(await fs.promises.readFile(this.backingPath(name), 'utf8')) as LinksJournal
      const inoOf = async (rel: string): Promise<string | undefined> => (await fs.promises.lstat(this.backingPath(rel), { bigint: true }).catch(() => undefined))?.ino.toString()
      const now = await Promise.all(journal.names.map(inoOf))
      const renamed = journal.names.find((_, i) => now[i] === journal.newIno)
      if (renamed !== undefined) { // the copy is under one name at least: the names still on the old inode follow it
        const stale = journal.names.filter((_, i) => now[i] === journal.oldIno)
        try {
          for (const rel of stale) await this.relink(renamed, rel)
        } catch (err) { // the journal stays for the next run
          const e = err as NodeJS.ErrnoException
          this.foundAtPlan.push({ path: renamed, state: 'failed', bytes: 0, reason: `its other names (${stale.join(', ')}) are not linked to it yet: ${e.code ?? ''} ${e.message}` })
          for (const rel of journal.names) this.unfinishedLinks.add(rel)
          continue
        }
        if (stale.length > 0) this.linksCompleted++
      }
      await fs.promises.unlink(this.backingPath(name))
    }
  }

  /** Makes `rel` another name of `from`'s inode, through the mount: a link at a temporary name renamed over `rel`. */
  private async relink (from: string, rel: string): Promise<void> {
    const tmpRel = path.join(path.dirname(rel), tempName(path.basename(rel)))
    await fs.promises.link(this.mountPath(from), this.mountPath(tmpRel))
    await fs.promises.rename(this.mountPath(tmpRel), this.mountPath(rel))
  }

  private async walk (rel: string, dev: number, out: Found[]): Promise<void> {
    const entries = await fs.promises.readdir(this.backingPath(rel), { withFileTypes: true })
    for (const e of entries.sort((a, b) => a.name < b.name ? -1 : 1)) {
      const child = rel === '' ? e.name : path.join(rel, e.name)
      if (TEMP_NAME.test(e.name)) { await this.removeLeftover(child); continue }
      if (e.name.startsWith(TEMP_PREFIX)) continue // a links journal (completed above) or another run's own
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

  private async consider (rel: string, out: Found[]): Promise<void> {
    if (this.o.exclude.has(rel) || this.unfinishedLinks.has(rel)) return
    const fh = await fs.promises.open(this.backingPath(rel), fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW)
    try {
      const st = await fh.stat({ bigint: true })
      let header: FileHeader | undefined
      try { header = headerOf(await readFirst(fh)) } catch (err) {
        if (this.o.mode !== 'encrypt') this.foundAtPlan.push({ path: rel, state: 'failed', bytes: 0, reason: `damaged header: ${PemError.from(err).message}` })
        return // encrypt: a damaged encrypted file is not plaintext
      }
      if (this.o.mode === 'encrypt' ? header !== undefined || st.size === 0n : header === undefined) return // an empty file is an empty encrypted one
      const size = Number(st.size)
      out.push({ rel, bytes: header === undefined ? size : plainSize(header, size), ino: st.ino, nlink: st.nlink })
    } finally { await fh.close() }
  }

  /**
   * Converts every candidate. Copies are made one file at a time and committed in groups (up to GROUP_FILES files,
   * GROUP_BYTES or GROUP_MS of copying): one scan for writers per group, then each file's check and rename. A file
   * that another process has open for writing goes to the back, is tried again every 200 ms until waitMs, then
   * skipped.
   */
  async run (files: Candidate[]): Promise<Summary> {
    const started = Date.now()
    const counts: Record<FileState, number> = { converted: 0, current: 0, plaintext: 0, skipped: 0, failed: 0 }
    const finish = (r: FileResult): void => { counts[r.state]++; this.o.onFile?.(r) }
    for (const r of this.foundAtPlan) finish(r)
    const tries = new Map<string, number>()
    const deadline = Date.now() + this.o.waitMs
    let queue = files
    for (let round = 0; queue.length > 0; round++) {
      const last = Date.now() >= deadline
      if (round > 0 && !last) await new Promise(resolve => setTimeout(resolve, 200))
      const busy = this.writersOfAll(queue) // before copying: a file open for writing waits
      const again: Candidate[] = []
      let group: Prepared[] = []
      let groupStarted = Date.now()
      const commit = async (): Promise<void> => {
        const g = group
        group = []
        groupStarted = Date.now()
        if (g.length === 0) return
        const writers = this.writersOfAll(g.map(p => p.c))
        const dirs = new Set<string>()
        for (const p of g) {
          const r = await this.commit(p, writers.get(p.rel))
          if (r !== 'busy' && r !== 'changed' && r.state === 'converted') for (const n of [p.rel, ...p.c.links]) dirs.add(path.dirname(n))
          if (r === 'busy' && last) finish({ path: p.rel, state: 'skipped', bytes: 0, reason: `open for writing by ${(writers.get(p.rel) ?? []).join(', ')}` })
          else if (r === 'busy') again.push(p.c)
          else if (r === 'changed') {
            const n = (tries.get(p.rel) ?? 0) + 1
            tries.set(p.rel, n)
            if (n >= CHANGE_RETRIES) finish({ path: p.rel, state: 'failed', bytes: 0, reason: `changed while it was copied (${n} tries)` })
            else again.push(p.c)
          } else finish(r)
        }
        for (const d of dirs) await syncDir(this.backingPath(d)) // the renames durable (each copy was synced before)
      }
      for (const c of queue) {
        const holders = busy.get(c.rel)
        if (holders !== undefined) {
          if (last) finish({ path: c.rel, state: 'skipped', bytes: 0, reason: `open for writing by ${holders.join(', ')}` })
          else again.push(c)
          continue
        }
        const r = await this.prepare(c)
        if ('state' in r) finish(r)
        else group.push(r)
        if (group.length >= GROUP_FILES || group.reduce((n, p) => n + p.bytes, 0) >= GROUP_BYTES || Date.now() - groupStarted >= GROUP_MS) await commit()
      }
      await commit()
      queue = again
    }
    return { mode: this.o.mode, files: files.length, bytes: this.bytesDone, ...counts, leftoversRemoved: this.leftovers, linksCompleted: this.linksCompleted, seconds: (Date.now() - started) / 1000 }
  }

  /** Writers of each file (by each of its names through the mount and underneath), keyed by its first name. */
  private writersOfAll (files: Candidate[]): Map<string, string[]> {
    const names = (c: Candidate): string[] => [c.rel, ...c.links].flatMap(rel => [this.mountPath(rel), path.join(this.o.backingPath, rel)])
    const found = writersOf(files.flatMap(names), this.o.ignorePids)
    const out = new Map<string, string[]>()
    for (const c of files) {
      const w = [...new Set(names(c).flatMap(n => found.get(n) ?? []))]
      if (w.length > 0) out.set(c.rel, w)
    }
    return out
  }

  /** A verified copy next to the file, or the file's end state when there is nothing (more) to do. */
  private async prepare (c: Candidate): Promise<Prepared | FileResult> {
    const rel = c.rel
    const doneBefore = this.bytesDone
    let orig: fs.promises.FileHandle | undefined
    let tmpRel: string | undefined
    try {
      orig = await fs.promises.open(this.backingPath(rel), fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW)
      const r = await this.copyOf(rel, c.links, orig, t => { tmpRel = t })
      if (!('state' in r)) { const p = { ...r, c, orig }; orig = undefined; tmpRel = undefined; return p }
      return r
    } catch (err) {
      this.bytesDone = doneBefore
      this.o.onBytes?.(this.bytesDone)
      const e = err as NodeJS.ErrnoException
      if (e.code === 'ENOENT') return { path: rel, state: 'current', bytes: 0, reason: 'removed meanwhile' }
      return { path: rel, state: 'failed', bytes: 0, reason: e.code !== undefined ? `${e.code}: ${e.message}` : PemError.from(err).message }
    } finally {
      await orig?.close()
      if (tmpRel !== undefined) await this.removeTemp(tmpRel)
    }
  }

  private async removeTemp (tmpRel: string): Promise<void> {
    await fs.promises.unlink(this.mountPath(tmpRel)).catch(async () => await fs.promises.unlink(this.backingPath(tmpRel)).catch(() => {}))
  }

  /** Steps 1–5 (docs/PEMFS.md): the copy, its metadata and its verification. `made` learns the temporary name. */
  private async copyOf (rel: string, links: string[], orig: fs.promises.FileHandle, made: (tmpRel: string) => void): Promise<Omit<Prepared, 'c' | 'orig'> | FileResult> {
    const o = this.o
    const dir = path.dirname(rel)
    const tmpRel = path.join(dir, tempName(path.basename(rel)))
    const st = await orig.stat({ bigint: true })
    const before = snapshot(st)
    if (!st.isFile()) return { path: rel, state: 'current', bytes: 0, reason: 'no longer a regular file' }
    if (st.nlink !== BigInt(1 + links.length)) return { path: rel, state: 'skipped', bytes: 0, reason: `its link count changed since the walk (${st.nlink} now): run again` }
    if (o.uid !== 0 && Number(st.uid) !== o.uid) return { path: rel, state: 'skipped', bytes: 0, reason: `owned by uid ${st.uid}: only root or the owner may convert it` }
    const header = headerOf(await readFirst(orig))
    if (o.mode === 'encrypt' ? header !== undefined || st.size === 0n : header === undefined) return { path: rel, state: 'current', bytes: 0 }

    // The copy: encrypt and rekey write through the mount (its policy and encrypt path decide the new file);
    // decrypt writes the plaintext underneath. Either way the source is read through the mount.
    const throughMount = o.mode !== 'decrypt'
    const target = throughMount ? this.mountPath(tmpRel) : this.backingPath(tmpRel)
    const out = await fs.promises.open(target, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600)
    made(tmpRel)
    let digest: string
    let bytes = 0
    try {
      // Once its first bytes are on disk the copy has the header the policy and spd give it now (a file that fits
      // in them is looked at once whole, below).
      const probe = !throughMount || st.size <= BigInt(ZERO_RUN_BYTES) ? undefined : async (): Promise<FileResult | undefined> => {
        await out.sync()
        return this.nothingToDo(rel, header, await headerAt(this.backingPath(tmpRel)))
      }
      const copied = await this.copy(this.mountPath(rel), out, probe)
      if ('state' in copied) return copied
      ;({ digest, bytes } = copied)
      await out.sync()
    } finally { await out.close() }
    if (o.uid === 0) await fs.promises.lchown(target, Number(st.uid), Number(st.gid))
    copyXattrs(this.backingPath(rel), target) // ACLs among them, before chmod sets the mode bits they share
    await fs.promises.chmod(target, Number(st.mode) & 0o7777) // after chown, which clears set-id bits
    await fs.promises.utimes(target, Number(st.atimeNs) / 1e9, Number(st.mtimeNs) / 1e9)

    // Verify: the new file reads back the same bytes through the mount and is stored as this mode says (an empty
    // encrypted file gets its header at its first write).
    const newHeader = await headerAt(this.backingPath(tmpRel))
    if (o.mode === 'decrypt' && newHeader !== undefined) throw new PemError('PEM_ERR_BAD_HEADER', `the copy of ${rel} is stored encrypted`)
    const stop = throughMount && bytes > 0 ? this.nothingToDo(rel, header, newHeader) : undefined
    if (stop !== undefined) return stop
    const check = await this.hashOf(this.mountPath(tmpRel))
    if (check !== digest) throw new PemError('PEM_ERR_AUTH_FAILED_BLOCK', `the copy of ${rel} does not read back the same bytes`)
    return { rel, before, tmpRel, bytes }
  }

  /**
   * What the copy's header says about encrypting or rekeying the file: none, the policy stores this file as
   * plaintext; the original's key name and version, the file is current; otherwise undefined, go on.
   */
  private nothingToDo (rel: string, old: FileHeader | undefined, fresh: FileHeader | undefined): FileResult | undefined {
    if (fresh === undefined) return { path: rel, state: 'plaintext', bytes: 0, reason: 'the policy stores its copy as plaintext for this caller: it does not encrypt this file, or a rule names the file so exactly that the copy\'s name is not under it' }
    if (old !== undefined && fresh.keyName === old.keyName && fresh.keyVersion === old.keyVersion) return { path: rel, state: 'current', bytes: 0 }
    return undefined
  }

  /**
   * Steps 6–7: the original must be as it was when the copy began (under each of its names) and nobody may be
   * writing it (`writers`, from the group's scan); then the rename through the mount, the crash-safety point (each
   * file old or new). A hard-linked file's other names follow, each a link renamed over it, after a journal that lets
   * the next run finish them (completeLinks).
   */
  private async commit (p: Prepared, writers: string[] | undefined): Promise<FileResult | 'busy' | 'changed'> {
    let renamed = false
    let journal: string | undefined
    try {
      if (writers !== undefined) return 'busy'
      const now = snapshot(await p.orig.stat({ bigint: true }))
      if (!sameSnapshot(p.before, now)) return 'changed'
      for (const rel of [p.rel, ...p.c.links]) if (!sameSnapshot(p.before, snapshot(await fs.promises.lstat(this.backingPath(rel), { bigint: true })))) return 'changed'
      if (p.c.links.length > 0) journal = await this.writeLinksJournal(p)
      await fs.promises.rename(this.mountPath(p.tmpRel), this.mountPath(p.rel))
      renamed = true
      for (const rel of p.c.links) await this.relink(p.rel, rel)
      if (journal !== undefined) { await fs.promises.unlink(journal); journal = undefined }
      const after = snapshot(await p.orig.stat({ bigint: true }))
      if (after.size !== p.before.size || after.mtimeNs !== p.before.mtimeNs) {
        return { path: p.rel, state: 'failed', bytes: p.bytes, reason: 'written to in the instant of the rename: those bytes went to the replaced file' }
      }
      return { path: p.rel, state: 'converted', bytes: p.bytes, ...(p.c.links.length > 0 ? { links: p.c.links } : {}) }
    } catch (err) {
      const e = err as NodeJS.ErrnoException
      if (e.code === 'ENOENT' && !renamed) return { path: p.rel, state: 'current', bytes: 0, reason: 'removed meanwhile' }
      return { path: p.rel, state: renamed ? 'converted' : 'failed', bytes: p.bytes, reason: e.code !== undefined ? `${e.code}: ${e.message}` : PemError.from(err).message }
    } finally {
      await p.orig.close()
      if (!renamed) await this.removeTemp(p.tmpRel)
      if (!renamed && journal !== undefined) await fs.promises.unlink(journal).catch(() => {}) // left when renamed: the next run finishes the names
    }
  }

  /** The journal of a hard-linked file's renames, durable underneath in the guard point's root; its path. */
  private async writeLinksJournal (p: Prepared): Promise<string> {
    const newIno = (await fs.promises.lstat(this.backingPath(p.tmpRel), { bigint: true })).ino.toString()
    const journal: LinksJournal = { names: [p.rel, ...p.c.links], oldIno: p.before.ino.toString(), newIno }
    const file = this.backingPath(`${TEMP_PREFIX}links.${crypto.randomBytes(4).toString('hex')}`)
    const fh = await fs.promises.open(file, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600)
    try { await fh.writeFile(JSON.stringify(journal) + '\n'); await fh.sync() } finally { await fh.close() }
    await syncDir(this.backingPath(''))
    return file
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
        if (this.o.pace !== undefined) {
          const waited = Date.now()
          await this.o.pace()
          this.throttle.skip(Date.now() - waited)
        }
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

/** fsync of a directory underneath; one removed meanwhile has nothing left to make durable. */
async function syncDir (dir: string): Promise<void> {
  let fh: fs.promises.FileHandle
  try { fh = await fs.promises.open(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY) } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return
    throw err
  }
  try { await fh.sync() } finally { await fh.close() }
}
