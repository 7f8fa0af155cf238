// FUSE operations on attributes: getattr, chmod, chown, utimens, truncate, statfs. Each asks the guard first.
import fs from 'node:fs'
import type { FsState, FuseStat, Reply } from './fs-state'
import type { Decision } from './guard'
import { toFuseStat } from './fs-state'
import { requestedTimes, type TimeSpec } from './utimens'

const U32 = 0xffffffff
const clamp = (n: number): number => Math.min(Math.max(0, Math.floor(n)), U32)

export interface FuseStatfs { bsize: number, frsize: number, blocks: number, bfree: number, bavail: number, files: number, ffree: number, favail: number, fsid: number, flag: number, namemax: number }

/** Size of a regular file as applications see it under its getattr decision (encrypted: plaintext size). */
export type SizeOf = (real: string, st: fs.Stats, d: Decision) => number

export function attrOps (s: FsState, sizeOf: SizeOf): Record<string, unknown> {
  return {
    getattr (raw: string, cb: Reply<FuseStat>) {
      s.serve(raw, cb, async (c, p) => {
        const d = await s.guard.allow(c, p, 'getattr')
        const real = s.real(p)
        const st = fs.lstatSync(real)
        return toFuseStat(st, st.isFile() && !d.bypass ? sizeOf(real, st, d) : st.size)
      })
    },
    chmod (raw: string, mode: number, cb: Reply<void>) {
      s.serve(raw, cb, async (c, p) => {
        await s.guard.allow(c, p, 'chmod')
        fs.chmodSync(s.real(p), mode & 0o7777)
      })
    },
    chown (raw: string, uid: number, gid: number, cb: Reply<void>) {
      s.serve(raw, cb, async (c, p) => {
        await s.guard.allow(c, p, 'chown')
        fs.lchownSync(s.real(p), uid === U32 ? -1 : uid, gid === U32 ? -1 : gid)
      })
    },
    utimens (raw: string, atime: number, _mtime: number, cb: Reply<void>) {
      s.serve(raw, cb, async (c, p) => {
        const [a, m] = requestedTimes(c.pid, atime)
        await s.guard.allow(c, p, 'utimens')
        const real = s.real(p)
        const now = Date.now()
        const st = a === 'omit' || m === 'omit' ? fs.lstatSync(real) : null
        const sec = (t: TimeSpec, old: number | undefined): number => (t === 'now' ? now : t === 'omit' ? old ?? now : t) / 1000
        fs.lutimesSync(real, sec(a, st?.atimeMs), sec(m, st?.mtimeMs))
      })
    },
    statfs (raw: string, cb: Reply<FuseStatfs>) {
      s.serve(raw, cb, async (c, p) => {
        await s.guard.allow(c, p, 'statfs')
        const v = fs.statfsSync(s.root)
        return { bsize: v.bsize, frsize: v.bsize, blocks: clamp(v.blocks), bfree: clamp(v.bfree), bavail: clamp(v.bavail), files: clamp(v.files), ffree: clamp(v.ffree), favail: clamp(v.ffree), fsid: 0, flag: 0, namemax: 255 }
      })
    }
  }
}
