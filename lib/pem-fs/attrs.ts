// Access attributes of the process behind a file operation, read from /proc: groups, session, executable and its
// SHA-256. Hashes are cached by device + inode + size + mtime + ctime: ctime cannot be set by a file's owner, so
// replacing a binary and restoring its mtime still misses the cache (CHECKLIST I.35).
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import type { AccessAttrs } from '../wire/packets'

const HASH_CACHE_MAX = 4096
const hashCache = new Map<string, string>() // file identity (statKey) -> hex SHA-256

function statKey (st: fs.BigIntStats): string {
  return `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`
}

/** SHA-256 (hex) of an executable (a path, or /proc/PID/exe), '' when it cannot be read. */
export function exeHash (file: string): string {
  let fd: number
  try { fd = fs.openSync(file, 'r') } catch { return '' }
  try {
    const key = statKey(fs.fstatSync(fd, { bigint: true }))
    const hit = hashCache.get(key)
    if (hit !== undefined) return hit
    const h = crypto.createHash('sha256')
    const buf = Buffer.allocUnsafe(1 << 20)
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.length, null)
      if (n === 0) break
      h.update(buf.subarray(0, n))
    }
    // The file may have changed while it was read: cache only if its identity held.
    const hash = h.digest('hex')
    if (statKey(fs.fstatSync(fd, { bigint: true })) === key) {
      if (hashCache.size >= HASH_CACHE_MAX) hashCache.delete(hashCache.keys().next().value as string)
      hashCache.set(key, hash)
    }
    return hash
  } catch { return '' } finally { fs.closeSync(fd) }
}

/** Session id (field 6 of /proc/PID/stat), 0 when the process is gone. */
function sessionOf (pid: number): number {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return Number(rest[3]) || 0
  } catch { return 0 }
}

function groupsOf (pid: number, gid: number): number[] {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8')
    const line = /^Groups:[ \t]*(.*)$/m.exec(status)
    const gids = line === null ? [] : line[1].trim().split(/\s+/).filter(Boolean).map(Number).filter(Number.isInteger)
    return [gid, ...gids.filter(g => g !== gid)].slice(0, 64)
  } catch { return [gid] }
}

function exeOf (pid: number): string {
  try { return fs.readlinkSync(`/proc/${pid}/exe`) } catch { return '' }
}

const userNames = new Map<number, string | undefined>()
function userName (uid: number): string | undefined {
  if (!userNames.has(uid)) {
    let name: string | undefined
    try {
      const line = fs.readFileSync('/etc/passwd', 'utf8').split('\n').find(l => l.split(':')[2] === String(uid))
      name = line?.split(':')[0]
    } catch { name = undefined }
    userNames.set(uid, name)
  }
  return userNames.get(uid)
}

/** Attributes of `pid`, whose credentials the kernel reported as uid/gid (FUSE context). */
export function attrsOf (pid: number, uid: number, gid: number, auth = 0): AccessAttrs {
  const exe = exeOf(pid)
  const attrs: AccessAttrs = { uid, gids: groupsOf(pid, gid), pid, sid: sessionOf(pid), exe, exeHash: exe === '' ? '' : exeHash(`/proc/${pid}/exe`), auth }
  const user = userName(uid)
  if (user !== undefined) attrs.user = user
  return attrs
}

export function hostName (): string { return os.hostname() }
