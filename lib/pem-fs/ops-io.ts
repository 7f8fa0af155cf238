// FUSE operations on file data: open/create decide the transaction (read and/or write) once and the handle carries it;
// read/write/ftruncate/fsync then go straight to the backing fd without a round trip. Bypass decisions only: data that
// must pass through the cluster is refused here until the encrypted data path is in (issue 4).
import fs from 'node:fs'
import type { Caller } from './fuse-ctx'
import type { Decision } from './guard'
import type { FsState, Handle, Reply } from './fs-state'
import { PemError } from '../wire/errors'
import type { AccessAttrs, Action } from '../wire/packets'

const { O_ACCMODE = 3, O_RDONLY, O_WRONLY, O_RDWR, O_CREAT, O_EXCL, O_NOCTTY, O_APPEND, O_DIRECT = 0o40000, O_TRUNC } = fs.constants as unknown as Record<string, number>
// O_DIRECT would make the backing file demand aligned buffers; O_APPEND is applied by the kernel, which hands us
// the offset at end of file (and pwrite ignores offsets under O_APPEND); creation flags were handled by the kernel.
const STRIP = O_DIRECT | O_APPEND | O_CREAT | O_EXCL | O_NOCTTY

const openFd = async (p: string, flags: number, mode?: number): Promise<number> =>
  await new Promise((resolve, reject) => fs.open(p, flags, mode, (e, fd) => e === null ? resolve(fd) : reject(e)))

const done = async (f: (cb: (e: NodeJS.ErrnoException | null) => void) => void): Promise<void> =>
  await new Promise((resolve, reject) => f(e => e === null ? resolve() : reject(e)))

function needed (flags: number): Action[] {
  const acc = flags & O_ACCMODE
  const actions: Action[] = acc === O_RDONLY ? ['read'] : acc === O_WRONLY ? ['write'] : ['read', 'write']
  if ((flags & O_TRUNC) !== 0) actions.push('truncate')
  return actions
}

function mustBypass (d: Decision, p: string): Decision {
  if (!d.bypass) throw new PemError('PEM_ERR_KEY_NOT_GRANTED', `${p}: the policy requires encryption (key ${d.key ?? '?'}), which this pemfs cannot do yet`)
  return d
}

export function ioOps (s: FsState): Record<string, unknown> {
  const decisionOf = async (h: Handle, action: Action): Promise<Decision> => {
    let d = h.decisions.get(action)
    if (d === undefined) {
      d = mustBypass(await s.guard.allow(h.caller, h.path, action, h.attrs), h.path)
      h.decisions.set(action, d)
    }
    return d
  }
  const handleOf = (fh: number): Handle => {
    const h = s.handles.get(fh)
    if (h === undefined) throw Object.assign(new Error('no such handle'), { code: 'EBADF' })
    return h
  }
  const opened = (fd: number, p: string, caller: Caller, attrs: AccessAttrs, ds: Array<[Action, Decision]>): number =>
    s.addHandle({ fd, path: p, caller, attrs, decisions: new Map(ds) })

  return {
    open (raw: string, flags: number, cb: Reply<number>) {
      s.serve(raw, cb, async (c, p) => {
        const attrs = s.guard.attrs(c)
        const actions = needed(flags)
        const ds = await Promise.all(actions.map(async a => mustBypass(await s.guard.allow(c, p, a, attrs), p)))
        const fd = await openFd(s.real(p), flags & ~STRIP)
        return opened(fd, p, c, attrs, actions.map((a, i) => [a, ds[i]]))
      })
    },
    create (raw: string, mode: number, cb: Reply<number>) {
      s.serve(raw, cb, async (c, p) => {
        const attrs = s.guard.attrs(c)
        const d = mustBypass(await s.guard.allow(c, p, 'create', attrs), p)
        const fd = await openFd(s.real(p), O_CREAT | O_RDWR, mode & 0o7777)
        await s.own(p, c)
        return opened(fd, p, c, attrs, [['write', d]])
      })
    },
    read (raw: string, fh: number, buf: Buffer, len: number, pos: number, cb: Reply<number>) {
      const h = s.handles.get(fh)
      if (h !== undefined && h.decisions.has('read')) { // the fast path: no promise, no round trip
        s.counts.reads++
        fs.read(h.fd, buf, 0, len, pos, (e, n) => { if (e === null) s.counts.bytesRead += n; cb(e === null ? n : -(e.errno !== undefined ? Math.abs(e.errno) : 5)) })
        return
      }
      s.serve(raw, cb, async () => {
        const hh = handleOf(fh)
        await decisionOf(hh, 'read')
        s.counts.reads++
        const n = await new Promise<number>((resolve, reject) => fs.read(hh.fd, buf, 0, len, pos, (e, r) => e === null ? resolve(r) : reject(e)))
        s.counts.bytesRead += n
        return n
      })
    },
    write (raw: string, fh: number, buf: Buffer, len: number, pos: number, cb: Reply<number>) {
      const h = s.handles.get(fh)
      if (h !== undefined && h.decisions.has('write')) {
        s.counts.writes++
        fs.write(h.fd, buf, 0, len, pos, (e, n) => { if (e === null) s.counts.bytesWritten += n; cb(e === null ? n : -(e.errno !== undefined ? Math.abs(e.errno) : 5)) })
        return
      }
      s.serve(raw, cb, async () => {
        const hh = handleOf(fh)
        await decisionOf(hh, 'write')
        s.counts.writes++
        const n = await new Promise<number>((resolve, reject) => fs.write(hh.fd, buf, 0, len, pos, (e, r) => e === null ? resolve(r) : reject(e)))
        s.counts.bytesWritten += n
        return n
      })
    },
    release (raw: string, fh: number, cb: Reply<void>) {
      s.serve(raw, cb, async () => {
        const h = s.handles.get(fh)
        s.handles.delete(fh)
        if (h !== undefined) await done(cb2 => fs.close(h.fd, cb2))
      })
    },
    flush (_raw: string, _fh: number, cb: Reply<void>) { cb(0) },
    fsync (raw: string, datasync: number, fh: number, cb: Reply<void>) {
      s.serve(raw, cb, async () => {
        const h = handleOf(fh)
        await done(cb2 => datasync !== 0 ? fs.fdatasync(h.fd, cb2) : fs.fsync(h.fd, cb2))
      })
    },
    truncate (raw: string, size: number, cb: Reply<void>) {
      s.serve(raw, cb, async (c, p) => {
        mustBypass(await s.guard.allow(c, p, 'truncate'), p)
        await fs.promises.truncate(s.real(p), size)
      })
    },
    ftruncate (raw: string, fh: number, size: number, cb: Reply<void>) {
      s.serve(raw, cb, async () => {
        const h = handleOf(fh)
        await decisionOf(h, 'write')
        await done(cb2 => fs.ftruncate(h.fd, size, cb2))
      })
    }
  }
}
