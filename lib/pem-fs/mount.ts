// Mounting a guard point: checks FUSE, the enrollment and the cluster, opens the directory underneath BEFORE the
// mount covers it (so DIR is guarded in place) and hands that fd to the native FUSE session (lib/native/fuse-session.ts,
// docs/PEMFS.md "The native session"), which serves every operation on its own threads with the kernel's permission
// checks (default_permissions) and asks this module only `decide` (the cluster's policy, guard.ts) and, for encrypted
// handles, the io hook (crypt-io.ts). The fsname names the guarded directory.
import fs from 'node:fs'
import path from 'node:path'
import { attrsOf } from './attrs'
import { ClusterClient } from './client'
import { CryptFiles } from './crypt-files'
import { CryptIo } from './crypt-io'
import { denial, Guard, toErrno, type Decision } from './guard'
import { hostIdentity, readCluster } from './host-config'
import type { SelectionName } from './selection'
import { ServerListWatcher } from './server-list'
import { pemfsLog, warn, withoutFdLinks } from './log'
import { FuseSession, type DecideAnswer, type DecideRequest } from '../native/fuse-session'
import { PemError } from '../wire/errors'

export interface MountOptions {
  dir: string // the guard point: where applications see the files
  backing?: string // the directory underneath (default: dir itself, guarded in place)
  configDir: string
  timeoutMs?: number // per server tried (DESIGN §8: default 2 s)
  selection?: SelectionName // how the host picks a server (docs/PEMFS.md "Choosing a server")
  /** Mount even when the cluster's policy names no guard point `dir` (every access is then denied): a warning only. */
  force?: boolean
}

/** How often the native block path's view of the servers is copied into the client's table (spd samples load every 250 ms). */
const BLOCK_FEED_MS = 250
/** `backingFd`: the directory underneath, open from before the mount covered it (/proc/self/fd/N reaches it). */
export interface Mounted { dir: string, backing: string, backingFd: number, client: ClusterClient, guard: Guard, session: FuseSession, crypt: CryptIo, unmount: () => Promise<void> }

const DEBUG = process.env.PEMFS_DEBUG === '1'
// A decision or io answer may wait for every server in turn, and an encrypted fsync/close for write-behind to
// persist (crypt-file.ts WRITE_BEHIND_PERSIST_MS, 10 s): the session's deadline is above both.
const ANSWER_SLACK_MS = 30_000
/** How often held file keys past their ttl are wiped (host placement; FORMAT.md §4.5 "Revocation"). */
const KEY_SWEEP_MS = 250

function checkFuse (): void {
  if (!fs.existsSync('/dev/fuse')) throw new PemError('PEM_ERR_BAD_CONFIG', 'FUSE is not available: /dev/fuse is missing (load the fuse module, or run the container with --device /dev/fuse)')
}

/**
 * Refuses (or with `force` warns about) a directory the cluster's policy names no guard point: every access to it would
 * be denied. Asks one decision, for the guard's root as this process; a cluster error leaves the mount to go on.
 */
async function checkGuarded (client: ClusterClient, dir: string, force: boolean): Promise<void> {
  let d: Decision
  try {
    d = await client.decide({ guard: dir, path: '/', action: 'getattr', attrs: attrsOf(process.pid, process.getuid?.() ?? 0, process.getgid?.() ?? 0) })
  } catch { return }
  if (d.unguarded !== true) return
  const what = `the cluster's policy (version ${d.pv}) has no guard point ${dir}, so every access to it would be denied`
  if (!force) throw new PemError('PEM_ERR_BAD_ARGUMENT', `${what}: add ${dir} under guards: in the policy (spctl policy apply FILE), mount the directory it names, or mount anyway with --force`)
  warn({ code: 'PEM_ERR_POLICY_DENY', pv: d.pv }, `warning: ${what} (mounted with --force)`)
}

async function reachCluster (client: ClusterClient): Promise<void> {
  const errors: string[] = []
  for (const s of client.servers) {
    try { await client.ping(s); return } catch (err) { errors.push(`${s.entry.name}@${s.entry.addr}: ${(err as Error).message}`) }
  }
  throw new PemError('PEM_ERR_UNREACHABLE', `no server of the cluster answered (${errors.join('; ')})`)
}

/**
 * The session's `decide`: the caller's access attributes, then the guard's (cached) decision. Permits and denies
 * both go to the native cache for their ttl and scope (the guard caches them the same way); a cluster failure is
 * never cached. A create under host placement names its pool of spare new-file keys (crypt-io.ts newHostFile).
 */
function decider (guard: Guard): (c: DecideRequest) => Promise<DecideAnswer> {
  let lastLog = 0
  const log = (c: DecideRequest, err: unknown): void => {
    const e = PemError.from(err)
    warn({ action: c.action, path: c.path, code: e.code }, withoutFdLinks(e.message, c.path))
  }
  const scope = (d: Decision): string | undefined => d.scope ?? undefined
  let lastUnguarded = 0
  return async c => {
    const caller = { uid: c.uid, gid: c.gid, pid: c.pid }
    try {
      const d = await guard.decide(caller, c.path, c.action, guard.attrs(caller, c.gids))
      if (d.ok) return { ok: true, ttlMs: d.ttl, bypass: d.bypass, scope: scope(d), pool: c.action === 'create' ? guard.client.poolOf(d) : 0 }
      const err = denial(d, c.path, c.action)
      const now = Date.now()
      if (d.unguarded === true && now - lastUnguarded >= 60_000) { // denials are in the audit log; this one is the host's setup
        lastUnguarded = now
        log(c, new PemError('PEM_ERR_POLICY_DENY', `the cluster's policy (version ${d.pv}) has no guard point ${guard.guard}: every access is denied`))
      } else if (DEBUG) log(c, err)
      return { ok: false, errno: -toErrno(err), ttlMs: d.ttl, scope: scope(d) }
    } catch (err) {
      const now = Date.now()
      if (DEBUG || now - lastLog >= 1000) { lastLog = now; log(c, err) } // cluster failures, at most a line a second
      return { ok: false, errno: -toErrno(err) }
    }
  }
}

export async function mountGuard (o: MountOptions): Promise<Mounted> {
  const dir = path.resolve(o.dir)
  const backing = path.resolve(o.backing ?? o.dir)
  for (const d of [dir, backing]) {
    if (!(fs.statSync(d, { throwIfNoEntry: false })?.isDirectory() ?? false)) throw new PemError('PEM_ERR_BAD_ARGUMENT', `${d} is not a directory`)
  }
  checkFuse()
  if (fs.statSync(dir).dev !== fs.statSync(path.dirname(dir)).dev && dir !== '/') {
    throw new PemError('PEM_ERR_BAD_ARGUMENT', `${dir} is a mount point; pemfs guards a directory inside a volume (e.g. ${path.join(dir, 'data')}), never the volume's root`)
  }
  const cluster = readCluster(o.configDir)
  const client = new ClusterClient(hostIdentity(o.configDir), cluster.servers, { timeoutMs: o.timeoutMs, selection: o.selection })
  let backingFd: number | undefined
  let watcher: ServerListWatcher | undefined
  try {
    await reachCluster(client)
    await checkGuarded(client, dir, o.force === true)
    const w = watcher = new ServerListWatcher(client, o.configDir, cluster)
    backingFd = fs.openSync(backing, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY)
    const guard = new Guard(client, dir)
    const files = new CryptFiles(client)
    const crypt = new CryptIo(guard, files)
    let session: FuseSession
    try {
      session = FuseSession.mount(dir, backingFd, decider(guard), {
        io: crypt.io,
        decideTimeoutMs: ANSWER_SLACK_MS + client.servers.length * (o.timeoutMs ?? 2000)
      })
    } catch (err) {
      throw new PemError('PEM_ERR_BAD_CONFIG', `cannot mount ${dir}: ${(err as Error).message} (is it already mounted?)`)
    }
    const s = session
    const stopListening = client.onPolicyVersion(() => { if (s.mounted) s.invalidate() }) // cached answers were for the old policy
    // The native block path's replies (load, weight, version, requests per server) feed the server table.
    const feed = setInterval(() => { if (s.mounted) client.noteBlockServers(s.stats().blockServers) }, BLOCK_FEED_MS)
    feed.unref()
    const stopDrops = client.onKeysDrop((drop, server) => { // a revocation pushed: keys and cached decisions go now
      if (!s.mounted) return
      const wiped = s.dropKeys(false)
      s.invalidate()
      guard.forget()
      pemfsLog().info({ reason: drop.reason, pv: drop.pv, server, wiped }, `${drop.reason}: wiped ${wiped} file key(s)`)
    })
    // A released key is a lease for its decision's ttl: wiped once that has run out, asked for again at the next block.
    const sweep = setInterval(() => { if (s.mounted) s.dropKeys(true) }, KEY_SWEEP_MS)
    sweep.unref()
    const fd = backingFd
    let unmounting: Promise<void> | undefined
    const unmount = async (): Promise<void> => {
      unmounting ??= Promise.resolve().then(() => {
        stopListening()
        clearInterval(feed)
        stopDrops()
        clearInterval(sweep)
        s.unmount()
        w.close()
        client.close()
        crypt.closeAll()
        fs.closeSync(fd)
      })
      await unmounting
    }
    return { dir, backing, backingFd: fd, client, guard, session: s, crypt, unmount }
  } catch (err) {
    watcher?.close()
    client.close()
    if (backingFd !== undefined) fs.closeSync(backingFd)
    throw err
  }
}
