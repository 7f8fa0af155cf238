// The times a caller asked for in utimens. fuse-native 2.2.6 passes the access time twice and drops the modification
// time (fuse-friends/fuse-native, fuse-native.c: FUSE_UINT64_TO_INTS_ARGV(l->atime, 5)); the caller's thread is blocked
// in its syscall while we answer, so its arguments are read back from /proc/TID/syscall and /proc/TID/mem (x86-64
// numbers). When that is impossible the one time fuse-native gave is used for both.
import fs from 'node:fs'

const UTIME_NOW = (1 << 30) - 1
const UTIME_OMIT = (1 << 30) - 2
// x86-64 syscall number → index of the times argument and its layout
const CALLS: Record<number, { arg: number, layout: 'timespec' | 'timeval' | 'utimbuf' }> = {
  280: { arg: 2, layout: 'timespec' }, // utimensat(dirfd, path, times, flags); futimens is utimensat(fd, NULL, …)
  235: { arg: 1, layout: 'timeval' }, // utimes(path, times)
  261: { arg: 2, layout: 'timeval' }, // futimesat(dirfd, path, times)
  132: { arg: 1, layout: 'utimbuf' } // utime(path, times)
}

/** A time in ms, 'now', or 'omit' (leave unchanged). */
export type TimeSpec = number | 'now' | 'omit'

function fromTimespec (sec: bigint, nsec: bigint): TimeSpec {
  if (nsec === BigInt(UTIME_NOW)) return 'now'
  if (nsec === BigInt(UTIME_OMIT)) return 'omit'
  return Number(sec) * 1000 + Number(nsec) / 1e6
}

function readTimes (tid: number): [TimeSpec, TimeSpec] | null {
  if (process.arch !== 'x64' || tid <= 0) return null
  let words: string[]
  try { words = fs.readFileSync(`/proc/${tid}/syscall`, 'utf8').trim().split(' ') } catch { return null }
  const call = CALLS[Number(words[0])]
  if (call === undefined) return null
  const ptr = Number(BigInt(words[1 + call.arg]))
  if (ptr === 0) return ['now', 'now']
  const buf = Buffer.alloc(call.layout === 'utimbuf' ? 16 : 32)
  let fd: number | undefined
  try {
    fd = fs.openSync(`/proc/${tid}/mem`, 'r')
    if (fs.readSync(fd, buf, 0, buf.length, ptr) !== buf.length) return null
  } catch { return null } finally { if (fd !== undefined) fs.closeSync(fd) }
  const q = (i: number): bigint => buf.readBigInt64LE(i * 8)
  if (call.layout === 'utimbuf') return [Number(q(0)) * 1000, Number(q(1)) * 1000]
  if (call.layout === 'timeval') return [Number(q(0)) * 1000 + Number(q(1)) / 1000, Number(q(2)) * 1000 + Number(q(3)) / 1000]
  return [fromTimespec(q(0), q(1)), fromTimespec(q(2), q(3))]
}

/** [atime, mtime] the caller `tid` asked for; `given` is the (access) time fuse-native passed. */
export function requestedTimes (tid: number, given: number): [TimeSpec, TimeSpec] {
  const t = readTimes(tid)
  if (t !== null) return t
  // libfuse passes UTIME_NOW and UTIME_OMIT with tv_sec 0: both arrive as 1073 ms. Treat as "now" (touch).
  const v: TimeSpec = given < 2000 ? 'now' : given
  return [v, v]
}
