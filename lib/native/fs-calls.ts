// File-system calls Node has no API for (native/fs_calls.cc): mknod and the xattr family on a backing path, never
// following a symlink in the last component. Failures throw an Error with the system's code (ENOENT, ENODATA, ...),
// as node:fs does, so the FUSE layer maps them like any other system error.
import os from 'node:os'
import { raw } from './binding'

const NAMES = new Map(Object.entries(os.constants.errno).map(([name, n]) => [n, name]))

function check (r: number, syscall: string, path: string): number {
  if (r >= 0) return r
  const code = NAMES.get(-r) ?? 'EIO'
  throw Object.assign(new Error(`${code}: ${syscall} ${path}`), { code, errno: r, syscall, path })
}

/** Creates a FIFO, socket, device or empty regular file: `mode` includes the type bits (S_IFIFO, ...). */
export function mknod (path: string, mode: number, dev: number): void { check(raw.mknod(path, mode, dev), 'mknod', path) }

/** The attribute's value (ENODATA when it is not set). */
export function getxattr (path: string, name: string): Buffer {
  for (;;) {
    const size = check(raw.getxattr(path, name, null), 'getxattr', path)
    const out = Buffer.alloc(size)
    const r = raw.getxattr(path, name, out)
    if (r !== -os.constants.errno.ERANGE) return out.subarray(0, check(r, 'getxattr', path)) // ERANGE: it grew meanwhile
  }
}

export const XATTR_CREATE = 1
export const XATTR_REPLACE = 2

export function setxattr (path: string, name: string, value: Uint8Array, flags: number): void {
  check(raw.setxattr(path, name, value, flags), 'setxattr', path)
}

/** Names of the attributes set on `path`. */
export function listxattr (path: string): string[] {
  for (;;) {
    const size = check(raw.listxattr(path, null), 'listxattr', path)
    const out = Buffer.alloc(size)
    const r = raw.listxattr(path, out)
    if (r === -os.constants.errno.ERANGE) continue
    return out.toString('utf8', 0, check(r, 'listxattr', path)).split('\0').filter(n => n !== '')
  }
}

export function removexattr (path: string, name: string): void { check(raw.removexattr(path, name), 'removexattr', path) }
