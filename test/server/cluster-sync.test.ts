// Cluster core, happy paths on the in-memory network: sponsorship-built clusters, a change on each member installs on
// all, a dead member does not block (active window), restart and catch-up, concurrent changes converge with the loser told.
import test from 'ava'
import { identityNo, memberRecord, Sim, SIM_ADMIN, setPolicy } from '../helpers/cluster-sim'

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

test('a dead member does not block: the others install once it leaves the active window', t => {
  const sim = Sim.cluster(3)
  sim.kill('C')
  const v = sim.node('A').installed.version
  sim.node('A').propose('while C is dead', setPolicy('rules: 2'))
  const took = sim.until(() => sim.converged(v + 1))
  t.true(took >= 0)
  t.true(took <= sim.activeWindowMs + 5 * sim.intervalMs, `took ${took}`)
  t.is(sim.node('C').installed.version, v)
  t.is(sim.safetyViolation(), null)
})

test('5 members, two dead: the remaining majority installs', t => {
  const sim = Sim.cluster(5)
  sim.kill('D'); sim.kill('E')
  const v = sim.node('A').installed.version
  sim.node('B').propose('two down', setPolicy('rules: 3 of 5'))
  t.true(sim.until(() => sim.converged(v + 1)) >= 0)
})

test('5 members, three dead: no majority, nothing installs (safety over liveness)', t => {
  const sim = Sim.cluster(5)
  sim.kill('C'); sim.kill('D'); sim.kill('E')
  const v = sim.node('A').installed.version
  sim.node('A').propose('minority', setPolicy('rules: 2 of 5'))
  sim.run(20_000)
  t.is(sim.node('A').installed.version, v)
  t.is(sim.node('B').installed.version, v)
  t.is(sim.node('B').pending?.version, v + 1, 'held as pending, advertised')
})

test('a killed member restarts from its store and catches up; it never offers an older version', t => {
  const sim = Sim.cluster(3)
  sim.kill('B')
  const v = sim.node('A').installed.version
  sim.node('A').propose('c1', setPolicy('rules: x'))
  t.true(sim.until(() => sim.node('C').installed.version === v + 1) >= 0)
  sim.node('C').propose('c2', setPolicy('rules: y'))
  t.true(sim.until(() => sim.node('A').installed.version === v + 2) >= 0)
  sim.restart('B')
  t.is(sim.node('B').installed.version, v)
  const took = sim.until(() => sim.converged(v + 2))
  t.true(took >= 0 && took <= 6 * sim.intervalMs, `caught up in ${took} ms`)
  t.is(sim.get('B').stored.state.policyText, 'rules: y')
  t.is(sim.safetyViolation(), null)
})

test('concurrent changes on two members converge to the smaller digest; the loser is told and re-based as version + 1', t => {
  const sim = Sim.cluster(3)
  const v = sim.node('A').installed.version
  sim.node('A').propose('from A', setPolicy('rules: A'))
  sim.node('C').propose('from C', setPolicy('rules: C'))
  const dA = sim.node('A').pending?.digest as string
  const dC = sim.node('C').pending?.digest as string
  t.truthy(dA); t.truthy(dC); t.not(dA, dC)
  t.true(sim.until(() => sim.converged(v + 2)) >= 0)
  const [winner, loser] = dA < dC ? ['A', 'C'] : ['C', 'A']
  const winDigest = dA < dC ? dA : dC
  t.is(sim.allInstalls.find(i => i.version === v + 1)?.digest, winDigest)
  const lostEvent = sim.get(loser).events.find(e => e.outcome === 'rebased')
  t.like(lostEvent, { changeId: `from ${loser}`, version: v + 1, lostTo: { version: v + 1, digest: winDigest }, code: 'PEM_ERR_CHANGE_REBASED' })
  t.like(sim.get(loser).events.at(-1), { changeId: `from ${loser}`, outcome: 'installed', version: v + 2 })
  t.like(sim.get(winner).events.at(-1), { changeId: `from ${winner}`, outcome: 'installed', version: v + 1 })
  t.is(sim.get('B').stored.state.policyText, `rules: ${loser}`, 'the re-based change applies on top of the winner')
  t.is(sim.safetyViolation(), null)
})

test('concurrent changes on all five members converge to one sequence, every change installed once', t => {
  const sim = Sim.cluster(5, 7)
  const v = sim.node('A').installed.version
  for (const name of sim.names()) sim.node(name).propose(`from ${name}`, d => { d.policyText = `${d.policyText ?? ''}+${name}` })
  t.true(sim.until(() => sim.converged(v + 5) && sim.alive().every(x => !x.node.busy), 120_000) >= 0)
  const text = sim.get('A').stored.state.policyText as string
  t.deepEqual(text.split('+').filter(Boolean).sort(), ['A', 'B', 'C', 'D', 'E'])
  t.is(sim.safetyViolation(), null)
})

test('removed member: ignored from the new version on, cannot open later sets, stays out after restarts', t => {
  const sim = Sim.cluster(3)
  const cId = sim.get('C').identity.id
  const v = sim.node('A').installed.version
  sim.node('A').propose('remove C', d => { d.members[cId].state = 'removed' }, SIM_ADMIN)
  t.true(sim.until(() => sim.node('A').installed.version === v + 1 && sim.node('B').installed.version === v + 1) >= 0)
  sim.node('B').propose('after removal', setPolicy('secret rules'))
  t.true(sim.until(() => sim.node('A').installed.version === v + 2) >= 0)
  sim.run(5000)
  t.is(sim.node('C').installed.version, v, 'C never installs the removal or later sets')
  t.true((sim.node('A').rejections.PEM_ERR_REMOVED_MEMBER ?? 0) > 0, 'its heartbeats are refused by code')
  const heardA = sim.node('C').peers.get(sim.get('A').identity.id)?.lastHeard ?? -Infinity
  t.true(heardA < sim.now - sim.activeWindowMs, 'the others stop sending to it')
  t.not(sim.get('C').stored.state.policyText, 'secret rules')
  sim.restart('A'); sim.restart('C')
  sim.run(5000)
  t.true(sim.node('A').members.get(cId)?.removed)
  t.is(sim.node('C').installed.version, v)
})

test('a removed key cannot rejoin: re-activating it fails by code', t => {
  const sim = Sim.cluster(3)
  const cId = sim.get('C').identity.id
  const v = sim.node('A').installed.version
  sim.node('A').propose('remove C', d => { d.members[cId].state = 'removed' }, SIM_ADMIN)
  t.true(sim.until(() => sim.converged(v + 1, [sim.get('A'), sim.get('B')])) >= 0)
  sim.node('B').propose('re-add C', d => { d.members[cId].state = 'active' }, SIM_ADMIN)
  sim.run(3000)
  t.like(sim.get('B').events.at(-1), { changeId: 're-add C', outcome: 'failed', code: 'PEM_ERR_BAD_CONFIG' })
  t.is(sim.node('B').installed.version, v + 1)
})

test('a change adding two members at once is refused (single-change rule keeps majorities overlapping)', t => {
  const sim = Sim.cluster(3)
  const x = memberRecord(identityNo(40), 'x', '10.9.0.1:1'); const y = memberRecord(identityNo(41), 'y', '10.9.0.2:1')
  sim.node('A').propose('two at once', d => { d.members[x.id] = x; d.members[y.id] = y }, SIM_ADMIN)
  t.like(sim.get('A').events.at(-1), { outcome: 'failed', code: 'PEM_ERR_BAD_CONFIG' })
})

test('graceful leave: the others stop waiting for the leaver at once, without the active window', t => {
  const sim = Sim.cluster(3, 31)
  const v = sim.node('A').installed.version
  sim.node('C').leave()
  sim.get('C').alive = false
  sim.run(50)
  sim.node('A').propose('after leave', setPolicy('left'))
  const took = sim.until(() => sim.node('A').installed.version === v + 1 && sim.node('B').installed.version === v + 1)
  t.true(took >= 0 && took < sim.activeWindowMs, `took ${took} ms`)
})
