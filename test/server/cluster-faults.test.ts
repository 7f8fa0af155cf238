// Member faults and recovery on the in-memory network: failed install (D19), removal during a partition (E23), pause past
// the failure timeout (F29), wiped restart (F30), fast-forward by one member (C13), the staleness fence (C14).
import test from 'ava'
import { buildHeartbeat } from '../../lib/server/cluster/message'
import { SequenceSource } from '../../lib/server/cluster/sequence'
import { ClusterMsgType, splitClusterMsg } from '../../lib/wire/cluster-msg'
import { forgeSet, Sim, SIM_ADMIN, setPolicy } from '../helpers/cluster-sim'

test('D19: a failing commit leaves the old configuration installed and the set pending; the next try installs it', t => {
  const sim = Sim.cluster(3)
  const v = sim.node('A').installed.version
  sim.get('B').failCommits = 1e9
  sim.node('A').propose('x', setPolicy('x'))
  t.true(sim.until(() => sim.node('A').installed.version === v + 1) >= 0)
  sim.run(3000)
  t.is(sim.get('B').stored.state.version, v, 'B kept exactly the old version on "disk"')
  t.is(sim.node('B').installed.version, v)
  t.is(sim.node('B').pending?.version, v + 1)
  t.true((sim.node('B').rejections.PEM_ERR_STORE ?? 0) >= 1)
  sim.get('B').failCommits = 0
  t.true(sim.until(() => sim.converged(v + 1)) >= 0)
  t.is(sim.get('B').stored.state.policyText, 'x')
  t.is(sim.safetyViolation(), null)
})

test('E23: a member removed while partitioned cannot bring back the old member list or itself after heal', t => {
  const sim = Sim.cluster(3, 21)
  const c = sim.get('C')
  const v = sim.node('A').installed.version
  sim.net.split([sim.get('A').addr, sim.get('B').addr], [c.addr])
  sim.node('A').propose('remove C', d => { d.members[c.identity.id].state = 'removed' }, SIM_ADMIN)
  t.true(sim.until(() => sim.converged(v + 1, [sim.get('A'), sim.get('B')])) >= 0)
  c.node.propose('C tries a change', setPolicy('from the removed side'))
  sim.run(10_000)
  sim.net.heal()
  sim.run(15_000)
  t.is(sim.node('A').installed.version, v + 1)
  t.is(sim.node('B').installed.version, v + 1)
  t.true(sim.node('A').members.get(c.identity.id)?.removed)
  t.true((sim.node('A').rejections.PEM_ERR_REMOVED_MEMBER ?? 0) > 0)
  t.not(sim.get('A').stored.state.policyText, 'from the removed side')
  t.is(sim.safetyViolation(), null)
})

test('F29: a member paused past the failure timeout is dropped from the active set, then resumes and catches up', t => {
  const sim = Sim.cluster(3, 22)
  const v = sim.node('A').installed.version
  sim.pause('C')
  sim.node('A').propose('while paused', setPolicy('p'))
  t.true(sim.until(() => sim.node('B').installed.version === v + 1) >= 0)
  const cId = sim.get('C').identity.id
  t.true(sim.now - (sim.node('A').peers.get(cId)?.lastHeard ?? 0) > sim.activeWindowMs, 'C is out of the active window')
  sim.resume('C')
  t.true(sim.until(() => sim.converged(v + 1)) >= 0)
  t.is(sim.safetyViolation(), null)
})

test('F30: restart with a wiped data dir (same key, trust state, clock-based epoch) re-syncs to the current version', t => {
  const sim = Sim.cluster(3, 23)
  sim.node('A').propose('x', setPolicy('x'))
  const v = sim.node('A').installed.version + 1
  t.true(sim.until(() => sim.converged(v)) >= 0)
  sim.restartWiped('C', 'B')
  t.is(sim.node('C').installed.version, 0)
  t.true(sim.until(() => sim.converged(v)) >= 0)
  t.is(sim.get('C').stored.state.policyText, 'x')
  t.true(sim.allInstalls.filter(i => i.member === 'C').every(i => i.version >= 1))
  t.is(sim.safetyViolation(), null)
})

test('C13: a member announcing a huge version with a signed set cannot install it anywhere; the others drop it and remove that member', t => {
  const sim = Sim.cluster(3, 24)
  const a = sim.get('A'); const b = sim.get('B'); const c = sim.get('C')
  const v = a.node.installed.version
  sim.kill('A')
  const huge = Number.MAX_SAFE_INTEGER
  const { set, digest: hex } = forgeSet(sim.clusterId, a, huge, d => { d.policyText = 'forever' })
  const digest = Buffer.from(hex, 'hex')
  const signer = { clusterId: sim.clusterId, identity: a.identity, seq: new SequenceSource(9) }
  sim.net.attach(a.addr, p => {
    if (p.kind === 'msg' && splitClusterMsg(p.bytes).header.type === ClusterMsgType.SetFetch) sim.net.send({ kind: 'set', from: a.addr, to: p.from, bytes: set })
  })
  const body = { ...a.node.heartbeatBody(), installedVersion: huge, installedDigest: digest }
  let speaking = true
  const speak = (): void => {
    if (!speaking) return
    for (const x of [b, c]) sim.net.send({ kind: 'msg', from: a.addr, to: x.addr, bytes: buildHeartbeat(signer, body) })
    sim.net.clock.at(sim.now + 1000, speak)
  }
  speak()
  sim.run(15_000)
  t.is(b.node.installed.version, v); t.is(c.node.installed.version, v)
  t.true((b.node.rejections.PEM_ERR_BAD_SUCCESSION ?? 0) >= 1 && (c.node.rejections.PEM_ERR_BAD_SUCCESSION ?? 0) >= 1, 'the jump its change log does not account for is refused')
  t.is(b.node.pending, null, 'nothing is held at the forged version')
  b.node.propose('remove A', d => { d.members[a.identity.id].state = 'removed' }, SIM_ADMIN)
  t.true(sim.until(() => sim.converged(v + 1, [b, c]), 60_000) >= 0, 'the cluster is not stuck above it')
  speaking = false
  t.true(b.node.members.get(a.identity.id)?.removed)
  t.true(sim.allInstalls.every(i => i.version < huge))
})

test('C14: a member cut off from the majority past max staleness stops serving decisions; the majority keeps serving', t => {
  const sim = Sim.cluster(3, 25)
  t.true(sim.node('A').canServe(5000))
  sim.net.split([sim.get('A').addr], [sim.get('B').addr, sim.get('C').addr])
  sim.run(6000)
  t.false(sim.node('A').canServe(5000))
  t.true(sim.node('B').canServe(5000))
  sim.net.heal()
  t.true(sim.until(() => sim.node('A').canServe(5000)) >= 0)
})

/**
 * Steps virtual time 1 ms at a time until `member` has installed `version` (at most `maxMs`); fails at the first step
 * where it would serve a decision before that. Returns whether it installed.
 */
function servesOnlyOnceCaughtUp (t: import('ava').ExecutionContext, sim: Sim, member: string, version: number, maxMs = 20_000): boolean {
  for (let ms = 0; ms < maxMs; ms++) {
    const node = sim.node(member)
    if (node.installed.version >= version) return true
    if (node.canServe(5000)) { t.fail(`${member} would serve at version ${node.installed.version} while the majority has ${version}`); return false }
    sim.run(1)
  }
  return false
}

test('C14: a member that comes back (healed cut, pause past the window, restart) serves nothing until it has installed the majority\'s version', t => {
  const sim = Sim.cluster(3, 26)
  const cases: Array<[string, () => void, () => void]> = [
    ['healed cut', () => sim.net.split([sim.get('C').addr], [sim.get('A').addr, sim.get('B').addr]), () => sim.net.heal()],
    ['pause', () => sim.pause('C'), () => sim.resume('C')],
    ['restart', () => sim.kill('C'), () => sim.restart('C')]
  ]
  for (const [what, away, back] of cases) {
    const v = sim.node('A').installed.version
    away()
    sim.run(4000) // past the active window: A and B install without C
    sim.node('A').propose(`while C is away (${what})`, setPolicy(what))
    t.true(sim.until(() => sim.converged(v + 1, [sim.get('A'), sim.get('B')])) >= 0, what)
    t.is(sim.node('C').installed.version, v, `${what}: C missed it`)
    sim.run(5000) // C has heard nobody for longer than maxStalenessMs: what it knew of A and B is stale
    back()
    t.true(servesOnlyOnceCaughtUp(t, sim, 'C', v + 1), `${what}: C catches up`)
    t.true(sim.until(() => sim.node('C').canServe(5000)) >= 0, `${what}: and then serves`)
  }
  t.is(sim.safetyViolation(), null)
})

test('C14: a member whose install fails stops serving once the others are ahead; the two ahead of it still serve', t => {
  const sim = Sim.cluster(3, 27)
  sim.get('C').failCommits = 1e9 // C cannot install: A and B are ahead of it
  const v = sim.node('A').installed.version
  sim.node('A').propose('ahead', setPolicy('ahead'))
  t.true(sim.until(() => sim.converged(v + 1, [sim.get('A'), sim.get('B')])) >= 0)
  sim.run(2000)
  t.false(sim.node('C').canServe(5000), 'C is behind a majority: it does not serve')
  t.true(sim.node('A').canServe(5000) && sim.node('B').canServe(5000), 'A and B serve (each counts the other and itself)')
})

test('C14: a member whose ticks stopped for longer than the active window serves nothing until one window after they resume', t => {
  const sim = Sim.cluster(3, 28)
  const c = sim.node('C')
  t.true(c.canServe(5000))
  sim.pause('C')
  sim.run(2000)
  t.true(c.canServe(5000), 'inside the window (nothing has run on C to tell)')
  sim.run(3000)
  t.false(c.canServe(5000), 'its own tick is overdue past the active window')
  sim.resume('C')
  const resumed = sim.now
  let served = -1
  while (sim.now - resumed < 10_000 && served < 0) { if (c.canServe(5000)) served = sim.now - resumed; sim.run(1) }
  t.true(served >= sim.activeWindowMs, `C served ${served} ms after it resumed, although it heard A and B at its own version at once`)
})
