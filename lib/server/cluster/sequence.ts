// Message sequence numbers: (boot epoch, counter) on the sender, a per-sender anti-replay window on the receiver.
// The sender's epoch is a persisted boot counter (+ 1 before the first message of each start), so its sequence
// keeps rising across restarts. The receiver keeps each sender's high-water mark in a persisted HwmStore; after a
// restart it has lost the window bitmap, so anything at or below the persisted mark counts as old (WireGuard's
// greatest-counter rule, plus a 64-slot window for out-of-order delivery while running).

export interface Seq { epoch: number, counter: number }

export const REPLAY_WINDOW = 64
const U32_MAX = 0xffffffff

export class SequenceSource {
  private counter = 0
  constructor (readonly epoch: number) {
    if (!Number.isInteger(epoch) || epoch < 0 || epoch > U32_MAX) throw new RangeError('epoch must be a u32')
  }

  next (): Seq {
    if (this.counter >= U32_MAX) throw new RangeError('sequence counter exhausted: restart with a new epoch')
    this.counter++
    return { epoch: this.epoch, counter: this.counter }
  }
}

/** Persisted per-sender high-water marks (the spd wiring writes these through to its data dir). */
export interface HwmStore {
  load: (sender: string) => Seq | undefined
  save: (sender: string, seq: Seq) => void
}

export class MemoryHwmStore implements HwmStore {
  readonly marks = new Map<string, Seq>()
  load (sender: string): Seq | undefined { return this.marks.get(sender) }
  save (sender: string, seq: Seq): void { this.marks.set(sender, { ...seq }) }
}

export type Freshness = 'fresh' | 'duplicate' | 'old'

interface Window { epoch: number, high: number, seen: Set<number> }

export class ReplayGuard {
  private readonly windows = new Map<string, Window>()
  constructor (private readonly store: HwmStore) {}

  private window (sender: string): Window | undefined {
    let w = this.windows.get(sender)
    if (w === undefined) {
      const mark = this.store.load(sender)
      if (mark === undefined) return undefined
      // After a restart the bitmap is gone: everything up to the mark is treated as seen.
      w = { epoch: mark.epoch, high: mark.counter, seen: new Set() }
      for (let c = Math.max(1, mark.counter - REPLAY_WINDOW + 1); c <= mark.counter; c++) w.seen.add(c)
      this.windows.set(sender, w)
    }
    return w
  }

  check (sender: string, seq: Seq): Freshness {
    const w = this.window(sender)
    if (w === undefined || seq.epoch > w.epoch) return 'fresh'
    if (seq.epoch < w.epoch) return 'old'
    if (seq.counter > w.high) return 'fresh'
    if (seq.counter <= w.high - REPLAY_WINDOW) return 'old'
    return w.seen.has(seq.counter) ? 'duplicate' : 'fresh'
  }

  /** Record an accepted message (call only after check() said fresh and the signature held). */
  accept (sender: string, seq: Seq): void {
    let w = this.window(sender)
    if (w === undefined || seq.epoch > w.epoch) {
      w = { epoch: seq.epoch, high: 0, seen: new Set() }
      this.windows.set(sender, w)
    }
    w.seen.add(seq.counter)
    if (seq.counter > w.high) {
      w.high = seq.counter
      for (const c of w.seen) if (c <= w.high - REPLAY_WINDOW) w.seen.delete(c)
      this.store.save(sender, { epoch: w.epoch, counter: w.high })
    }
  }
}
