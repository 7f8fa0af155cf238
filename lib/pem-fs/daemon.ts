// A mount's life outside the terminal: the run files of a guard point (pid, control socket, log under the config
// dir), the control socket that `pemfs status` reads, starting a detached daemon that reports readiness before
// its parent exits, and stopping it (SIGTERM → clean unmount; a dead daemon's mount is detached with umount -l),
// after checking that no process still uses the mount (a busy mount is detached only when asked to: --lazy).
import { execFile, spawn } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import type { Mounted } from './mount'
import { heapTuned } from '../native/memory'
import { PemError } from '../wire/errors'

/** sock: the control socket (status); convertSock: running conversions register there (conversions.ts). */
export interface RunFiles { pid: string, sock: string, convertSock: string, log: string }

export function runFiles (configDir: string, dir: string): RunFiles {
  const id = crypto.createHash('sha256').update(path.resolve(dir)).digest('hex').slice(0, 16)
  const run = path.join(configDir, 'run')
  fs.mkdirSync(run, { recursive: true, mode: 0o700 })
  return { pid: path.join(run, `${id}.pid`), sock: path.join(run, `${id}.sock`), convertSock: path.join(run, `${id}.convert.sock`), log: path.join(run, `${id}.log`) }
}

/** What `pemfs status` prints: the mount and the client's server table. */
export function statusOf (m: Mounted): Record<string, unknown> {
  const now = Date.now()
  const mem = process.memoryUsage()
  const mib = (n: number): number => Math.round(n / 1048576 * 10) / 10
  const stats = m.session.mounted ? m.session.stats() : undefined
  return {
    dir: m.dir,
    backing: m.backing,
    pid: process.pid,
    pv: m.client.pv,
    selection: m.client.selection,
    handles: stats?.handles ?? 0,
    rssMiB: mib(mem.rss),
    heapMiB: mib(mem.heapUsed),
    buffersMiB: mib(mem.arrayBuffers),
    heapTuned: heapTuned(),
    ops: stats?.ops ?? 0, // every FUSE request the session served
    ...m.crypt.counts, // reads, writes and bytes of encrypted handles, errors of their data calls
    bytesRead: m.crypt.counts.bytesRead + (stats?.hostBytesRead ?? 0), // with those served natively
    bytesWritten: m.crypt.counts.bytesWritten + (stats?.hostBytesWritten ?? 0),
    nativeCacheHits: stats?.cacheHits ?? 0,
    nativeJsCalls: stats?.jsCalls ?? 0, // decisions the native session asked of this process (its cache missed)
    timeouts: stats?.timeouts ?? 0,
    // host placement (issue 18): files the native side serves now, keys it was handed (a count, never material),
    // keys it holds now (wiped at their ttl, on a pushed revocation and at the last close), keys wiped before the
    // last close (expired or revoked), key calls after a key was gone, and its data calls
    hostFiles: stats?.hostNodes ?? 0,
    hostKeys: stats?.hostKeys ?? 0,
    hostKeysHeld: stats?.hostKeysHeld ?? 0,
    hostKeysDropped: stats?.hostKeysDropped ?? 0,
    hostKeyCalls: stats?.hostKeyCalls ?? 0,
    hostReads: stats?.hostReads ?? 0,
    hostWrites: stats?.hostWrites ?? 0,
    // appliance placement on the native block path: grants installed, requests and blocks sent to spd's block service
    blockGrants: stats?.blockGrants ?? 0,
    blockRequests: stats?.blockRequests ?? 0,
    blockBlocks: stats?.blockBlocks ?? 0,
    blockConnects: stats?.blockConnects ?? 0,
    blockLinksLost: stats?.blockLinksLost ?? 0,
    blockBehindWrites: stats?.blockBehindWrites ?? 0, // writes that returned before spd sealed them
    blockAheadBytes: stats?.blockAheadBytes ?? 0, // bytes read from windows opened ahead
    hostSpareKeys: stats?.hostSpareKeys ?? 0, // new files' keys held for the next creates (a count)
    hostSpareTakes: stats?.hostSpareTakes ?? 0,
    opLatency: stats?.opLatency ?? null, // FUSE requests served, by op class and latency bucket (metrics.ts)
    ...m.guard.stats,
    servers: m.client.servers.map(s => ({
      name: s.entry.name,
      addr: s.entry.addr,
      state: s.state === 'down' && s.downUntil <= now ? 'retry' : s.state,
      load: s.load?.total ?? null,
      weight: s.weight,
      preference: s.preference,
      inflight: s.inflight,
      latencyMs: s.latencyMs === null ? null : Math.round(s.latencyMs * 100) / 100,
      pv: s.pv,
      requests: s.requests,
      rejections: s.rejections,
      loadAgeMs: s.loadAt === 0 ? null : now - s.loadAt
    }))
  }
}

export function serveControl (file: string, status: () => Record<string, unknown>): net.Server {
  fs.rmSync(file, { force: true })
  const server = net.createServer(sock => { sock.end(JSON.stringify(status()) + '\n') })
  server.listen(file)
  server.unref()
  return server
}

export async function readControl (file: string, timeoutMs = 3000): Promise<Record<string, unknown>> {
  return await new Promise((resolve, reject) => {
    const sock = net.connect(file)
    let text = ''
    const timer = setTimeout(() => { sock.destroy(); reject(new PemError('PEM_ERR_TIMEOUT', `${file} did not answer`)) }, timeoutMs)
    sock.on('data', c => { text += c.toString('utf8') })
    sock.on('error', err => { clearTimeout(timer); reject(new PemError('PEM_ERR_NOT_FOUND', `no pemfs mount answers at ${file}: ${err.message}`)) })
    sock.on('end', () => { clearTimeout(timer); try { resolve(JSON.parse(text)) } catch (err) { reject(err) } })
  })
}

/**
 * Node flags of the mount daemon (bin/pemfs.js's shebang names them too, for `--foreground` runs). A young generation
 * of 1 MiB per semi-space (Node's default grows to 16 MiB) is swept every few hundred requests, so the data path's
 * short-lived buffers (TLS chunks, frames) are freed within milliseconds instead of waiting for a full GC: peak RSS of
 * the encrypted mount through sequential, random and small-file work 136 → 104 MiB, throughput unchanged (docs/PEMFS.md).
 */
export const DAEMON_NODE_FLAGS = ['--max-semi-space-size=1']

/**
 * Starts `node <cli> mount ... --foreground` detached, with fd 3 as its readiness pipe; resolves once the child says
 * it serves, rejects with the child's own error line otherwise.
 */
export async function startDaemon (cli: string, args: string[], logFile: string, timeoutMs = 20000): Promise<number> {
  const log = fs.openSync(logFile, 'a', 0o600)
  // cwd /: a daemon started from inside the guard point must not keep it busy (pemfs unmount checks for users).
  const child = spawn(process.execPath, [...DAEMON_NODE_FLAGS, cli, ...args], { cwd: '/', detached: true, stdio: ['ignore', log, log, 'pipe'], env: { ...process.env, PEMFS_READY_FD: '3' } })
  fs.closeSync(log)
  const ready = child.stdio[3] as NodeJS.ReadableStream
  return await new Promise((resolve, reject) => {
    let text = ''
    const timer = setTimeout(() => { child.kill('SIGTERM'); reject(new PemError('PEM_ERR_TIMEOUT', `the mount did not become ready in ${timeoutMs} ms (log: ${logFile})`)) }, timeoutMs)
    ready.on('data', (c: Buffer) => { text += c.toString('utf8') })
    ready.on('end', () => {
      clearTimeout(timer)
      child.unref()
      if (text.startsWith('ready')) resolve(child.pid ?? 0)
      else reject(new PemError('PEM_ERR_BAD_CONFIG', text.replace(/^error: /, '').trim() || `the mount daemon exited (log: ${logFile})`))
    })
  })
}

/** Tells the parent (if any) that this process serves, or why it could not. */
export function signalReady (message: string): void {
  const fd = Number(process.env.PEMFS_READY_FD)
  if (!Number.isInteger(fd) || fd < 3) return
  try { fs.writeSync(fd, message + '\n'); fs.closeSync(fd) } catch { /* the parent is gone; nothing to tell */ }
  delete process.env.PEMFS_READY_FD
}

const alive = (pid: number): boolean => { try { process.kill(pid, 0); return true } catch { return false } }
const run = async (cmd: string, args: string[]): Promise<boolean> =>
  await new Promise(resolve => execFile(cmd, args, { timeout: 10000 }, err => resolve(err === null)))

/**
 * Is a pemfs mount (a FUSE mount whose fsname starts with `pemfs:`) on `dir`? Other file systems mounted there (the
 * volume a guard point lives on) are never counted, so unmount can never detach them.
 */
export function isMounted (dir: string): boolean {
  return pemfsMounts().includes(path.resolve(dir))
}

/** The guard points of every pemfs mount in the mount table. */
export function pemfsMounts (): string[] {
  return fs.readFileSync('/proc/self/mounts', 'utf8').split('\n').flatMap(l => {
    const [source, where, type] = l.split(' ')
    return where !== undefined && type?.startsWith('fuse') === true && source?.startsWith('pemfs:') === true ? [where.replace(/\\040/g, ' ')] : []
  })
}

function commandOf (pid: number): string {
  try { return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim() } catch { return '?' }
}

export interface Holder { pid: number, command: string, what: string }

/** The parent pid of `pid` (0 when it is gone). */
function parentOf (pid: number): number {
  try { return Number(/\nPPid:\s*(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) } catch { return 0 }
}

/**
 * The processes (other than `except` and their children: the daemon's own helpers, such as the fusermount3 that
 * auto_unmount leaves holding the mount point) whose working directory, root, an open file or a mapped file is `dir`
 * or under it, as fuser(1) finds them: readlink of /proc entries only, so the mount itself is never touched (its
 * daemon may be the one to answer). Processes this user may not inspect are skipped.
 */
export function holdersOf (dir: string, except: ReadonlySet<number>): Holder[] {
  const target = path.resolve(dir)
  const inside = (p: string): boolean => p === target || p.startsWith(target + '/')
  const link = (f: string): string => { try { return fs.readlinkSync(f) } catch { return '' } }
  const out: Holder[] = []
  for (const name of fs.readdirSync('/proc')) {
    const pid = Number(name)
    if (!Number.isInteger(pid) || pid <= 0 || except.has(pid)) continue
    const at = `/proc/${pid}`
    let what: string | undefined
    if (inside(link(`${at}/cwd`))) what = 'its working directory'
    else if (inside(link(`${at}/root`))) what = 'its root directory'
    if (what === undefined) {
      let fds: string[] = []
      try { fds = fs.readdirSync(`${at}/fd`) } catch {}
      const open = fds.map(fd => link(`${at}/fd/${fd}`)).find(inside)
      if (open !== undefined) what = `${open} open`
    }
    if (what === undefined) {
      let maps = ''
      try { maps = fs.readFileSync(`${at}/maps`, 'utf8') } catch {}
      const mapped = maps.split('\n').map(l => l.includes('/') ? l.slice(l.indexOf('/')) : '').find(inside)
      if (mapped !== undefined) what = `${mapped} mapped`
    }
    if (what !== undefined && !except.has(parentOf(pid))) out.push({ pid, command: commandOf(pid), what })
  }
  return out
}

/**
 * Stops the daemon serving `dir` (SIGTERM, then SIGKILL after `graceMs`) and makes sure nothing stays mounted.
 * `known` is its pid when the caller has it (the guard point's lock names it, whichever config dir started it);
 * otherwise the pid file of this config dir says.
 */
export async function stopDaemon (files: RunFiles, dir: string, known: number | null = null, graceMs = 10000): Promise<{ pid: number | null, detached: boolean }> {
  let pid: number | null = known
  if (pid === null) try { pid = Number(fs.readFileSync(files.pid, 'utf8').trim()) || null } catch { pid = null }
  if (pid !== null && alive(pid)) {
    process.kill(pid, 'SIGTERM')
    const until = Date.now() + graceMs
    while (alive(pid) && Date.now() < until) await new Promise(resolve => setTimeout(resolve, 50))
    if (alive(pid)) process.kill(pid, 'SIGKILL')
  }
  let detached = false
  if (isMounted(dir)) {
    detached = await run('fusermount', ['-uz', dir]) || await run('umount', ['-l', dir])
    if (!detached) throw new PemError('PEM_ERR_BUSY', `${dir} is still mounted and could not be detached`)
  }
  fs.rmSync(files.pid, { force: true })
  fs.rmSync(files.sock, { force: true })
  return { pid, detached }
}
