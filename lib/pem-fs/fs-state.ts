// State shared by the FUSE operation families: the backing directory (reached through an fd opened before the mount
// covered it), open handles with the decisions of their open (the transaction), and the reply plumbing.
// Metadata calls on the backing directory (stat, open, create, unlink, rename, ...) are synchronous on the JS thread:
// here a trip through libuv's thread pool costs 70-100 µs, the call itself ~4 µs, and every FUSE operation already
// waits for this thread. Data reads, writes and fsync stay asynchronous: they may wait for the disk.
import fs from 'node:fs'
import path from 'node:path'
import type { CryptFile } from './crypt-file'
import { callerOf, type Caller } from './fuse-ctx'
import { toErrno, type Decision, type Guard } from './guard'
import { PemError } from '../wire/errors'
import type { AccessAttrs, Action } from '../wire/packets'

const DEBUG = process.env.PEMFS_DEBUG === '1' // log every failed operation, not only cluster failures

export interface Handle {
  fd: number // backing file descriptor
  path: string
  caller: Caller
  attrs: AccessAttrs
  decisions: Map<Action, Decision> // read/write decisions of this handle, made at open (or first use, for create)
  crypt: CryptFile | null // the file's shared state when its decisions need the cluster for the data (apply_key)
  wrote: boolean // has written (encrypted): its flush and fsync report background write failures (crypt-file.ts Writer)
  failuresSeen: number // its file's background write failure count at open or when it was last told of one
  append: boolean // opened O_APPEND (encrypted): every write goes to the end of the file as pemfs knows it
}

export interface OpCounts { ops: number, errors: number, reads: number, writes: number, bytesRead: number, bytesWritten: number }

export type Reply<T> = (err: number, value?: T) => void

export class FsState {
  /** Backing directory as a path that reaches underneath the mount: /proc/self/fd/N (statfs only). */
  readonly root: string
  readonly handles = new Map<number, Handle>()
  readonly counts: OpCounts = { ops: 0, errors: 0, reads: 0, writes: 0, bytesRead: 0, bytesWritten: 0 }
  private nextFh = 1
  private readonly asRoot = process.getuid?.() === 0

  /** The mount daemon's working directory must be the backing directory (mountGuard chdirs there). */
  constructor (readonly guard: Guard, readonly backingFd: number) {
    this.root = `/proc/self/fd/${backingFd}`
  }

  /**
   * Backing path of a path inside the mount, relative to the working directory (the backing directory): a path of up
   * to 4,095 bytes from the mount stays one under PATH_MAX underneath too, where a /proc/self/fd/N prefix would not.
   */
  real (p: string): string { return p === '/' ? '.' : p.slice(1) }

  addHandle (h: Handle): number {
    const fh = this.nextFh
    this.nextFh = this.nextFh >= 0x7fffffff ? 1 : this.nextFh + 1
    this.handles.set(fh, h)
    return fh
  }

  /**
   * Runs one operation: strips the caller from the path, runs `body`, answers the kernel with its value or an errno.
   * `body` never keeps fuse-native's buffers past its promise.
   */
  serve<T>(raw: string, reply: Reply<T>, body: (caller: Caller, p: string) => Promise<T>): void {
    this.counts.ops++
    const { caller, path: p } = callerOf(raw)
    body(caller, p).then(v => reply(0, v), (err: unknown) => {
      this.counts.errors++
      if (DEBUG || (!(err instanceof PemError && err.code === 'PEM_ERR_POLICY_DENY') && typeof (err as { syscall?: unknown }).syscall !== 'string')) this.logError(p, PemError.from(err))
      reply(toErrno(err))
    })
  }

  private lastLog = 0
  /** Cluster and protocol failures go to the log (at most one line per second); denials are the audit log's job. */
  private logError (p: string, err: PemError): void {
    const now = Date.now()
    if (now - this.lastLog < 1000 && !DEBUG) return
    this.lastLog = now
    process.stderr.write(`${new Date(now).toISOString()} ${p}: ${err.message} (${err.code})\n`)
  }

  /**
   * New entries get the owner ext4 would give them had the caller made them (pemfs makes them as root): the caller's
   * fsuid, and the parent's group when the parent is setgid (else the caller's fsgid). The kernel already applied the
   * caller's umask and dropped a setgid bit the caller may not set, and the backing file system made a directory under
   * a setgid parent setgid; root's chown clears a file's set-id bits, so those are put back.
   */
  own (p: string, caller: Caller): void {
    if (!this.asRoot || caller.pid === 0) return
    const real = this.real(p)
    const parent = fs.statSync(this.real(path.posix.dirname(p)))
    const gid = (parent.mode & 0o2000) !== 0 ? parent.gid : caller.gid
    const before = fs.lstatSync(real)
    fs.lchownSync(real, caller.uid, gid)
    if (!before.isSymbolicLink() && (before.mode & 0o6000) !== 0) fs.chmodSync(real, before.mode & 0o7777)
  }
}

/** fuse-native's stat shape (times in ms). */
export interface FuseStat {
  mode: number, uid: number, gid: number, size: number, dev: number, nlink: number, ino: number, rdev: number,
  blksize: number, blocks: number, atime: number, mtime: number, ctime: number
}

export function toFuseStat (st: fs.Stats, size = st.size): FuseStat {
  return {
    mode: st.mode, uid: st.uid, gid: st.gid, size, dev: st.dev, nlink: st.nlink, ino: st.ino, rdev: st.rdev,
    blksize: st.blksize, blocks: st.blocks, atime: st.atimeMs, mtime: st.mtimeMs, ctime: st.ctimeMs
  }
}
