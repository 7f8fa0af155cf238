// Runs one fault schedule against a fresh sponsorship-built cluster (shared by the property test and by replays of
// its counterexamples). Throws with a readable state dump on a safety or liveness failure.
import { Sim } from './cluster-sim'

export type Step =
  | { kind: 'change', who: number, ms: number }
  | { kind: 'split', mask: number, ms: number }
  | { kind: 'oneway', a: number, b: number, ms: number }
  | { kind: 'heal', ms: number }
  | { kind: 'restart', who: number, ms: number }
  /** The member proposes its own departure (or return): it keeps running, a departed member that goes on talking. */
  | { kind: 'depart' | 'return', who: number, ms: number }

export interface ScheduleConfig { n: number, seed: number, drop: number, duplicate: number, reorder: number, corrupt: number }

export function dump (sim: Sim): string {
  return sim.names().map(x => {
    const node = sim.node(x)
    return `${x}=${node.installed.version}/${node.pending?.version ?? '-'}${node.pending !== null ? `:${node.pending.digest.slice(0, 4)}` : ''}${node.pending?.locked === true ? 'L' : ''}${node.want !== null ? `w${node.want.version}` : ''}${node.unresolved.length > 0 ? `u${node.unresolved.length}` : ''}`
  }).join(' ')
}

export function runSchedule (c: ScheduleConfig, steps: Step[], log?: (line: string) => void): void {
  const sim = Sim.cluster(c.n, c.seed)
  const names = sim.names()
  const base = sim.node('A').installed.version
  sim.net.knobs = { ...sim.net.knobs, drop: c.drop, duplicate: c.duplicate, reorder: c.reorder, reorderMs: 500, corrupt: c.corrupt, jitterMs: 40 }
  let changes = 0
  // Changes in flight on a member when it restarted: the admin's request fails; the change is installed only if it
  // had already reached the others as a pending set, so the count is a range.
  let lost = 0
  for (const s of steps) {
    if (s.kind === 'change') sim.node(names[s.who]).propose(`c${changes++}`, d => { d.policyText = `${d.policyText ?? ''}|${changes}` })
    else if (s.kind === 'split') {
      sim.net.heal()
      const left = names.filter((_, i) => (s.mask >> i & 1) === 1)
      sim.net.split(left.map(x => sim.get(x).addr), names.filter(x => !left.includes(x)).map(x => sim.get(x).addr))
    } else if (s.kind === 'oneway' && s.a !== s.b) sim.net.partition(sim.get(names[s.a]).addr, sim.get(names[s.b]).addr, false)
    else if (s.kind === 'heal') sim.net.heal()
    else if (s.kind === 'restart') { lost += sim.node(names[s.who]).unresolved.length; sim.restart(names[s.who]) }
    else if (s.kind === 'depart' || s.kind === 'return') {
      const self = sim.get(names[s.who]).identity.id
      const departing = s.kind === 'depart'
      sim.node(names[s.who]).propose(`c${changes++}`, d => {
        const r = d.members[self]
        if ((r.departed === true) === departing) throw new Error(departing ? 'already departed' : 'not departed')
        if (departing) r.departed = true; else delete r.departed
      })
    }
    sim.run(s.ms)
    log?.(`${sim.now} ${JSON.stringify(s)} ${dump(sim)}`)
    const bad = sim.safetyViolation()
    if (bad !== null) throw new Error(`safety: ${bad}`)
  }
  sim.net.heal()
  sim.net.knobs = { ...sim.net.knobs, drop: 0, duplicate: 0, reorder: 0, corrupt: 0 }
  const took = sim.until(() => sim.converged() && sim.alive().every(x => !x.node.busy), 120_000)
  log?.(`after heal ${took} ms: ${dump(sim)}`)
  if (took < 0) throw new Error(`no convergence after heal: ${dump(sim)}`)
  // A departure of a departed member, a return of a counted one or the last counted member's departure fails.
  const failed = sim.names().reduce((n, x) => n + sim.get(x).events.filter(e => e.outcome === 'failed').length, 0)
  const got = sim.node('A').installed.version - base
  if (got < changes - lost - failed || got > changes - failed) throw new Error(`expected ${changes - lost - failed}..${changes - failed} changes installed, got ${got}: ${dump(sim)}`)
  const bad = sim.safetyViolation()
  if (bad !== null) throw new Error(`safety: ${bad}`)
}
