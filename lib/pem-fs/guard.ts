// The enforcement step of every FUSE operation (the native session's `decide`, mount.ts): the caller's attributes + guard point + path + action go to the
// cluster (ClusterClient.decide); decisions are cached per (attributes, path, action) for the reply's ttl and only
// under the policy version they were made in — for every path under the reply's scope when it has one (the server
// says the policy cannot tell those paths apart), so a directory of new files costs one decision per action, not
// one per name; a decision with a key grant only for its own path (a grant serves one file). Also the one place that turns any error into an errno.
import os from 'node:os'
import { attrsOf } from './attrs'
import type { ClusterClient, Decision } from './client'
import { errnoOf, PemError } from '../wire/errors'
import type { AccessAttrs, Action } from '../wire/packets'

const ERRNO = os.constants.errno as Record<string, number>
const CACHE_MAX = 20_000

/** Who asks: the FUSE request's credentials (pid 0: the kernel itself). */
export interface Caller { uid: number, gid: number, pid: number }

export type { Decision } from './client'
interface Cached { reply: Decision, until: number }

export interface GuardStats { decisions: number, cacheHits: number, denied: number, failed: number }

export class Guard {
  readonly stats: GuardStats = { decisions: 0, cacheHits: 0, denied: 0, failed: 0 }
  private readonly cache = new Map<string, Cached>()
  private readonly inflight = new Map<string, Promise<Decision>>()

  /** `guard` is the guard point as applications see it (the mounted directory). */
  constructor (readonly client: ClusterClient, readonly guard: string) {}

  /** The caller's access attributes; `gids` (the supplementary groups the native session read) replace /proc's. */
  attrs (c: Caller, gids?: number[]): AccessAttrs {
    const a = c.pid > 0 ? attrsOf(c.pid, c.uid, c.gid) : { uid: c.uid, gids: [c.gid], pid: 0, sid: 0, exe: '', exeHash: '', auth: 0 }
    if (gids !== undefined && gids.length > 0) a.gids = [c.gid, ...gids.filter(g => g !== c.gid)].slice(0, 64)
    return a
  }

  /**
   * A permit decision, or a thrown PemError (PEM_ERR_POLICY_DENY → EACCES; unreachable cluster → EHOSTUNREACH).
   * `fresh` skips the cache (a handle whose grant the server no longer knows decides again).
   */
  async allow (c: Caller, path: string, action: Action, attrs = this.attrs(c), fresh = false): Promise<Decision> {
    const d = await this.decide(c, path, action, attrs, fresh)
    if (!d.ok) throw denial(d, path, action)
    return d
  }

  /** The decision, permit or deny (counted in stats.denied), or a thrown PemError when the cluster gives none. */
  async decide (c: Caller, path: string, action: Action, attrs = this.attrs(c), fresh = false): Promise<Decision> {
    const who = `${attrs.uid}:${attrs.gids.join(',')}:${attrs.sid}:${attrs.exeHash}:${attrs.exe}:${attrs.auth}|${action}|`
    const key = who + path
    let d = fresh ? undefined : this.cached(who, path)
    if (d !== undefined) this.stats.cacheHits++
    else {
      let p = this.inflight.get(key)
      if (p === undefined) {
        p = this.ask(who, path, { guard: this.guard, path, action, attrs }).finally(() => this.inflight.delete(key))
        this.inflight.set(key, p)
      }
      d = await p
    }
    if (!d.ok) this.stats.denied++
    return d
  }

  /** Forgets every cached decision (a revocation was pushed: the next operations decide again). */
  forget (): void { this.cache.clear() }

  /** A live decision for `path`: its own, or one whose scope is an ancestor of it ('' = the guard root, then down). */
  private cached (who: string, path: string): Decision | undefined {
    const now = Date.now()
    const live = (e: Cached | undefined): Decision | undefined => e !== undefined && e.until > now && e.reply.pv === this.client.pv && this.client.isUp(e.reply.server) ? e.reply : undefined
    const own = live(this.cache.get(who + path))
    if (own !== undefined || path === '/') return own
    for (let i = 0; i !== -1 && i < path.length; i = path.indexOf('/', i + 1)) {
      const d = live(this.cache.get(`${who}\0${path.slice(0, i)}`))
      if (d !== undefined) return d
    }
    return undefined
  }

  private async ask (who: string, path: string, req: Parameters<ClusterClient['decide']>[0]): Promise<Decision> {
    this.stats.decisions++
    let d: Decision
    try { d = await this.client.decide(req) } catch (err) { this.stats.failed++; throw err }
    if (d.ttl > 0) {
      if (this.cache.size >= CACHE_MAX) this.cache.delete(this.cache.keys().next().value as string)
      // A scope is only taken when it really is an ancestor of the path asked about. Its key has a NUL, which no
      // path can hold, so a file named '*' (or anything else) never reads as a scope. A decision with a grant is kept
      // for its own path only: spd binds a grant to the first existing file it serves (lib/wire/FORMAT.md §4.5), so
      // sharing it across a scope would cost every other file a refused data call and a new decision. A create
      // decision is the exception: its files get headers spd makes for this host, which any of its grants serves.
      const wide = (d.grant === null || req.action === 'create') && d.scope !== null && path.startsWith(d.scope + '/') && path.length > d.scope.length + 1
      this.cache.set(wide ? `${who}\0${d.scope as string}` : who + path, { reply: d, until: Date.now() + d.ttl })
    }
    return d
  }
}

/** The error of a deny decision (PEM_ERR_POLICY_DENY: EACCES). */
export function denial (d: Decision, path: string, action: Action): PemError {
  return new PemError('PEM_ERR_POLICY_DENY', `${action} ${path}: denied by ${d.rule ?? 'the default rule'}`)
}

/** Negative errno of any error: system errors keep their errno, our codes map through lib/wire/errors.ts. */
export function toErrno (err: unknown): number {
  const code = (err as { code?: unknown } | null)?.code
  if (typeof code === 'string' && ERRNO[code] !== undefined && !(err instanceof PemError)) return -ERRNO[code]
  return errnoOf(err, ERRNO)
}
