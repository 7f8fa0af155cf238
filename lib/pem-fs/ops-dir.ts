// FUSE operations on names: readdir, mkdir, mknod, rmdir, unlink, rename, link, symlink, readlink. Each asks the guard first;
// entries a caller creates are given to the caller (pemfs itself runs as root). Calls on the backing directory are
// synchronous (fs-state.ts says why).
import fs from 'node:fs'
import { callerOf } from './fuse-ctx'
import type { FsState, Reply } from './fs-state'
import { mknod } from '../native/fs-calls'

export function dirOps (s: FsState): Record<string, unknown> {
  return {
    readdir (raw: string, cb: Reply<string[]>) {
      s.serve(raw, cb, async (c, p) => {
        await s.guard.allow(c, p, 'list')
        return ['.', '..', ...fs.readdirSync(s.real(p))]
      })
    },
    mkdir (raw: string, mode: number, cb: Reply<void>) {
      s.serve(raw, cb, async (c, p) => {
        await s.guard.allow(c, p, 'mkdir')
        fs.mkdirSync(s.real(p), { mode: mode & 0o7777 })
        s.own(p, c)
      })
    },
    // FIFOs, sockets, device nodes (the kernel lets only a caller with CAP_MKNOD ask for those) and plain files.
    mknod (raw: string, mode: number, dev: number, cb: Reply<void>) {
      s.serve(raw, cb, async (c, p) => {
        await s.guard.allow(c, p, 'create')
        mknod(s.real(p), mode, dev)
        s.own(p, c)
      })
    },
    rmdir (raw: string, cb: Reply<void>) {
      s.serve(raw, cb, async (c, p) => {
        await s.guard.allow(c, p, 'rmdir')
        fs.rmdirSync(s.real(p))
      })
    },
    unlink (raw: string, cb: Reply<void>) {
      s.serve(raw, cb, async (c, p) => {
        await s.guard.allow(c, p, 'delete')
        fs.unlinkSync(s.real(p))
      })
    },
    rename (raw: string, dest: string, cb: Reply<void>) {
      s.serve(raw, cb, async (c, p) => {
        const to = callerOf(dest).path
        await Promise.all([s.guard.allow(c, p, 'rename'), s.guard.allow(c, to, 'rename')])
        fs.renameSync(s.real(p), s.real(to))
      })
    },
    link (raw: string, dest: string, cb: Reply<void>) {
      s.serve(raw, cb, async (c, p) => {
        const to = callerOf(dest).path
        await Promise.all([s.guard.allow(c, p, 'link'), s.guard.allow(c, to, 'link')])
        fs.linkSync(s.real(p), s.real(to))
      })
    },
    // libfuse: symlink(target, linkpath); the caller prefix rides on the target.
    symlink (rawTarget: string, link: string, cb: Reply<void>) {
      s.serve(rawTarget, cb, async (c, target) => {
        const p = callerOf(link).path
        await s.guard.allow(c, p, 'symlink')
        fs.symlinkSync(target, s.real(p))
        s.own(p, c)
      })
    },
    readlink (raw: string, cb: Reply<string>) {
      s.serve(raw, cb, async (c, p) => {
        await s.guard.allow(c, p, 'readlink')
        return fs.readlinkSync(s.real(p))
      })
    }
  }
}
