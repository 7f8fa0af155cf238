// The enforcement step of every FUSE operation: the caller's attributes + guard point + path + action go to the
// cluster (ClusterClient.decide); decisions are cached per (attributes, path, action) for the reply's ttl and only
// under the policy version they were made in. Also the one place that turns any error into a FUSE errno.
import os from 'node:os'
import { attrsOf } from './attrs'
import type { ClusterClient } from './client'
import type { Caller } from './fuse-ctx'
import { errnoOf, PemError } from '../wire/errors'
import type { AccessAttrs, Action, DecideReply } from '../wire/packets'

const ERRNO = os.constants.errno as Record<string, number>
const CACHE_MAX = 20_000

export type Decision = DecideReply & { server: string }
interface Cached { reply: Decision, until: number }

export interface GuardStats { decisions: number, cacheHits: number, denied: number, failed: number }

export class Guard {
  readonly stats: GuardStats = { decisions: 0, cacheHits: 0, denied: 0, failed: 0 }
  private readonly cache = new Map<string, Cached>()
  private readonly inflight = new Map<string, Promise<Decision>>()

  /** `guard` is the guard point as applications see it (the mounted directory). */
  constructor (readonly client: ClusterClient, readonly guard: string) {}

  attrs (c: Caller): AccessAttrs {
    return c.pid > 0 ? attrsOf(c.pid, c.uid, c.gid) : { uid: c.uid, gids: [c.gid], pid: 0, sid: 0, exe: '', exeHash: '', auth: 0 }
  }

  /**
   * A permit decision, or a thrown PemError (PEM_ERR_POLICY_DENY → EACCES; unreachable cluster → EHOSTUNREACH).
   * `fresh` skips the cache (a handle whose grant the server no longer knows decides again).
   */
  async allow (c: Caller, path: string, action: Action, attrs = this.attrs(c), fresh = false): Promise<Decision> {
    const key = `${attrs.uid}:${attrs.gids.join(',')}:${attrs.sid}:${attrs.exeHash}:${attrs.exe}:${attrs.auth}|${action}|${path}`
    const hit = this.cache.get(key)
    let d: Decision
    if (!fresh && hit !== undefined && hit.until > Date.now() && hit.reply.pv === this.client.pv) {
      this.stats.cacheHits++
      d = hit.reply
    } else {
      let p = this.inflight.get(key)
      if (p === undefined) {
        p = this.ask(key, { guard: this.guard, path, action, attrs }).finally(() => this.inflight.delete(key))
        this.inflight.set(key, p)
      }
      d = await p
    }
    if (!d.ok) { this.stats.denied++; throw new PemError('PEM_ERR_POLICY_DENY', `${action} ${path}: denied by ${d.rule ?? 'the default rule'}`) }
    return d
  }

  private async ask (key: string, req: Parameters<ClusterClient['decide']>[0]): Promise<Decision> {
    this.stats.decisions++
    let d: Decision
    try { d = await this.client.decide(req) } catch (err) { this.stats.failed++; throw err }
    if (d.ttl > 0) {
      if (this.cache.size >= CACHE_MAX) this.cache.delete(this.cache.keys().next().value as string)
      this.cache.set(key, { reply: d, until: Date.now() + d.ttl })
    }
    return d
  }
}

/** Negative errno for a FUSE callback: system errors keep their errno, our codes map through lib/wire/errors.ts. */
export function toErrno (err: unknown): number {
  const code = (err as { code?: unknown } | null)?.code
  if (typeof code === 'string' && ERRNO[code] !== undefined && !(err instanceof PemError)) return -ERRNO[code]
  return errnoOf(err, ERRNO)
}
