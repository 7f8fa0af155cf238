// FUSE operations on extended attributes: stored on the backing file as they are (user.*, security.*, trusted.*; the
// kernel checks who may read or write each namespace before pemfs sees the call). POSIX ACLs (system.posix_acl_*) and
// every other system.* name are refused with EOPNOTSUPP: the kernel checks permissions from the mode bits alone on
// this mount, so a stored ACL would be shown but never honoured (docs/PEMFS.md "Permissions"). Names under
// RESERVED_PREFIXES belong to pemfs: invisible, unreadable and unwritable through the mount.
import type { FsState, Reply } from './fs-state'
import { getxattr, listxattr, removexattr, setxattr } from '../native/fs-calls'

export const RESERVED_PREFIXES = ['user.pemfs.', 'trusted.pemfs.'] as const

const reserved = (name: string): boolean => RESERVED_PREFIXES.some(p => name.startsWith(p))
const refuse = (code: string, name: string): never => { throw Object.assign(new Error(`${code}: ${name}`), { code, syscall: 'xattr' }) }

/** The errno an attribute name gets before any I/O, or null when it may be stored. */
function check (name: string, writing: boolean): void {
  if (name.startsWith('system.')) refuse('EOPNOTSUPP', name)
  if (reserved(name)) refuse(writing ? 'EPERM' : 'ENODATA', name)
}

export function xattrOps (s: FsState): Record<string, unknown> {
  return {
    getxattr (raw: string, name: string, _position: number, cb: Reply<Buffer>) {
      s.serve(raw, cb, async (c, p) => {
        check(name, false)
        await s.guard.allow(c, p, 'getattr')
        return getxattr(s.real(p), name)
      })
    },
    listxattr (raw: string, cb: Reply<string[]>) {
      s.serve(raw, cb, async (c, p) => {
        await s.guard.allow(c, p, 'getattr')
        return listxattr(s.real(p)).filter(n => !reserved(n))
      })
    },
    setxattr (raw: string, name: string, value: Buffer, _position: number, flags: number, cb: Reply<void>) {
      s.serve(raw, cb, async (c, p) => {
        check(name, true)
        await s.guard.allow(c, p, 'xattr')
        setxattr(s.real(p), name, value, flags)
      })
    },
    removexattr (raw: string, name: string, cb: Reply<void>) {
      s.serve(raw, cb, async (c, p) => {
        check(name, true)
        await s.guard.allow(c, p, 'xattr')
        removexattr(s.real(p), name)
      })
    }
  }
}
