// In-process cluster network for tests and large-N benchmarks: a virtual clock, a seeded RNG, and fault knobs
// (drop, delay + jitter, duplicate, reorder, corrupt, partition one-way or both ways). Fully deterministic per seed.
import type { Clock, Packet, Transport } from './transport'

/** mulberry32: a small seeded PRNG, enough for reproducible fault schedules. */
export function seededRandom (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

export interface FaultKnobs {
  drop: number // probability a packet is lost
  duplicate: number // probability a packet is delivered twice
  corrupt: number // probability one random bit is flipped
  reorder: number // probability a packet gets an extra random delay of up to reorderMs
  delayMs: number // base one-way delay
  jitterMs: number // uniform extra delay in [0, jitterMs)
  reorderMs: number
}

export const NO_FAULTS: FaultKnobs = { drop: 0, duplicate: 0, corrupt: 0, reorder: 0, delayMs: 5, jitterMs: 0, reorderMs: 0 }

interface Event { at: number, order: number, run: () => void }

export class VirtualClock implements Clock {
  private t = 0
  private order = 0
  private heap: Event[] = [] // binary min-heap on (at, order): ties keep insertion order

  now (): number { return this.t }

  private less (a: Event, b: Event): boolean { return a.at < b.at || (a.at === b.at && a.order < b.order) }

  at (when: number, run: () => void): void {
    const h = this.heap
    h.push({ at: Math.max(when, this.t), order: this.order++, run })
    for (let i = h.length - 1; i > 0;) {
      const up = (i - 1) >> 1
      if (!this.less(h[i], h[up])) break
      ;[h[i], h[up]] = [h[up], h[i]]
      i = up
    }
  }

  private pop (): Event {
    const h = this.heap
    const top = h[0]
    const last = h.pop() as Event
    if (h.length > 0) {
      h[0] = last
      for (let i = 0; ;) {
        const l = 2 * i + 1; const r = l + 1
        let m = i
        if (l < h.length && this.less(h[l], h[m])) m = l
        if (r < h.length && this.less(h[r], h[m])) m = r
        if (m === i) break
        ;[h[i], h[m]] = [h[m], h[i]]
        i = m
      }
    }
    return top
  }

  /** Run every event due up to `until` (inclusive) in time order. */
  runUntil (until: number): void {
    while (this.heap.length > 0 && this.heap[0].at <= until) {
      const e = this.pop()
      this.t = e.at
      e.run()
    }
    this.t = until
  }

  runFor (ms: number): void { this.runUntil(this.t + ms) }
}

export type Handler = (p: Packet) => void

export class MockNetwork {
  readonly clock: VirtualClock
  readonly random: () => number
  knobs: FaultKnobs
  private readonly handlers = new Map<string, Handler>()
  private readonly cuts = new Set<string>() // "from>to"
  /** Every packet handed to send(), before faults (a capture for replay tests). */
  readonly sent: Packet[] = []
  stats = { sent: 0, delivered: 0, dropped: 0, cut: 0, duplicated: 0, corrupted: 0 }

  constructor (seed = 1, knobs: Partial<FaultKnobs> = {}, clock = new VirtualClock()) {
    this.clock = clock
    this.random = seededRandom(seed)
    this.knobs = { ...NO_FAULTS, ...knobs }
  }

  attach (addr: string, handler: Handler): void { this.handlers.set(addr, handler) }
  detach (addr: string): void { this.handlers.delete(addr) }

  /** Cut a→b (one way); pass both = true to cut b→a as well. */
  partition (a: string, b: string, both = true): void { this.cuts.add(`${a}>${b}`); if (both) this.cuts.add(`${b}>${a}`) }
  /** Cut every link between the two groups, both ways. */
  split (left: string[], right: string[]): void { for (const a of left) for (const b of right) this.partition(a, b) }
  heal (): void { this.cuts.clear() }
  isCut (from: string, to: string): boolean { return this.cuts.has(`${from}>${to}`) }

  transport (addr: string): Transport {
    return { send: p => this.send({ ...p, from: addr }) }
  }

  /** Deliver `p` to its `to` address after the configured delay, bypassing faults (the test harness as attacker). */
  inject (p: Packet, delayMs = 0): void { this.clock.at(this.clock.now() + delayMs, () => this.handlers.get(p.to)?.(p)) }

  send (p: Packet): void {
    this.sent.push(p)
    this.stats.sent++
    const k = this.knobs
    if (this.isCut(p.from, p.to)) { this.stats.cut++; return }
    if (this.random() < k.drop) { this.stats.dropped++; return }
    const copies = this.random() < k.duplicate ? 2 : 1
    if (copies === 2) this.stats.duplicated++
    for (let i = 0; i < copies; i++) {
      let bytes = p.bytes
      if (this.random() < k.corrupt && bytes.length > 0) {
        bytes = Buffer.from(bytes)
        const bit = Math.floor(this.random() * bytes.length * 8)
        bytes[bit >> 3] ^= 1 << (bit & 7)
        this.stats.corrupted++
      }
      let delay = k.delayMs + k.jitterMs * this.random()
      if (this.random() < k.reorder) delay += k.reorderMs * this.random()
      const pkt = { ...p, bytes }
      this.clock.at(this.clock.now() + delay, () => {
        // A cut made while the packet was in flight also stops it (the link is gone).
        if (this.isCut(pkt.from, pkt.to)) { this.stats.cut++; return }
        const h = this.handlers.get(pkt.to)
        if (h !== undefined) { this.stats.delivered++; h(pkt) }
      })
    }
  }
}
