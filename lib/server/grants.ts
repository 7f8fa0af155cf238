// Key grants: a permitted decision that names a key hands the host a random grant id; data ops must present it.
// The first data call that presents a file header binds the grant to that file id (bindFile), unless spd itself made
// that header for the same host and key (FileHeader, noteIssued): a host's new files are its own, so one create
// decision serves every file it makes under its scope.
// Bounded table (oldest dropped first), entries expire with the decision's ttl, timed by the monotonic clock (a wall-clock
// step neither extends nor cuts a grant). Design: lib/wire/FORMAT.md §4.5.
import crypto from 'node:crypto'
import { performance } from 'node:perf_hooks'
import { PemError } from '../wire/errors'
import type { Action, Compression, Placement } from '../wire/packets'

/**
 * `expires` is on the table's clock (monotonic milliseconds by default), not a wall-clock time. `fileId` (hex): the
 * file the grant serves, fixed by the first call that presents a header; null until then.
 */
export interface Grant { host: string, key: string, compression: Compression, action: Action, placement: Placement, expires: number, fileId: string | null }

/** A grant outlives its decision's ttl by this much: a host caching the decision until the ttl ends can still use it. */
export const GRANT_SLACK_MS = 2000
export const GRANTS_MAX = 100_000
/** New-file ids handed to a host (FileHeader) are its own for this long and at most this many (oldest dropped first). */
export const ISSUED_MS = 10 * 60_000
export const ISSUED_MAX = 100_000
/** Decisions for these actions may open blocks but not seal them. */
const READ_ONLY: ReadonlySet<Action> = new Set(['read', 'list', 'getattr', 'readlink', 'statfs'])

export class GrantTable {
  // A Map iterates in insertion order: the first entry is the oldest, which is the one to drop when full.
  private readonly grants = new Map<string, Grant>()
  // host|key|file id (hex) -> until (table clock): headers spd made for that host, in insertion order (oldest first).
  private readonly issued = new Map<string, number>()
  // Ids are cut from a pool of random bytes refilled 256 ids at a time: crypto.randomBytes per decision cost ~6.6 µs.
  private readonly pool = Buffer.alloc(16 * 256)
  private poolAt = this.pool.length

  constructor (private readonly max = GRANTS_MAX, private readonly now: () => number = () => performance.now()) {}

  get size (): number { return this.grants.size }

  issue (host: string, key: string, compression: Compression, action: Action, ttlMs: number, placement: Placement = 'appliance'): string {
    if (this.poolAt === this.pool.length) { crypto.randomFillSync(this.pool); this.poolAt = 0 }
    const id = this.pool.toString('hex', this.poolAt, this.poolAt + 16)
    this.poolAt += 16
    while (this.grants.size >= this.max) this.grants.delete(this.grants.keys().next().value as string)
    this.grants.set(id, { host, key, compression, action, placement, expires: this.now() + ttlMs + GRANT_SLACK_MS, fileId: null })
    return id
  }

  /** The grant, if `host` holds it for `key` and it has not expired; otherwise PEM_ERR_KEY_NOT_GRANTED. */
  check (id: string, host: string, key: string | null, seal: boolean): Grant {
    const g = this.grants.get(id)
    if (g === undefined) throw new PemError('PEM_ERR_KEY_NOT_GRANTED', 'unknown grant (decide again on this server)')
    if (g.expires <= this.now()) {
      this.grants.delete(id)
      throw new PemError('PEM_ERR_KEY_NOT_GRANTED', 'grant expired (decide again)')
    }
    if (g.host !== host) throw new PemError('PEM_ERR_KEY_NOT_GRANTED', 'grant belongs to another host')
    if (key !== null && g.key !== key) throw new PemError('PEM_ERR_KEY_NOT_GRANTED', `grant is for key '${g.key}', not '${key}'`)
    if (seal && READ_ONLY.has(g.action)) throw new PemError('PEM_ERR_KEY_NOT_GRANTED', `a grant for '${g.action}' cannot seal blocks`)
    return g
  }

  /** spd made a header with `fileId` under key `key` for `host` (FileHeader). */
  noteIssued (host: string, key: string, fileId: Buffer): void {
    while (this.issued.size >= this.max || this.issued.size >= ISSUED_MAX) this.issued.delete(this.issued.keys().next().value as string)
    this.issued.set(`${host}|${key}|${fileId.toString('hex')}`, this.now() + ISSUED_MS)
  }

  /**
   * Binds `g` to the file on its first use with a header; a grant already bound to another file: PEM_ERR_KEY_NOT_GRANTED.
   * A file spd made for this host under this key (noteIssued, not expired) is served without binding.
   */
  bindFile (g: Grant, fileId: Buffer): void {
    const hex = fileId.toString('hex')
    const mine = `${g.host}|${g.key}|${hex}`
    const until = this.issued.get(mine)
    if (until !== undefined) {
      if (until > this.now()) return
      this.issued.delete(mine)
    }
    if (g.fileId === null) g.fileId = hex
    else if (g.fileId !== hex) throw new PemError('PEM_ERR_KEY_NOT_GRANTED', 'grant is for another file (decide again for this one)')
  }

  /** Milliseconds left of the decision `g` came from (its ttl, without the slack), never below 0. */
  remainingMs (g: Grant): number {
    return Math.max(0, Math.floor(g.expires - GRANT_SLACK_MS - this.now()))
  }
}
