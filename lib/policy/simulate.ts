// Decision replay: decide recorded decisions (audit `decision` records) again under a draft policy and count what
// would change, grouped by (old effect, rule, key -> new effect, rule, key), with the first few records of each group.
// The old decision is the one recorded, or, given a baseline policy (the installed one), that policy's decision for
// the same request: then only what the draft changes counts, whatever policy version made the record.
import { recordedAttrs, recordsAllAttributes, type DecisionRecord } from '../wire/audit-record'
import { decide } from './decide'
import type { CompiledPolicy, Decision } from './types'

export interface Outcome { effect: 'permit' | 'deny', rule: string | null, key: string | null }

export interface ChangeGroup {
  from: Outcome
  to: Outcome
  count: number
  examples: DecisionRecord[] // the first ones replayed, oldest first
}

export interface Simulation {
  replayed: number
  changed: number
  /** Recorded permits the draft denies: what `spctl policy apply` asks to confirm. */
  permitToDeny: number
  /** Most changed first among permit -> deny, then the other groups by count. */
  changes: ChangeGroup[]
  /** Records that lack attributes (FORMAT.md §7, decision records): replayed as if they had none. */
  partial: number
  /** Rules of the draft (and baseline) that test an attribute such records lack: their replay of those may be wrong. */
  rulesTestingUnrecorded: string[]
  /** With a baseline: records the baseline decides otherwise than recorded (made under an older policy, or partial). */
  notAsRecorded: number
  /** Decisions replayed per configuration version they were made under. */
  versions: Record<string, number>
  first: string | null // ts of the oldest record replayed
  last: string | null
}

const outcome = (d: Decision): Outcome => ({ effect: d.effect, rule: d.rule, key: d.effect === 'permit' ? d.key : null })
const same = (a: Outcome, b: Outcome): boolean => a.effect === b.effect && a.rule === b.rule && a.key === b.key

/** Feed records with add(), in log order; result() at the end. */
export class Replay {
  private replayed = 0
  private partial = 0
  private notAsRecorded = 0
  private first: string | null = null
  private last: string | null = null
  private readonly groups = new Map<string, ChangeGroup>()
  private readonly versions = new Map<number, number>()

  constructor (private readonly draft: CompiledPolicy, private readonly examplesPerChange = 3, private readonly baseline: CompiledPolicy | null = null) {}

  add (r: DecisionRecord): void {
    this.replayed++
    if (!recordsAllAttributes(r)) this.partial++
    this.versions.set(r.pv, (this.versions.get(r.pv) ?? 0) + 1)
    if (r.ts !== undefined) { this.first ??= r.ts; this.last = r.ts }
    const input = { guard: r.guard, path: r.path, action: r.action, attrs: recordedAttrs(r), ctx: { host: r.host, ip: r.ip } }
    const recorded: Outcome = { effect: r.effect, rule: r.rule, key: r.effect === 'permit' ? r.key ?? null : null }
    let from = recorded
    if (this.baseline !== null) {
      from = outcome(decide(this.baseline, input))
      if (!same(from, recorded)) this.notAsRecorded++
    }
    const to = outcome(decide(this.draft, input))
    if (same(from, to)) return
    const id = `${from.effect}\0${from.rule ?? ''}\0${from.key ?? ''}\0${to.effect}\0${to.rule ?? ''}\0${to.key ?? ''}`
    let g = this.groups.get(id)
    if (g === undefined) this.groups.set(id, g = { from, to, count: 0, examples: [] })
    g.count++
    if (g.examples.length < this.examplesPerChange) g.examples.push(r)
  }

  result (): Simulation {
    const rank = (g: ChangeGroup): number => (g.from.effect === 'permit' && g.to.effect === 'deny' ? 0 : 1)
    const changes = [...this.groups.values()].sort((a, b) => rank(a) - rank(b) || b.count - a.count)
    let changed = 0
    let permitToDeny = 0
    for (const g of changes) {
      changed += g.count
      if (rank(g) === 0) permitToDeny += g.count
    }
    return {
      replayed: this.replayed,
      changed,
      permitToDeny,
      changes,
      partial: this.partial,
      notAsRecorded: this.notAsRecorded,
      rulesTestingUnrecorded: this.partial === 0 ? [] : [...new Set([...rulesTestingUnrecorded(this.draft), ...(this.baseline === null ? [] : rulesTestingUnrecorded(this.baseline))])],
      versions: Object.fromEntries([...this.versions].sort((a, b) => a[0] - b[0])),
      first: this.first,
      last: this.last
    }
  }
}

/** Rules that test gids, groups, user or domain names, executable signatures or an authentication level. */
function rulesTestingUnrecorded (p: CompiledPolicy): string[] {
  return p.rules.filter(r =>
    r.minAuth > 0 ||
    (r.users ?? []).some(s => s.gids !== null || s.groups !== null || s.users !== null || s.domains !== null) ||
    (r.processes ?? []).some(s => s.signatures !== null)
  ).map(r => r.id)
}
