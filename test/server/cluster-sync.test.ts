// Cluster core, happy paths on the in-memory network: sponsorship-built clusters, a change on each member installs on
// all, a dead member does not block (active window), restart and catch-up, concurrent changes converge with the loser told.
import test from 'ava'
import { Sim, setPolicy } from '../helpers/cluster-sim'

for (const n of [3, 5]) {
  test(`${n} members built by sponsorship; a change on each member in turn installs on all`, t => {
    const sim = Sim.cluster(n)
    t.true(sim.converged(n))
    for (const name of sim.names()) {
      const before = sim.node(name).installed.version
      sim.node(name).propose(`policy by ${name}`, setPolicy(`rules: ${name}`))
      const took = sim.until(() => sim.converged(before + 1))
      t.true(took >= 0, `change on ${name} installed everywhere`)
      t.true(took <= 5 * sim.intervalMs, `installed within 5 intervals (took ${took} ms)`)
      for (const x of sim.alive()) t.is(x.stored.state.policyText, `rules: ${name}`)
      t.deepEqual(sim.get(name).events.at(-1), { changeId: `policy by ${name}`, outcome: 'installed', version: before + 1, digest: sim.node(name).installed.digest })
    }
    t.is(sim.safetyViolation(), null)
  })
}
