// Cluster node security on the in-memory network: each attack is refused by code and installs nothing
// (CHECKLIST A1 rogue, A10 relay, B7/B8 replay at node level, C11 rollback, C12 equivocation, D21 duplicate keys, E22/E25).
import test from 'ava'
import { ClusterNode } from '../../lib/server/cluster/node'
import { buildHeartbeat } from '../../lib/server/cluster/message'
import { MemberTable } from '../../lib/server/cluster/members'
import { MemoryHwmStore, SequenceSource } from '../../lib/server/cluster/sequence'
import { buildSet, contentOf } from '../../lib/server/cluster/set-codec'
import { agreement } from '../../lib/server/cluster/sync'
import { generateIdentity } from '../../lib/crypto/identity'
import { ClusterMsgType, ClusterStatus, MemberState, PendingPhase, splitClusterMsg } from '../../lib/wire/cluster-msg'
import { unpack } from '../../lib/wire/frame'
import { emptyState, type ConfigState } from '../../lib/server/state'
import { forgeSet, Sim, SIM_ADMIN, memberRecord, setPolicy, type SimMember } from '../helpers/cluster-sim'

const installedSnapshot = (sim: Sim): string => sim.names().map(n => `${n}:${sim.node(n).installed.version}:${sim.node(n).installed.digest}`).join(' ')

/** Heartbeat body as `x` would send it, with a chosen pending advertisement. */
function fakeBody (x: SimMember, pending?: { version: number, digest: string }, listOnly?: string[]): Parameters<typeof buildHeartbeat>[1] {
  const b = x.node.heartbeatBody()
  if (pending !== undefined) { b.pendingVersion = pending.version; b.pendingDigest = Buffer.from(pending.digest, 'hex'); b.phase = PendingPhase.Held; b.status = ClusterStatus.SyncInProgress }
  if (listOnly !== undefined) b.members = b.members.filter(e => listOnly.includes(e.digest.toString('hex')))
  return b
}

test('A1/E25: a rogue that knows an address but holds no sponsored key is refused and cannot add itself', t => {
  const sim = Sim.cluster(3)
  const before = installedSnapshot(sim)
  const rogue = generateIdentity()
  const a = sim.get('A')
  const trust: ConfigState = { ...emptyState(), members: { [rogue.id]: memberRecord(rogue, 'rogue', '6.6.6.6:1'), [a.identity.id]: memberRecord(a.identity, 'A', a.addr) } }
  const node = new ClusterNode({ clusterId: sim.clusterId, identity: rogue, addr: '6.6.6.6:1', transport: sim.net.transport('6.6.6.6:1'), clock: sim.net.clock, epoch: 1, hwm: new MemoryHwmStore(), installed: trust, commit: () => {} })
  sim.net.attach('6.6.6.6:1', p => node.receive(p))
  for (let i = 0; i < 5; i++) { node.tick(); sim.run(1000) }
  t.true((a.node.rejections.PEM_ERR_UNKNOWN_MEMBER ?? 0) >= 5)
  t.is(installedSnapshot(sim), before)
  t.false([...a.node.members.byId.keys()].includes(rogue.id))
})

test('A10/B7: a captured heartbeat replayed, or relayed from another address, is refused and changes nothing', t => {
  const sim = Sim.cluster(3)
  const b = sim.get('B')
  const captured = sim.net.sent.filter(p => p.kind === 'msg' && p.to === b.addr && p.from === sim.get('A').addr)
  const before = b.node.rejections.PEM_ERR_REPLAY ?? 0
  const heardA = b.node.peers.get(sim.get('A').identity.id)?.lastHeard
  for (const p of captured.slice(-5)) sim.net.inject({ ...p, from: sim.get('C').addr })
  sim.net.clock.runFor(0)
  t.is((b.node.rejections.PEM_ERR_REPLAY ?? 0) - before, 5)
  t.is(b.node.peers.get(sim.get('A').identity.id)?.lastHeard, heardA, 'no refresh of the sender by a replay')
})

test('B8: after the receiver restarts, old captured heartbeats are still refused', t => {
  const sim = Sim.cluster(3)
  const b = sim.get('B')
  const captured = sim.net.sent.filter(p => p.kind === 'msg' && p.to === b.addr).slice(-6)
  sim.restart('B')
  for (const p of captured) sim.net.inject(p)
  sim.net.clock.runFor(0)
  t.is(sim.node('B').rejections.PEM_ERR_REPLAY, 6)
})

test('C11: a validly signed older policy set pushed after a newer install → PEM_ERR_ROLLBACK, the member keeps its version', t => {
  const sim = Sim.cluster(3)
  const oldSets = sim.net.sent.filter(p => p.kind === 'set')
  t.true(oldSets.length > 0)
  sim.node('A').propose('newer', setPolicy('rules: new'))
  t.true(sim.until(() => sim.converged(4)) >= 0)
  const v = sim.node('C').installed.version
  for (const p of oldSets) sim.net.inject({ ...p, to: sim.get('C').addr })
  sim.net.clock.runFor(0)
  t.true((sim.node('C').rejections.PEM_ERR_ROLLBACK ?? 0) >= 1)
  t.is(sim.node('C').installed.version, v)
  t.is(sim.node('C').pending, null)
})

test('NOT_ADDRESSED: a heartbeat whose digest list lacks the receiver is ignored by code', t => {
  const sim = Sim.cluster(3)
  const a = sim.get('A'); const b = sim.get('B')
  const signer = { clusterId: sim.clusterId, identity: a.identity, seq: new SequenceSource(50) }
  sim.net.inject({ kind: 'msg', from: a.addr, to: b.addr, bytes: buildHeartbeat(signer, fakeBody(a, { version: 99, digest: 'ab'.repeat(32) }, [a.identity.id])) })
  sim.net.clock.runFor(0)
  t.is(b.node.rejections.PEM_ERR_NOT_ADDRESSED, 1)
  t.is(b.node.want, null, 'nothing fetched')
})

test('C12: equivocation — two different sets signed by one origin for one version → neither installed, all raise it; an honest change then proceeds', t => {
  const sim = Sim.cluster(3)
  const a = sim.get('A'); const b = sim.get('B'); const c = sim.get('C')
  const v = a.node.installed.version
  sim.kill('A') // A is compromised: the harness speaks for it
  const mk = (text: string): { set: Buffer, digest: string } => forgeSet(sim.clusterId, a, v + 1, d => { d.policyText = text })
  const s1 = mk('evil one'); const s2 = mk('evil two')
  const signer = { clusterId: sim.clusterId, identity: a.identity, seq: new SequenceSource(77) }
  sim.net.attach(a.addr, p => {
    if (p.kind !== 'msg' || splitClusterMsg(p.bytes).header.type !== ClusterMsgType.SetFetch) return
    sim.net.send({ kind: 'set', from: a.addr, to: p.from, bytes: p.from === b.addr ? s1.set : s2.set })
  })
  for (let i = 0; i < 12; i++) {
    sim.net.send({ kind: 'msg', from: a.addr, to: b.addr, bytes: buildHeartbeat(signer, fakeBody(a, { version: v + 1, digest: s1.digest })) })
    sim.net.send({ kind: 'msg', from: a.addr, to: c.addr, bytes: buildHeartbeat(signer, fakeBody(a, { version: v + 1, digest: s2.digest })) })
    sim.run(1000)
  }
  t.is(b.node.installed.version, v); t.is(c.node.installed.version, v)
  t.true(b.node.alarms.some(x => x.startsWith('equivocation')) && c.node.alarms.some(x => x.startsWith('equivocation')), 'both raise it')
  t.true((b.node.rejections.PEM_ERR_EQUIVOCATION ?? 0) + (c.node.rejections.PEM_ERR_EQUIVOCATION ?? 0) >= 1)
  t.is(sim.safetyViolation(), null)
  sim.net.detach(a.addr)
  b.node.propose('honest', setPolicy('rules: honest'))
  t.true(sim.until(() => sim.converged(v + 1, [b, c])) >= 0)
  t.is(c.stored.state.policyText, 'rules: honest')
})

test('D21: the same key listed twice (two member ids) counts once in the majority', t => {
  const A = generateIdentity(); const B = generateIdentity()
  const members: ConfigState['members'] = {
    [A.id]: memberRecord(A, 'a', '1'), fake: { ...memberRecord(A, 'a again', '2'), id: 'fake' }, [B.id]: memberRecord(B, 'b', '3')
  }
  const table = new MemberTable(members)
  t.is(table.active().length, 2)
  const res = agreement({
    self: A.id, now: 0, activeWindowMs: 3500, voters: [...table.active().map(m => m.id), A.id], listed: new Set([A.id, B.id]),
    installedVersion: 1, pending: { version: 2, digest: 'aa', locked: false }, peers: new Map()
  })
  t.false(res.canLock, 'one key alone is not a majority of two, however often it is listed')
})

test('E22: a removed member pushing a set → PEM_ERR_REMOVED_MEMBER; its heartbeats → PEM_ERR_REMOVED_MEMBER', t => {
  const sim = Sim.cluster(3)
  const c = sim.get('C')
  const v = sim.node('A').installed.version
  sim.node('A').propose('remove C', d => { d.members[c.identity.id].state = 'removed' }, SIM_ADMIN)
  t.true(sim.until(() => sim.node('B').installed.version === v + 1) >= 0)
  const s = { ...(unpack(c.node.installed.plaintext) as ConfigState), version: v + 5, policyText: 'from the removed' }
  sim.net.inject({ kind: 'set', from: c.addr, to: sim.get('B').addr, bytes: buildSet(sim.clusterId, c.identity, contentOf(s).plaintext, c.identity.id) })
  sim.run(2000)
  t.true((sim.node('B').rejections.PEM_ERR_REMOVED_MEMBER ?? 0) >= 2)
  t.is(sim.node('B').installed.version, v + 1)
  t.is(MemberState.Removed, 4)
})
