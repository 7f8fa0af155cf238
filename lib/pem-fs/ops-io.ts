// FUSE operations on file data: open/create decide the transaction (read and/or write) once and the handle carries
// it. Bypass decisions: read/write/ftruncate/fsync go straight to the backing fd without a round trip. apply_key
// decisions: the handle shares the inode's CryptFile and its data passes through spd with the decision's grant
// (crypt-file.ts); an expired or unknown grant (spd restarted, failed over) makes the handle decide again and retry
// that data call. Encrypted writes finish in the background: fsync and flush (close) of a handle that wrote wait for
// them and report a failure, once per such handle; a reader's close neither waits nor hears of it.
import fs from 'node:fs'
import type { CryptFile, WithGrant } from './crypt-file'
import type { CryptFiles } from './crypt-files'
import { REDECIDE } from './client'
import type { Caller } from './fuse-ctx'
import type { Decision } from './guard'
import type { FsState, Handle, Reply } from './fs-state'
import { PemError } from '../wire/errors'
import type { AccessAttrs, Action } from '../wire/packets'

const { O_ACCMODE = 3, O_RDONLY, O_WRONLY, O_RDWR, O_CREAT, O_EXCL, O_NOCTTY, O_APPEND, O_DIRECT = 0o40000, O_TRUNC } = fs.constants as unknown as Record<string, number>
// O_DIRECT would make the backing file demand aligned buffers; creation flags were handled by the kernel. O_APPEND
// stays on a bypass handle's backing fd, where pwrite then appends at the true end whatever offset the kernel sent
// (its size can be stale: docs/PEMFS.md "O_APPEND"); an encrypted handle remembers it and writes at CryptFile's end.
const STRIP = O_DIRECT | O_CREAT | O_EXCL | O_NOCTTY

const done = async (f: (cb: (e: NodeJS.ErrnoException | null) => void) => void): Promise<void> =>
  await new Promise((resolve, reject) => f(e => e === null ? resolve() : reject(e)))

function needed (flags: number): Action[] {
  const acc = flags & O_ACCMODE
  const actions: Action[] = acc === O_RDONLY ? ['read'] : acc === O_WRONLY ? ['write'] : ['read', 'write']
  if ((flags & O_TRUNC) !== 0) actions.push('truncate')
  return actions
}

const errnoOf = (e: NodeJS.ErrnoException): number => -(e.errno !== undefined ? Math.abs(e.errno) : 5)
/** fuse-native's read/write callbacks take one number: the byte count, or a negative errno. */
const counted = (cb: (n: number) => void): Reply<number> => (err, n) => cb(err !== 0 ? err : n ?? 0)

export function ioOps (s: FsState, files: CryptFiles): Record<string, unknown> {
  const decisionOf = async (h: Handle, action: Action): Promise<Decision> => {
    let d = h.decisions.get(action)
    if (d === undefined) {
      d = await s.guard.allow(h.caller, h.path, action, h.attrs)
      h.decisions.set(action, d)
    }
    return d
  }
  /** Runs a data call with the handle's decision for `action`; decides again when the grant is gone. */
  const withGrant = async <T>(h: Handle, action: Action, fn: (d: Decision) => Promise<T>): Promise<T> => {
    for (let attempt = 0; ; attempt++) {
      const d = await decisionOf(h, action)
      try {
        return await fn(d)
      } catch (err) {
        if (!(err instanceof PemError) || !REDECIDE.has(err.code) || attempt >= s.guard.client.servers.length) throw err
        h.decisions.set(action, await s.guard.allow(h.caller, h.path, action, h.attrs, true))
      }
    }
  }
  /** The handle's data calls for `action`, each retried with a new decision when its grant is gone. */
  const granted = (h: Handle, action: Action): WithGrant => async fn => await withGrant(h, action, fn)
  /** A decision just made (open with O_TRUNC, create): used as it is. */
  const given = (d: Decision): WithGrant => async fn => await fn(d)
  const handleOf = (fh: number): Handle => {
    const h = s.handles.get(fh)
    if (h === undefined) throw Object.assign(new Error('no such handle'), { code: 'EBADF' })
    return h
  }
  const opened = (fd: number, p: string, caller: Caller, attrs: AccessAttrs, ds: Array<[Action, Decision]>, crypt: CryptFile | null, append = false): number =>
    s.addHandle({ fd, path: p, caller, attrs, decisions: new Map(ds), crypt, wrote: false, failuresSeen: crypt?.failures ?? 0, append })
  /** The inode's shared state. Plaintext left from before opens (reads serve it as it is, writes get EROFS). */
  const cryptOf = async (p: string, flags: number, ds: Decision[]): Promise<CryptFile> => {
    const f = files.acquire(s.real(p))
    try {
      if ((flags & O_TRUNC) !== 0) await f.truncate(given(ds[ds.length - 1]), s.real(p), 0)
      if (f.kind === 'plaintext') f.noteLegacy(s.real(p))
      return f
    } catch (err) { files.release(f); throw err }
  }
  const readDecision = (h: Handle): Action => h.decisions.has('read') || !h.decisions.has('write') ? 'read' : 'write'

  return {
    open (raw: string, flags: number, cb: Reply<number>) {
      s.serve(raw, cb, async (c, p) => {
        const attrs = s.guard.attrs(c)
        const actions = needed(flags)
        const ds = await Promise.all(actions.map(async a => await s.guard.allow(c, p, a, attrs)))
        const encrypted = ds.some(d => !d.bypass)
        const fd = fs.openSync(s.real(p), flags & ~STRIP & ~(encrypted ? O_TRUNC | O_APPEND : 0))
        let crypt: CryptFile | null = null
        try {
          if (encrypted) crypt = await cryptOf(p, flags, ds)
        } catch (err) { fs.closeSync(fd); throw err }
        return opened(fd, p, c, attrs, actions.map((a, i) => [a, ds[i]]), crypt, (flags & O_APPEND) !== 0)
      })
    },
    create (raw: string, mode: number, cb: Reply<number>) {
      s.serve(raw, cb, async (c, p) => {
        const attrs = s.guard.attrs(c)
        const d = await s.guard.allow(c, p, 'create', attrs)
        const fd = fs.openSync(s.real(p), O_CREAT | O_RDWR, mode & 0o7777)
        s.own(p, c)
        let crypt: CryptFile | null = null
        if (!d.bypass) {
          try {
            crypt = files.acquire(s.real(p))
            await crypt.create(given(d), s.real(p))
          } catch (err) {
            if (crypt !== null) files.release(crypt)
            fs.closeSync(fd)
            throw err
          }
        }
        return opened(fd, p, c, attrs, [['write', d]], crypt)
      })
    },
    read (raw: string, fh: number, buf: Buffer, len: number, pos: number, cb: (n: number) => void) {
      const h = s.handles.get(fh)
      if (h !== undefined && h.crypt === null && h.decisions.has('read')) { // the fast path: no promise, no round trip
        s.counts.reads++
        fs.read(h.fd, buf, 0, len, pos, (e, n) => { if (e === null) s.counts.bytesRead += n; cb(e === null ? n : errnoOf(e)) })
        return
      }
      s.serve(raw, counted(cb), async () => {
        const hh = handleOf(fh)
        s.counts.reads++
        const crypt = hh.crypt
        const n = crypt !== null
          ? await crypt.read(granted(hh, readDecision(hh)), buf, len, pos)
          : await decisionOf(hh, 'read').then(async () => await new Promise<number>((resolve, reject) => fs.read(hh.fd, buf, 0, len, pos, (e, r) => e === null ? resolve(r) : reject(e))))
        s.counts.bytesRead += n
        return n
      })
    },
    write (raw: string, fh: number, buf: Buffer, len: number, pos: number, cb: (n: number) => void) {
      const h = s.handles.get(fh)
      if (h !== undefined && h.crypt === null && h.decisions.has('write')) {
        s.counts.writes++
        fs.write(h.fd, buf, 0, len, pos, (e, n) => { if (e === null) s.counts.bytesWritten += n; cb(e === null ? n : errnoOf(e)) })
        return
      }
      s.serve(raw, counted(cb), async () => {
        const hh = handleOf(fh)
        s.counts.writes++
        const crypt = hh.crypt
        if (crypt !== null) hh.wrote = true // before the write is queued: a failure from here on is this handle's to hear
        const n = crypt !== null
          ? await crypt.write(granted(hh, 'write'), s.real(hh.path), buf, len, pos, hh.append)
          : await decisionOf(hh, 'write').then(async () => await new Promise<number>((resolve, reject) => fs.write(hh.fd, buf, 0, len, pos, (e, r) => e === null ? resolve(r) : reject(e))))
        s.counts.bytesWritten += n
        return n
      })
    },
    release (raw: string, fh: number, cb: Reply<void>) {
      s.serve(raw, cb, async () => {
        const h = s.handles.get(fh)
        s.handles.delete(fh)
        if (h === undefined) return
        if (h.crypt !== null) {
          await h.crypt.drain() // a failure was for fsync/flush to report; the fd must outlive the writes
          files.release(h.crypt)
        }
        fs.closeSync(h.fd)
      })
    },
    flush (raw: string, fh: number, cb: Reply<void>) {
      const h = s.handles.get(fh)
      if (h === undefined || h.crypt === null || !h.wrote) { cb(0); return } // nothing of its own to wait for
      const crypt = h.crypt
      s.serve(raw, cb, async () => { await crypt.settle(h) })
    },
    fsync (raw: string, datasync: number, fh: number, cb: Reply<void>) {
      s.serve(raw, cb, async () => {
        const h = handleOf(fh)
        if (h.crypt !== null) await h.crypt.settle(h)
        await done(cb2 => datasync !== 0 ? fs.fdatasync(h.fd, cb2) : fs.fsync(h.fd, cb2))
      })
    },
    truncate (raw: string, size: number, cb: Reply<void>) {
      s.serve(raw, cb, async (c, p) => {
        const attrs = s.guard.attrs(c)
        const d = await s.guard.allow(c, p, 'truncate', attrs)
        if (d.bypass) { fs.truncateSync(s.real(p), size); return }
        const f = files.acquire(s.real(p))
        // A short-lived handle, so that a lost grant is decided again like any handle's.
        const h: Handle = { fd: f.fd, path: p, caller: c, attrs, decisions: new Map([['truncate', d]]), crypt: f, wrote: false, failuresSeen: f.failures, append: false }
        try { await f.truncate(granted(h, 'truncate'), s.real(p), size) } finally { files.release(f) }
      })
    },
    ftruncate (raw: string, fh: number, size: number, cb: Reply<void>) {
      s.serve(raw, cb, async () => {
        const h = handleOf(fh)
        const crypt = h.crypt
        if (crypt !== null) { await crypt.truncate(granted(h, 'write'), s.real(h.path), size); return }
        await decisionOf(h, 'write')
        await done(cb2 => fs.ftruncate(h.fd, size, cb2))
      })
    }
  }
}
