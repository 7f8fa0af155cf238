// Partitions and network faults on the in-memory network (CHECKLIST F26–F28): halves, one-way, bridge, flapping,
// loss/duplication/reordering/corruption. Safety: never two digests installed under one version. Liveness: after heal, convergence.
import test from 'ava'
import { Sim, setPolicy } from '../helpers/cluster-sim'

const addrs = (sim: Sim, names: string[]): string[] => names.map(n => sim.get(n).addr)
const settled = (sim: Sim): boolean => sim.converged() && sim.alive().every(x => !x.node.busy)

test('halves of 5: the majority side installs, the minority holds; after heal all converge and the minority change is re-based', t => {
  const sim = Sim.cluster(5, 3)
  const v = sim.node('A').installed.version
  sim.net.split(addrs(sim, ['A', 'B']), addrs(sim, ['C', 'D', 'E']))
  sim.run(5000)
  sim.node('A').propose('minority', setPolicy('from A'))
  sim.node('D').propose('majority', setPolicy('from D'))
  t.true(sim.until(() => ['C', 'D', 'E'].every(n => sim.node(n).installed.version === v + 1)) >= 0)
  sim.run(10_000)
  t.is(sim.node('A').installed.version, v); t.is(sim.node('B').installed.version, v)
  sim.net.heal()
  const took = sim.until(() => settled(sim) && sim.converged(v + 2))
  t.true(took >= 0 && took <= 10_000, `converged ${took} ms after heal`)
  t.like(sim.get('A').events.find(e => e.outcome === 'rebased'), { changeId: 'minority', version: v + 1 })
  t.is(sim.get('E').stored.state.policyText, 'from A')
  t.is(sim.safetyViolation(), null)
})

test('halves of 3 (1 | 2): a change on each side; only the pair installs; heal converges', t => {
  const sim = Sim.cluster(3, 4)
  const v = sim.node('A').installed.version
  sim.net.split(addrs(sim, ['A']), addrs(sim, ['B', 'C']))
  sim.node('A').propose('alone', setPolicy('A alone'))
  sim.node('C').propose('pair', setPolicy('pair'))
  t.true(sim.until(() => sim.node('B').installed.version === v + 1) >= 0)
  sim.run(10_000)
  t.is(sim.node('A').installed.version, v)
  sim.net.heal()
  t.true(sim.until(() => settled(sim) && sim.converged(v + 2)) >= 0)
  t.is(sim.safetyViolation(), null)
})

test('one-way cut (A→B dropped, B→A fine): a change on A still installs everywhere', t => {
  const sim = Sim.cluster(3, 5)
  const v = sim.node('A').installed.version
  sim.net.partition(sim.get('A').addr, sim.get('B').addr, false)
  sim.node('A').propose('one-way', setPolicy('one-way'))
  const took = sim.until(() => sim.converged(v + 1))
  t.true(took >= 0, `took ${took}`)
  t.is(sim.safetyViolation(), null)
})

test('bridge: {A,B} and {D,E} cannot talk, C talks to all; concurrent changes on A and E converge through C', t => {
  const sim = Sim.cluster(5, 6)
  const v = sim.node('A').installed.version
  sim.net.split(addrs(sim, ['A', 'B']), addrs(sim, ['D', 'E']))
  sim.node('A').propose('left', setPolicy('left'))
  sim.node('E').propose('right', setPolicy('right'))
  sim.run(30_000)
  t.is(sim.safetyViolation(), null)
  sim.net.heal()
  t.true(sim.until(() => settled(sim) && sim.converged(v + 2)) >= 0)
  t.is(sim.safetyViolation(), null)
})

test('flapping partitions every few seconds with changes in between: safe, and convergent after the last heal', t => {
  const sim = Sim.cluster(5, 8)
  const names = sim.names()
  const v = sim.node('A').installed.version
  for (let round = 0; round < 8; round++) {
    sim.net.heal()
    const cut = names.filter((_, i) => (i + round) % 2 === 0)
    sim.net.split(addrs(sim, cut), addrs(sim, names.filter(n => !cut.includes(n))))
    sim.node(names[round % 5]).propose(`flap ${round}`, d => { d.policyText = `${d.policyText ?? ''}|${round}` })
    sim.run(2000 + 700 * round)
    t.is(sim.safetyViolation(), null)
  }
  sim.net.heal()
  t.true(sim.until(() => settled(sim), 120_000) >= 0)
  t.true(sim.node('A').installed.version >= v + 8, 'every change installed once')
  t.is(sim.safetyViolation(), null)
})

for (const loss of [0.1, 0.3, 0.5]) {
  test(`loss ${loss * 100} % with duplication, reordering and jitter: converges, one install per version`, t => {
    const sim = Sim.cluster(3, 11)
    sim.net.knobs = { ...sim.net.knobs, drop: loss, duplicate: 0.1, reorder: 0.2, reorderMs: 400, delayMs: 75, jitterMs: 50 }
    const v = sim.node('A').installed.version
    sim.node('B').propose('lossy', setPolicy('lossy'))
    const took = sim.until(() => sim.converged(v + 1), 120_000)
    t.true(took >= 0, `converged in ${took} ms`)
    t.is(sim.safetyViolation(), null)
    const dups = sim.allInstalls.filter(i => i.version === v + 1)
    t.is(new Set(dups.map(i => i.member)).size, dups.length, 'no member installs a version twice')
  })
}

test('5 % corrupted packets: refused by checksum or signature, nothing crashes, the change installs', t => {
  const sim = Sim.cluster(3, 12)
  sim.net.knobs = { ...sim.net.knobs, corrupt: 0.05 }
  const v = sim.node('A').installed.version
  sim.node('C').propose('noisy', setPolicy('noisy'))
  sim.run(20_000)
  t.true(sim.until(() => sim.converged(v + 1)) >= 0)
  const refused = sim.alive().reduce((n, x) => n + Object.values(x.node.rejections).reduce((a, b) => a + b, 0), 0)
  t.true(refused > 0 && sim.net.stats.corrupted > 0)
})
