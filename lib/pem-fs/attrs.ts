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

/**
 * SHA-256 (hex) of an executable (a path, or /proc/PID/exe), '' when it cannot be read. A hit costs one stat of the
 * path; a miss opens the file, hashes it and caches the hash only if the open file still has the identity stat saw.
 */
export function exeHash (file: string): string {
  let key: string
  try { key = statKey(fs.statSync(file, { bigint: true })) } catch { return '' }
  const hit = hashCache.get(key)
  if (hit !== undefined) return hit
  let fd: number
  try { fd = fs.openSync(file, 'r') } catch { return '' }
  try {
    const opened = statKey(fs.fstatSync(fd, { bigint: true }))
    const h = crypto.createHash('sha256')
    const buf = Buffer.allocUnsafe(1 << 20)
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.length, null)
      if (n === 0) break
      h.update(buf.subarray(0, n))
    }
    // The file may have changed while it was read: cache only if its identity held throughout.
    const hash = h.digest('hex')
    if (opened === key && statKey(fs.fstatSync(fd, { bigint: true })) === key) {
      if (hashCache.size >= HASH_CACHE_MAX) hashCache.delete(hashCache.keys().next().value as string)
      hashCache.set(key, hash)
    }
    return hash
  } catch { return '' } finally { fs.closeSync(fd) }
}

const statusBuf = Buffer.allocUnsafe(16 * 1024)

/** /proc/PID/status as text ('' when the process is gone), read into one reused buffer. */
function procStatus (pid: number): string {
  let fd: number
  try { fd = fs.openSync(`/proc/${pid}/status`, 'r') } catch { return '' }
  try { return statusBuf.toString('latin1', 0, fs.readSync(fd, statusBuf, 0, statusBuf.length, 0)) } catch { return '' } finally { fs.closeSync(fd) }
}

/** The value of a `Name:\tvalue` line of /proc/PID/status ('' when absent). */
function statusField (status: string, name: string): string {
  const at = status.indexOf(`\n${name}:`)
  if (at === -1) return ''
  const from = at + name.length + 2
  const end = status.indexOf('\n', from)
  return status.slice(from, end === -1 ? undefined : end).trim()
}

/**
 * Supplementary groups (the kernel-reported gid first) and session id, both from /proc/PID/status: `Groups:` and
 * the first `NSsid:` value (the session in the pid namespace of our /proc, as /proc/PID/stat field 6 would give it).
 */
function groupsAndSession (pid: number, gid: number): { gids: number[], sid: number } {
  const status = procStatus(pid)
  const listed = statusField(status, 'Groups').split(/\s+/).filter(Boolean).map(Number).filter(Number.isInteger)
  const sid = Number(statusField(status, 'NSsid').split(/\s+/)[0]) || 0
  return { gids: [gid, ...listed.filter(g => g !== gid)].slice(0, 64), sid }
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
  const { gids, sid } = groupsAndSession(pid, gid)
  const attrs: AccessAttrs = { uid, gids, pid, sid, exe, exeHash: exe === '' ? '' : exeHash(`/proc/${pid}/exe`), auth }
  const user = userName(uid)
  if (user !== undefined) attrs.user = user
  return attrs
}

export function hostName (): string { return os.hostname() }
