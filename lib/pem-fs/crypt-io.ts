// The native session's io hook for encrypted handles (decisions answered `bypass: false`): maps open, read, write,
// flush, fsync, release, truncate and size onto the inode's shared CryptFile (crypt-files.ts), on the backing fd the
// session hands over — no path is resolved here. A handle keeps the decisions of its open (read and/or write) with
// their grants; an expired or unknown grant (spd restarted, failed over) makes the handle decide again and retry
// that data call. Encrypted writes finish in the background: fsync and flush (close) of a handle that wrote wait for
// them and report a failure, once per such handle; a reader's close neither waits nor hears of it.
import fs from 'node:fs'
import type { CryptFile, WithGrant, Writer } from './crypt-file'
import type { CryptFiles } from './crypt-files'
import { REDECIDE } from './client'
import { releaseFileKey } from '../crypto/file-key'
import type { Caller, Decision, Guard } from './guard'
import type { HostKey, IoAnswer, IoRequest } from '../native/fuse-session'
import { PemError } from '../wire/errors'
import type { AccessAttrs, Action } from '../wire/packets'
import { warn, withoutFdLinks } from './log'

const { O_ACCMODE = 3, O_RDONLY, O_WRONLY, O_CREAT, O_TRUNC, O_APPEND } = fs.constants as unknown as Record<string, number>
const DEBUG = process.env.PEMFS_DEBUG === '1' // log every failed operation, not only cluster failures
/**
 * Appliance placement is served natively, its blocks sealed by spd's native block service (docs/CHANNEL.md §8).
 * PEMFS_BLOCK_PATH=js keeps it on the JS path (CryptFile, BlocksSeal/BlocksOpen): the fallback, also taken for good
 * once a server answers that it runs no block service.
 */
const NATIVE_BLOCKS = process.env.PEMFS_BLOCK_PATH !== 'js'

/** One encrypted handle: the decisions of its open and what it knows of its file's background write failures. */
export interface CryptHandle extends Writer {
  fd: number // the session's backing fd of the handle (valid until release)
  path: string // the policy's path at open (decisions again, log lines)
  caller: Caller
  attrs: AccessAttrs
  decisions: Map<Action, Decision> // read/write decisions of this handle, made at open (or first use, for create)
  crypt: CryptFile
  append: boolean // opened O_APPEND: every write goes to the end of the file as CryptFile knows it
}

/** A key for the native session: zeroed there once given, then its buffer goes back (releaseFileKey). */
// A key released in the last millisecond of its lease still goes over (the session takes only ttl > 0) and expires
// at once: the handle's next block asks again (rekey). Until now such a create failed with EIO.
const handOver = (header: Buffer, key: Buffer, ttlMs: number): HostKey => ({ key, header, ttlMs: Math.max(1, ttlMs), release: () => releaseFileKey(key) })

/** Data calls of encrypted handles (the counters `pemfs status` shows next to the session's own). */
export interface IoCounts { errors: number, reads: number, writes: number, bytesRead: number, bytesWritten: number }

function needed (flags: number): Action[] {
  const acc = flags & O_ACCMODE
  const actions: Action[] = acc === O_RDONLY ? ['read'] : acc === O_WRONLY ? ['write'] : ['read', 'write']
  if ((flags & O_TRUNC) !== 0) actions.push('truncate')
  return actions
}

const done = async (f: (cb: (e: NodeJS.ErrnoException | null) => void) => void): Promise<void> =>
  await new Promise((resolve, reject) => f(e => e === null ? resolve() : reject(e)))

/** New files' keys one create's answer hands the native session beside its own (the rest of the client's batch). */
const SPARES_PER_ANSWER = 31
/** The `key` call's flags (beside the handle's access, O_ACCMODE): the node's block channel server timed out or closed; the node holds a grant at spd's block service. */
const KEY_SERVER_LOST = 4
const KEY_REMOTE = 8
const BLOCK_SERVERS_KEPT = 10_000 // the native side never releases its handles here: bounded, oldest dropped

export class CryptIo {
  readonly handles = new Map<number, CryptHandle>()
  readonly counts: IoCounts = { errors: 0, reads: 0, writes: 0, bytesRead: 0, bytesWritten: 0 }
  private lastLog = 0
  private nativeBlocks = NATIVE_BLOCKS
  private readonly blockServers = new Map<number, string>() // appliance handles served natively: their server

  constructor (private readonly guard: Guard, private readonly files: CryptFiles) {}

  /** The session's io hook. */
  readonly io = async (r: IoRequest): Promise<IoAnswer> => {
    try {
      return await this.serve(r)
    } catch (err) {
      this.counts.errors++
      if (DEBUG || (!(err instanceof PemError && err.code === 'PEM_ERR_POLICY_DENY') && typeof (err as { syscall?: unknown }).syscall !== 'string')) this.log(r.path, PemError.from(err))
      throw err
    }
  }

  /** Drops every handle's state (the session is gone). */
  closeAll (): void {
    this.handles.clear()
    this.files.closeAll()
  }

  private async serve (r: IoRequest): Promise<IoAnswer> {
    switch (r.kind) {
      case 'open': return await this.openRetried(r)
      case 'read': {
        const h = this.handleOf(r.fh)
        this.counts.reads++
        const buf = Buffer.allocUnsafe(r.size)
        const n = await h.crypt.read(this.granted(h, h.decisions.has('read') || !h.decisions.has('write') ? 'read' : 'write'), buf, r.size, r.offset)
        this.counts.bytesRead += n
        return { data: buf.subarray(0, n) }
      }
      case 'write': {
        const h = this.handleOf(r.fh)
        this.counts.writes++
        const data = r.data ?? Buffer.alloc(0)
        h.wrote = true // before the write is queued: a failure from here on is this handle's to hear
        const n = await h.crypt.write(this.granted(h, 'write'), h.path, data, data.length, r.offset, h.append)
        this.counts.bytesWritten += n
        return { value: n }
      }
      case 'flush': {
        const h = this.handles.get(r.fh)
        if (h !== undefined && h.wrote) await h.crypt.settle(h) // else nothing of its own to wait for
        return {}
      }
      case 'fsync': {
        const h = this.handleOf(r.fh)
        await h.crypt.settle(h)
        await done(cb => (r.flags & 1) !== 0 ? fs.fdatasync(h.fd, cb) : fs.fsync(h.fd, cb))
        return {}
      }
      case 'release': {
        const h = this.handles.get(r.fh)
        this.handles.delete(r.fh)
        if (h !== undefined) {
          await h.crypt.drain() // a failure was for fsync/flush to report; the fd must outlive the writes
          this.files.release(h.crypt)
        }
        return {}
      }
      case 'truncate': {
        if (r.fh !== 0) {
          const h = this.handleOf(r.fh)
          await h.crypt.truncate(this.granted(h, 'write'), h.path, r.size)
          return {}
        }
        // By path (the fd is a temporary one): a short-lived handle, so a lost grant is decided again like any handle's.
        const caller = { uid: r.uid, gid: r.gid, pid: r.pid }
        const attrs = this.guard.attrs(caller)
        const d = await this.guard.allow(caller, r.path, 'truncate', attrs)
        if (this.native(d) && !this.files.holds(r.fd)) { // served natively, like its opens: one engine per inode
          const { kind, bytes } = this.files.peek(r.fd)
          const native = kind === 'encrypted' && bytes !== null ? await this.hostKey(0, d, bytes) : null
          if (native !== null) return native
        }
        const f = this.files.acquire(r.fd, r.path)
        const h: CryptHandle = { fd: r.fd, path: r.path, caller, attrs, decisions: new Map([['truncate', d]]), crypt: f, wrote: false, failuresSeen: f.failures, append: false }
        try { await f.truncate(this.granted(h, 'truncate'), r.path, r.size) } finally { this.files.release(f) }
        return {}
      }
      case 'size': return { value: this.files.sizeOf(r.fd, r.size) }
      case 'key': return await this.rekey(r)
    }
    throw Object.assign(new Error(`unknown io call ${String(r.kind)}`), { code: 'EIO' })
  }

  /**
   * open(), again with fresh decisions when the server its decisions named was lost on the way (closed, refused, timed
   * out: REDECIDE), once per server in the list: a member that stops leaves the application no error while another
   * one serves.
   */
  private async openRetried (r: IoRequest): Promise<IoAnswer> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.open(r, attempt > 0)
      } catch (err) {
        if (!(err instanceof PemError) || !REDECIDE.has(err.code) || attempt >= this.guard.client.servers.length) throw err
      }
    }
  }

  private async open (r: IoRequest, fresh: boolean): Promise<IoAnswer> {
    const caller = { uid: r.uid, gid: r.gid, pid: r.pid }
    const attrs = this.guard.attrs(caller)
    const p = r.path
    if ((r.flags & O_CREAT) !== 0) { // a new file: its creation decision answers for the writes
      const d = await this.guard.allow(caller, p, 'create', attrs, fresh)
      if (this.native(d) && !this.files.holds(r.fd)) {
        const seen = this.files.peek(r.fd)
        // A create that found the name taken (another process's create won the race) opens that file: its header.
        if (seen.kind === 'encrypted' && seen.bytes !== null) {
          const native = await this.hostKey(r.fh, d, seen.bytes)
          if (native !== null) return native
        } else if (seen.kind !== 'plaintext') { // the native side writes a new header at the first write
          const native = await this.newNativeFile(r, d)
          if (native !== null) return native
        }
      }
      const f = this.files.acquire(r.fd, p)
      try { await f.create(this.given(d), p) } catch (err) { this.files.release(f); throw err }
      this.opened(r.fh, { fd: r.fd, path: p, caller, attrs, decisions: new Map([['write', d]]), crypt: f, wrote: false, failuresSeen: f.failures, append: (r.flags & O_APPEND) !== 0 })
      return {}
    }
    const actions = needed(r.flags)
    const ds = await Promise.all(actions.map(async a => await this.guard.allow(caller, p, a, attrs, fresh)))
    const host = await this.hostOpen(r, actions, ds)
    if (host !== null) return host
    const f = this.files.acquire(r.fd, p)
    try {
      if ((r.flags & O_TRUNC) !== 0) await f.truncate(this.given(ds[ds.length - 1]), p, 0)
      if (f.kind === 'plaintext') f.noteLegacy(p) // plaintext left from before: reads serve it as it is, writes EROFS
    } catch (err) { this.files.release(f); throw err }
    this.opened(r.fh, { fd: r.fd, path: p, caller, attrs, decisions: new Map(actions.map((a, i) => [a, ds[i]])), crypt: f, wrote: false, failuresSeen: f.failures, append: (r.flags & O_APPEND) !== 0 })
    return {}
  }

  /**
   * Host placement (issue 18): every decision of the open says `placement: host` and no CryptFile serves the inode
   * (one engine per inode), so the file's key goes to the native side, which serves the handle from then on. An
   * empty file gets a new header from spd (written by the native side at the first write; a read-only open of one
   * has nothing to read and stays here); a file left in plaintext stays here too. null: serve it here.
   */
  private async hostOpen (r: IoRequest, actions: Action[], ds: Decision[]): Promise<IoAnswer | null> {
    if (!ds.every(d => this.native(d)) || this.files.holds(r.fd)) return null
    const w = actions.indexOf('write')
    const i = w >= 0 ? w : 0
    const { kind, bytes } = this.files.peek(r.fd)
    if (kind === 'plaintext') return null
    if (kind === 'encrypted' && bytes !== null) return await this.hostKey(r.fh, ds[i], bytes)
    if (w < 0) return null
    return await this.newNativeFile(r, ds[w])
  }

  /** Decisions served by the native side: host placement, and appliance placement on the native block path. */
  private native (d: Decision): boolean { return d.placement === 'host' || (this.nativeBlocks && d.placement === 'appliance') }

  /**
   * The answer that hands the file to the native side: its key (host placement; the buffer is zeroed once the answer
   * is delivered) or its grant at the decision's block service (appliance). null: the server runs no block service,
   * serve it here.
   */
  private async hostKey (fh: number, d: Decision, header: Buffer): Promise<IoAnswer | null> {
    if (d.placement === 'host') {
      const { key, ttlMs } = await this.guard.client.fileKey(d, header)
      return { hostKey: handOver(header, key, ttlMs) }
    }
    try {
      const { remote, ttlMs } = await this.guard.client.blockChannel(d, header)
      if (fh !== 0) { // fh 0: a truncation by path, no handle to remember
        if (this.blockServers.size >= BLOCK_SERVERS_KEPT) this.blockServers.delete(this.blockServers.keys().next().value as number)
        this.blockServers.set(fh, d.server)
      }
      return { hostKey: { remote, header, ttlMs: Math.max(1, ttlMs) } }
    } catch (err) {
      if (!(err instanceof PemError) || err.code !== 'PEM_ERR_BAD_OPCODE') throw err
      this.nativeBlocks = false
      return null
    }
  }

  /**
   * hostKey for a new (empty) file. Host placement: a new header and its key, from the client's batch (no round trip
   * of its own); for a create whose decision names a pool, the batch's other spares go along for the pool's next
   * creates. Appliance placement: a new header from spd and its grant at the block service (null: none).
   */
  private async newNativeFile (r: IoRequest, d: Decision): Promise<IoAnswer | null> {
    if (d.placement !== 'host') return await this.hostKey(r.fh, d, (await this.guard.client.newHeader(d)).bytes)
    const { bytes, key, ttlMs } = await this.guard.client.newHostFile(d)
    const spares = r.pool > 0 && r.pool === this.guard.client.poolOf(d) ? this.guard.client.spareHostFiles(d, SPARES_PER_ANSWER) : []
    return { hostKey: handOver(bytes, key, ttlMs), spares: spares.map(s => handOver(s.bytes, s.key, s.ttlMs)) }
  }

  /**
   * A host-placement handle's key outlived its ttl: decide again (fresh) for what the handle was opened for and
   * release the key of the file whose header the session sends again, or refuse.
   */
  private async rekey (r: IoRequest): Promise<IoAnswer> {
    const caller = { uid: r.uid, gid: r.gid, pid: r.pid }
    const action: Action = r.fh === 0 ? 'truncate' : (r.flags & O_ACCMODE) === O_RDONLY ? 'read' : 'write'
    if (r.data === undefined || r.data.length === 0) throw Object.assign(new Error('no header to release a key for'), { code: 'EIO' })
    const lost = (r.flags & KEY_SERVER_LOST) !== 0 ? this.blockServers.get(r.fh) : undefined
    if (lost !== undefined) this.guard.client.noteServerLost(lost) // timed out or closed
    const d = await this.guard.allow(caller, r.path, action, this.guard.attrs(caller), true)
    const placement = (r.flags & KEY_REMOTE) !== 0 ? 'appliance' : 'host' // a handle keeps the placement of its open
    if (d.placement !== placement || !this.native(d)) throw new PemError('PEM_ERR_POLICY_DENY', `${r.path}: no longer under ${placement} placement`)
    const answer = await this.hostKey(r.fh, d, Buffer.from(r.data))
    if (answer === null) throw Object.assign(new Error(`${r.path}: its server runs no block service`), { code: 'EIO' })
    return answer
  }

  private opened (fh: number, h: CryptHandle): void {
    const old = this.handles.get(fh)
    if (old !== undefined) this.files.release(old.crypt) // a handle number the session reused without a release
    this.handles.set(fh, h)
  }

  private handleOf (fh: number): CryptHandle {
    const h = this.handles.get(fh)
    if (h === undefined) throw Object.assign(new Error('no such handle'), { code: 'EBADF' })
    return h
  }

  private async decisionOf (h: CryptHandle, action: Action): Promise<Decision> {
    let d = h.decisions.get(action)
    if (d === undefined) {
      d = await this.guard.allow(h.caller, h.path, action, h.attrs)
      h.decisions.set(action, d)
    }
    return d
  }

  /** The handle's data calls for `action`, each retried with a new decision when its grant is gone. */
  private granted (h: CryptHandle, action: Action): WithGrant {
    return async fn => {
      for (let attempt = 0; ; attempt++) {
        const d = await this.decisionOf(h, action)
        try {
          return await fn(d)
        } catch (err) {
          if (!(err instanceof PemError) || !REDECIDE.has(err.code) || attempt >= this.guard.client.servers.length) throw err
          h.decisions.set(action, await this.guard.allow(h.caller, h.path, action, h.attrs, true))
        }
      }
    }
  }

  /** A decision just made (open with O_TRUNC, create): used as it is. */
  private given (d: Decision): WithGrant { return async fn => await fn(d) }

  /** Cluster and protocol failures go to the log (at most one line per second); denials are the audit log's job. */
  private log (p: string, err: PemError): void {
    const now = Date.now()
    if (now - this.lastLog < 1000 && !DEBUG) return
    this.lastLog = now
    warn({ path: p, code: err.code }, withoutFdLinks(err.message, p))
  }
}
