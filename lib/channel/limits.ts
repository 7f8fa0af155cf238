// Per-source admission for listeners that unauthenticated peers can reach: connections held at once and new
// connections per second (a token bucket) per remote address, and handshakes in progress from all sources together.
// Checked on the raw TCP connection, before any TLS work (docs/CHANNEL.md §4 "Connection limits").
import { isIPv6 } from 'node:net'

export interface ConnectionLimits {
  /** Connections one source may hold open at once, handshakes included. */
  perSource: number
  /** New connections a source may open per second, on average... */
  ratePerS: number
  /** ...and at once after being idle (the bucket's size). */
  burst: number
  /** Connections that have not completed their Hello yet, from all sources together. */
  pending: number
}

export type LimitRefusal = 'source-connections' | 'source-rate' | 'pending'

interface Source { open: number, tokens: number, at: number }

/** Sources tracked before idle ones (nothing open, bucket full again) are swept out. */
const SWEEP_ABOVE = 4096

/**
 * The source an address counts against: an IPv4 address (IPv4-mapped IPv6 included), or the /64 of an IPv6
 * address, since one IPv6 host usually holds a whole /64.
 */
export function sourceOf (address: string): string {
  if (address.startsWith('::ffff:') && address.includes('.')) return address.slice(7)
  if (!isIPv6(address)) return address
  const [head, tail = ''] = address.split('::')
  const left = head === '' ? [] : head.split(':')
  const right = tail === '' ? [] : tail.split(':')
  const groups = address.includes('::') ? [...left, ...Array(8 - left.length - right.length).fill('0'), ...right] : left
  return groups.slice(0, 4).map(g => parseInt(g, 16).toString(16)).join(':') + '::/64'
}

export class SourceLimiter {
  private readonly sources = new Map<string, Source>()
  private pending = 0

  constructor (private readonly limits: ConnectionLimits, private readonly now: () => number = Date.now) {}

  /** Admit a new connection from `address`, or say why not. An admitted one must be ended with release(). */
  admit (address: string): LimitRefusal | { source: string } {
    if (this.pending >= this.limits.pending) return 'pending'
    const source = sourceOf(address)
    const t = this.now()
    let s = this.sources.get(source)
    if (s === undefined) {
      if (this.sources.size >= SWEEP_ABOVE) this.sweep(t)
      s = { open: 0, tokens: this.limits.burst, at: t }
      this.sources.set(source, s)
    } else {
      s.tokens = Math.min(this.limits.burst, s.tokens + (t - s.at) * this.limits.ratePerS / 1000)
      s.at = t
    }
    if (s.open >= this.limits.perSource) return 'source-connections'
    if (s.tokens < 1) return 'source-rate'
    s.tokens -= 1
    s.open++
    this.pending++
    return { source }
  }

  /** The connection completed its Hello: it no longer counts as pending. */
  opened (): void { this.pending-- }

  /** The connection closed; `wasPending` when it never completed its Hello. */
  release (source: string, wasPending: boolean): void {
    if (wasPending) this.pending--
    const s = this.sources.get(source)
    if (s !== undefined) s.open--
  }

  /** Sources tracked and connections pending (for tests). */
  get tracked (): { sources: number, pending: number } { return { sources: this.sources.size, pending: this.pending } }

  private sweep (t: number): void {
    for (const [k, s] of this.sources) {
      if (s.open === 0 && s.tokens + (t - s.at) * this.limits.ratePerS / 1000 >= this.limits.burst) this.sources.delete(k)
    }
  }
}
