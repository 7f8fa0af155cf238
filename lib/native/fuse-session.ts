// The native FUSE session (native/fuse/, docs/PEMFS.md "The native session"): the only code that talks to the
// binding's fuse* functions. Native worker threads serve the hot operations; this module is the control plane's end
// of the one narrow interface: `decide` answers "may this caller do this action on this path" (cached natively for
// the answer's ttl) and the optional `io` hook serves the data calls of handles whose decision is not a bypass.
import os from 'node:os'
import { raw, type BlockServerSeen, type OpLatency, type RawDecideCall, type RawFuseSession, type RawIoCall, type RawRemote } from './binding'
import { call } from './errors'
import { ERRORS, PemError } from '../wire/errors'
import type { Action } from '../wire/packets'

const ERRNO = os.constants.errno as Record<string, number>

/** One question of a FUSE worker thread. `gids` are the caller's supplementary groups; `nodeid` 0 for a new name. */
export interface DecideRequest { uid: number, gid: number, gids: number[], pid: number, umask: number, path: string, action: Action, nodeid: number }

/**
 * The answer. `errno` (name or number) for a refusal, EACCES by default. `ttlMs` > 0: the native cache keeps it
 * for that long, keyed by (pid, uid, gid, executable, action, path). `bypass: false` at open/create/truncate makes
 * the handle's data calls go to the io hook (encrypted files); for getattr it makes the io hook give the size.
 * `scope`: the policy directory the answer holds for ('' = the guard root, else '/a/b'; docs/POLICY.md "Scope"), so
 * the native cache answers every path strictly under it for the same (pid, uid, gid, executable, action); absent:
 * this path only. A scope that is not a proper ancestor of the path asked about is kept for that path only.
 * `pool` (> 0, a create under host placement): the pool of spare new-file keys (IoAnswer `spares`) the creates this
 * answer decides take their keys from, without an io call.
 */
export interface DecideAnswer { ok: boolean, errno?: string | number, ttlMs?: number, bypass?: boolean, scope?: string, pool?: number }

export type IoKind = 'open' | 'read' | 'write' | 'flush' | 'fsync' | 'release' | 'truncate' | 'size' | 'key'

/**
 * A data call of a hooked handle. `fd` is the handle's backing file (this process's fd; valid until the release
 * answer). open: `flags` are the caller's open flags (O_CREAT for a new file; O_TRUNC is left to the hook).
 * read: answer `data` (at most `size` bytes). write: `data` at `offset`, answer `value` = bytes taken.
 * fsync: `flags` 1 for fdatasync. truncate: `size` (fh 0 when it came by path; `fd` is then a temporary one).
 * uid/gid/pid: the caller — of the handle's open (open, and every call of that handle), of the request (truncate by
 * path); 0 for size.
 * size: the size applications see (answer `value`) of a file whose getattr decision is not a bypass, or of a hooked
 * handle; `size` is the backing size, `fd` the handle's or a temporary read-only one. Asked only when the native
 * side cannot tell: a closed file whose header decodes (and that does not end in a redo record) and a file held in
 * host placement are sized natively.
 * key: a host-placement handle's key outlived its ttlMs (fh; fh 0 for a truncation by path, with the request's
 * caller; `data` the file's header, `flags` O_RDWR when the handle was decided for writing, else O_RDONLY, plus 4
 * when its block channel server was lost, plus 8 when the node holds a `remote` grant): answer `hostKey` again (of
 * the same kind), or an errno that fails the data call (EACCES also revokes the handle).
 * open of a new file (O_CREAT) whose create decision named a `pool`: `pool`; the answer may add `spares`, keys of
 * the pool's next new files (each a new header and its key, at most 64), held natively in locked memory until taken
 * or until less than 1 s of their ttlMs is left, and dropped by invalidate().
 */
export interface IoRequest { kind: IoKind, fh: number, nodeid: number, fd: number, offset: number, size: number, flags: number, uid: number, gid: number, pid: number, path: string, pool: number, data?: Buffer }
export interface IoAnswer { errno?: string | number, value?: number, data?: Uint8Array, hostKey?: HostKey, spares?: HostKey[] }

/**
 * Host placement (docs/PEMFS.md "Host placement"): an answer to `open` or `key` that hands over the file's key
 * (32 bytes; copied into locked, non-dumpable native memory, then zeroed here; `release`, when given, is called
 * after that), the file's header bytes (checked against the file; an empty file gets them at its first write) and
 * how long the key may be used (ms). From then on the handle's data calls (read, write, flush, fsync, release,
 * truncate, size) are served natively, compressed files too, and never reach the io hook; O_TRUNC of the open is
 * done natively too.
 * With `remote` instead of `key` (appliance placement, docs/CHANNEL.md §8) the handle is served natively the same
 * way, its blocks sealed and opened by spd's native block service over the block channel; `key` then asks again
 * also when that server timed out or closed (`flags` has 4: mark it down), forgot the grant, or refused to seal
 * under a read grant (answer with a grant for the handle's access).
 */
export interface HostKey { key?: Uint8Array, remote?: RawRemote, header: Uint8Array, ttlMs: number, release?: () => void }

export type DecideFn = (r: DecideRequest) => DecideAnswer | Promise<DecideAnswer>
export type IoFn = (r: IoRequest) => IoAnswer | Promise<IoAnswer>

export interface FuseSessionOptions {
  /** Seconds the kernel keeps names and attributes, in ms (default 1000 each). */
  entryTimeoutMs?: number
  attrTimeoutMs?: number
  /** A decide or io answer later than this fails the operation with ETIMEDOUT (default 5000). */
  decideTimeoutMs?: number
  /** fusermount3 unmounts when this process dies, even by SIGKILL (default true). */
  autoUnmount?: boolean
  debug?: boolean
  /** The mount's source in /proc/mounts and df (default `pemfs:DIR`; ',' and '\\' become '_'). */
  fsname?: string
  io?: IoFn
}

export interface HandleInfo { fh: number, nodeid: number, path: string, encrypted: boolean, read: boolean, write: boolean, revoked: boolean, uid: number, pid: number }
/**
 * hostNodes: files held in host placement now; hostKeys: keys installed (opens and `key` answers); hostKeysHeld:
 * keys held now (wiped at expiry, on revocation and at the last close); hostKeysDropped: keys wiped by dropKeys;
 * hostKeyCalls: `key` questions asked; hostReads/hostWrites: data calls served natively; hostSpareKeys: spare
 * new-file keys held now; hostSpareTakes: creates that took one (no io call); dumpable: the process may dump core
 * (false once a session started: it may hold file keys). Native block path (appliance placement, docs/CHANNEL.md
 * §8): blockGrants installed, blockRequests and blockBlocks sent, blockConnects made, blockLinksLost, and per server
 * the load, weight and policy version its last reply carried and the requests sent to it (blockServers);
 * blockBehindWrites: writes that returned before their blocks were sealed (write-behind), blockAheadBytes: bytes read
 * from windows opened ahead of a sequential reader (docs/PEMFS.md "Write-behind and readahead");
 * hostBytesRead/hostBytesWritten: bytes through natively served handles. opLatency: how long the session took to
 * serve each request, per op class (native/fuse/op_latency.h).
 */
export interface SessionStats {
  ops: number, jsCalls: number, cacheHits: number, timeouts: number, nodes: number, handles: number, cacheEntries: number
  hostNodes: number, hostKeys: number, hostKeysHeld: number, hostKeysDropped: number, hostKeyCalls: number, hostReads: number, hostWrites: number, hostSpareKeys: number, hostSpareTakes: number, dumpable: boolean
  hostBytesRead: number, hostBytesWritten: number
  blockGrants: number, blockRequests: number, blockBlocks: number, blockConnects: number, blockLinksLost: number
  blockBehindWrites: number, blockAheadBytes: number
  blockServers: BlockServerSeen[]
  opLatency: OpLatency
}

export const FUSE_MAX_WRITE: number = raw.FUSE_MAX_WRITE
export const FUSE_NAME_MAX: number = raw.FUSE_NAME_MAX
export const FUSE_PATH_MAX: number = raw.FUSE_PATH_MAX

/** errno number of an answer's errno field or of anything thrown (our codes map through lib/wire/errors.ts). */
export function errnoNumber (e: unknown, fallback = ERRNO.EIO): number {
  if (typeof e === 'number' && Number.isInteger(e) && e > 0 && e < 4096) return e
  if (typeof e === 'string') return ERRNO[e] ?? fallback
  if (e instanceof PemError) return ERRNO[ERRORS[e.code].errno] ?? fallback
  const code = (e as { code?: unknown } | null)?.code
  if (typeof code === 'string' && ERRNO[code] !== undefined) return ERRNO[code]
  return fallback
}

const timeout = (name: string, v: number | undefined, dflt: number, min: number): number => {
  const n = v ?? dflt
  if (!Number.isFinite(n) || n < min || n > 3_600_000) throw new PemError('PEM_ERR_BAD_ARGUMENT', `${name} must be ${min}..3600000 ms`)
  return n
}

export class FuseSession {
  private live = true
  private readonly onExit = (): void => { this.unmount() }

  private constructor (readonly dir: string, private readonly s: RawFuseSession) {
    process.on('exit', this.onExit) // a plain exit still unmounts (SIGKILL: autoUnmount)
  }

  /**
   * Mounts `dir` (absolute) serving the directory behind `backingFd` (this process keeps its own fd; the session
   * dups it). Returns once the mount serves. Throws PemError (ENGINE_ERR_FUSE: the mount failed).
   */
  static mount (dir: string, backingFd: number, decide: DecideFn, o: FuseSessionOptions = {}): FuseSession {
    if (typeof dir !== 'string' || !dir.startsWith('/') || Buffer.byteLength(dir) > FUSE_PATH_MAX) throw new PemError('PEM_ERR_BAD_ARGUMENT', 'dir must be an absolute path')
    if (!Number.isInteger(backingFd) || backingFd < 0) throw new PemError('PEM_ERR_BAD_ARGUMENT', 'backingFd must be an open fd')
    if (typeof decide !== 'function') throw new PemError('PEM_ERR_BAD_ARGUMENT', 'decide must be a function')
    const opts = {
      entryTimeoutMs: timeout('entryTimeoutMs', o.entryTimeoutMs, 1000, 0),
      attrTimeoutMs: timeout('attrTimeoutMs', o.attrTimeoutMs, 1000, 0),
      decideTimeoutMs: timeout('decideTimeoutMs', o.decideTimeoutMs, 5000, 1),
      autoUnmount: o.autoUnmount ?? true,
      debug: o.debug ?? false,
      fsname: o.fsname
    }
    let session: RawFuseSession | undefined
    const answer = (id: number, a: Parameters<typeof raw.fuseAnswer>[2]): void => {
      if (session === undefined) return
      try { raw.fuseAnswer(session, id, a) } catch (err) { process.emitWarning(`pemfs native session: ${(err as Error).message}`) }
    }
    const onDecide = (c: RawDecideCall): void => {
      const req: DecideRequest = { uid: c.uid, gid: c.gid, gids: c.gids, pid: c.pid, umask: c.umask, path: c.path, action: c.action as Action, nodeid: c.nodeid }
      Promise.resolve().then(async () => await decide(req)).then(
        a => answer(c.id, { ok: a.ok === true, errno: a.ok === true ? undefined : errnoNumber(a.errno, ERRNO.EACCES), ttlMs: a.ttlMs ?? 0, bypass: a.bypass ?? true, scope: a.scope, pool: a.pool }),
        err => answer(c.id, { ok: false, errno: errnoNumber(err) }))
    }
    const io = o.io
    const onIo = (c: RawIoCall): void => {
      if (io === undefined) { answer(c.id, { errno: ERRNO.EIO }); return }
      const req: IoRequest = { kind: c.kind as IoKind, fh: c.fh, nodeid: c.nodeid, fd: c.fd, offset: c.offset, size: c.size, flags: c.flags, uid: c.uid, gid: c.gid, pid: c.pid, path: c.path, pool: c.pool, data: c.data }
      Promise.resolve().then(async () => await io(req)).then(
        a => {
          try {
            answer(c.id, { errno: a.errno === undefined ? undefined : errnoNumber(a.errno), value: a.value, data: a.data, hostKey: a.hostKey, spares: a.spares })
          } finally { // the native side has its copies (locked memory); none stays in the JS heap
            for (const k of [a.hostKey, ...(a.spares ?? [])]) {
              k?.key?.fill(0)
              k?.remote?.keys.fill(0)
              k?.release?.()
            }
          }
        },
        err => answer(c.id, { errno: errnoNumber(err) }))
    }
    session = call(() => raw.fuseMount(dir, backingFd, opts, onDecide, onIo))
    return new FuseSession(dir, session)
  }

  get mounted (): boolean { return this.live }

  /** Clean unmount: pending decisions fail with EIO, the mount is detached, the worker threads end. Idempotent. */
  unmount (): void {
    if (!this.live) return
    this.live = false
    process.off('exit', this.onExit)
    call(() => raw.fuseUnmount(this.s))
  }

  /** Drops every cached decision (a new policy version). */
  invalidate (): void { this.check(); call(() => raw.fuseInvalidate(this.s)) }

  /** The kernel forgets what it caches: an inode's attributes and data, or (with `name`) the entry parent/name. */
  notify (nodeid: number, name?: string): void {
    this.check()
    if (!Number.isInteger(nodeid) || nodeid < 1) throw new PemError('PEM_ERR_BAD_ARGUMENT', 'nodeid must be a positive integer')
    if (name !== undefined && (Buffer.byteLength(name) > FUSE_NAME_MAX || name.includes('/'))) throw new PemError('PEM_ERR_BAD_ARGUMENT', 'name must be one name of at most 255 bytes')
    call(() => raw.fuseNotify(this.s, nodeid, name))
  }

  /** The handle `fh` (0: every open handle) loses the decisions of its open: its reads and writes get EACCES. */
  revoke (fh = 0): number {
    this.check()
    if (!Number.isInteger(fh) || fh < 0) throw new PemError('PEM_ERR_BAD_ARGUMENT', 'fh must be a handle number or 0')
    return call(() => raw.fuseRevoke(this.s, fh))
  }

  /**
   * Wipes the host-placement keys held now (expiredOnly: only those past their ttl); the files' next reads and writes
   * ask for a key again (the io hook's `key`, a fresh decision). Returns how many keys were wiped.
   */
  dropKeys (expiredOnly: boolean): number { this.check(); return call(() => raw.fuseDropKeys(this.s, expiredOnly)) }

  /**
   * The processes served pemfs's own names (`.pemfs-convert.*`, the root's `.pemfs-embedded*`: native/fuse/reserved.h),
   * replacing the previous ones; to every other process they are not listed, not found, not creatable nor removable.
   */
  reservedPids (pids: number[]): void {
    this.check()
    if (!pids.every(p => Number.isInteger(p) && p > 0)) throw new PemError('PEM_ERR_BAD_ARGUMENT', 'every pid must be a positive integer')
    call(() => raw.fuseReservedPids(this.s, pids))
  }

  handles (): HandleInfo[] { this.check(); return call(() => raw.fuseHandles(this.s)) }

  stats (): SessionStats { this.check(); return call(() => raw.fuseStats(this.s)) }

  private check (): void {
    if (!this.live) throw new PemError('ENGINE_ERR_FUSE', `${this.dir} is unmounted`)
  }
}
