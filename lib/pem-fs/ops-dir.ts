// FUSE operations on names: readdir, mkdir, rmdir, unlink, rename, link, symlink, readlink. Each asks the guard first;
// entries a caller creates are given to the caller (pemfs itself runs as root).
import fs from 'node:fs'
import { callerOf } from './fuse-ctx'
import type { FsState, Reply } from './fs-state'

export function dirOps (s: FsState): Record<string, unknown> {
  return {
    readdir (raw: string, cb: Reply<string[]>) {
      s.serve(raw, cb, async (c, p) => {
        await s.guard.allow(c, p, 'list')
        return ['.', '..', ...await fs.promises.readdir(s.real(p))]
      })
    },
    mkdir (raw: string, mode: number, cb: Reply<void>) {
      s.serve(raw, cb, async (c, p) => {
        await s.guard.allow(c, p, 'mkdir')
        await fs.promises.mkdir(s.real(p), { mode: mode & 0o7777 })
        await s.own(p, c)
      })
    },
    rmdir (raw: string, cb: Reply<void>) {
      s.serve(raw, cb, async (c, p) => {
        await s.guard.allow(c, p, 'rmdir')
        await fs.promises.rmdir(s.real(p))
      })
    },
    unlink (raw: string, cb: Reply<void>) {
      s.serve(raw, cb, async (c, p) => {
        await s.guard.allow(c, p, 'delete')
        await fs.promises.unlink(s.real(p))
      })
    },
    rename (raw: string, dest: string, cb: Reply<void>) {
      s.serve(raw, cb, async (c, p) => {
        const to = callerOf(dest).path
        await Promise.all([s.guard.allow(c, p, 'rename'), s.guard.allow(c, to, 'rename')])
        await fs.promises.rename(s.real(p), s.real(to))
      })
    },
    link (raw: string, dest: string, cb: Reply<void>) {
      s.serve(raw, cb, async (c, p) => {
        const to = callerOf(dest).path
        await Promise.all([s.guard.allow(c, p, 'link'), s.guard.allow(c, to, 'link')])
        await fs.promises.link(s.real(p), s.real(to))
      })
    },
    // libfuse: symlink(target, linkpath); the caller prefix rides on the target.
    symlink (rawTarget: string, link: string, cb: Reply<void>) {
      s.serve(rawTarget, cb, async (c, target) => {
        const p = callerOf(link).path
        await s.guard.allow(c, p, 'symlink')
        await fs.promises.symlink(target, s.real(p))
        await s.own(p, c)
      })
    },
    readlink (raw: string, cb: Reply<string>) {
      s.serve(raw, cb, async (c, p) => {
        await s.guard.allow(c, p, 'readlink')
        return await fs.promises.readlink(s.real(p))
      })
    }
  }
}
