// Clean stops on the in-memory network: a member's own departure change takes it out of the majority count (the rest
// keep serving and installing), its return change counts it again after it caught up; departures or returns forged by
// another member, the last counted member departing, and a replayed Leave are refused (docs/CLUSTER.md, "Clean stops").
import test from 'ava'
import type { ClusterNode } from '../../lib/server/cluster/node'
import { ClusterMsgType, ClusterStatus, splitClusterMsg, decodeHeartbeatBody } from '../../lib/wire/cluster-msg'
import { signAsOrigin } from '../../lib/server/cluster/changes'
import { buildSet, contentOf } from '../../lib/server/cluster/set-codec'
import type { ClusterLogEntry, ConfigState } from '../../lib/server/state'
import { unpack } from '../../lib/wire/frame'
import { Sim, setPolicy, type SimMember } from '../helpers/cluster-sim'

const STALE_MS = 5000

function mark (self: SimMember, departed: boolean): (d: ConfigState) => void {
  return d => { const r = d.members[self.identity.id]; if (departed) r.departed = true; else delete r.departed }
}

/** `x` proposes its own departure and waits until every alive member installed it; then it is stopped (no Leave needed). */
function depart (sim: Sim, x: SimMember): void {
  const v = x.node.installed.version + 1
  x.node.propose(`depart ${x.name}`, mark(x, true))
  if (sim.until(() => sim.alive().every(m => m.node.installed.version >= v)) < 0) throw new Error(`${x.name}'s departure did not install`)
  sim.kill(x.name)
}

/** What a compromised `as` can sign: version `version` of its installed configuration edited, with a log entry naming `member`. */
function forgeOwn (sim: Sim, as: SimMember, version: number, edit: (d: ConfigState) => void, member: NonNullable<ClusterLogEntry['member']>): { set: Buffer, digest: string } {
  const state = unpack(as.node.installed.plaintext) as ConfigState
  edit(state)
  state.version = version
  state.changedBy = as.identity.id
  state.clusterLog = [...(state.clusterLog ?? []), { version, origin: as.identity.id, change: 'forged', member }]
  signAsOrigin(sim.clusterId, state, as.identity)
  const { plaintext, digest } = contentOf(state)
  return { set: buildSet(sim.clusterId, as.identity, plaintext, as.identity.id), digest: digest.toString('hex') }
}

const counted = (n: ClusterNode): number => n.members.voterIds().length

test('2 members: after B departs, A alone is a majority: it keeps serving and installs a change; B back catches up first', t => {
  const sim = Sim.cluster(2, 41)
  const a = sim.get('A'); const b = sim.get('B')
  depart(sim, b)
  t.is(counted(a.node), 1)
  t.true(b.node.departed)
  sim.run(STALE_MS + 1000)
  t.true(a.node.canServe(STALE_MS), 'A hears a majority of the counted members (itself)')
  const v = a.node.installed.version + 1
  a.node.propose('p', setPolicy('while B is away'))
  t.true(sim.until(() => a.node.installed.version === v, 5000) >= 0, 'installed by A alone')
  sim.restart('B')
  t.false(sim.node('B').canServe(STALE_MS), 'B back: not counted, serves nothing')
  sim.node('B').propose('return', mark(b, false))
  t.true(sim.until(() => sim.node('B').installed.version === v + 1 && a.node.installed.version === v + 1, 10000) >= 0, 'B caught up to v, then its return (re-based) is v + 1')
  t.is(sim.node('B').installed.state.policyText, 'while B is away')
  t.false(sim.node('B').departed)
  t.is(counted(a.node), 2)
  t.true(sim.node('B').canServe(STALE_MS))
  t.is(sim.safetyViolation(), null)
})

test('5 members: two depart one after the other, the remaining 3 install; a crash then still leaves 2 of 3', t => {
  const sim = Sim.cluster(5, 42)
  depart(sim, sim.get('D'))
  depart(sim, sim.get('E'))
  const a = sim.get('A')
  t.is(counted(a.node), 3)
  sim.kill('C')
  const v = a.node.installed.version + 1
  a.node.propose('p', setPolicy('three left, one crashed'))
  t.true(sim.until(() => a.node.installed.version === v && sim.node('B').installed.version === v, 10000) >= 0)
  sim.kill('B')
  a.node.propose('q', setPolicy('alone of three'))
  sim.run(10000)
  t.is(a.node.installed.version, v, 'one of three counted is no majority: nothing installs')
  t.false(a.node.canServe(STALE_MS))
  t.is(sim.safetyViolation(), null)
})

test('a departure or return of another member, or of the last counted one, is refused on proposal and on receipt', t => {
  const sim = Sim.cluster(3, 43)
  const a = sim.get('A'); const b = sim.get('B'); const c = sim.get('C')
  const v = b.node.installed.version
  const events: string[] = []
  a.node.propose('depart C from A', mark(c, true))
  t.true(sim.until(() => a.events.some(e => e.changeId === 'depart C from A'), 1000) >= 0)
  events.push(...a.events.filter(e => e.changeId === 'depart C from A').map(e => `${e.outcome}:${e.code ?? ''}`))
  t.deepEqual(events, ['failed:PEM_ERR_BAD_CONFIG'], 'the proposer refuses it itself')
  // A compromised A signs it anyway, with a log entry that claims C's own departure.
  const forged = forgeOwn(sim, a, v + 1, mark(c, true), { op: 'depart', id: c.identity.id })
  const refusedBefore = b.node.rejections.PEM_ERR_BAD_SUCCESSION ?? 0
  b.node.want = { version: v + 1, digest: forged.digest, installed: true, from: a.identity.id, tries: 0 }
  b.node.receive({ kind: 'set', from: a.addr, to: b.addr, bytes: forged.set })
  t.is((b.node.rejections.PEM_ERR_BAD_SUCCESSION ?? 0) - refusedBefore, 1, 'C marked departed by A: refused')
  t.is(b.node.pending, null)
  // Two depart in turn; the last counted member's departure then fails.
  depart(sim, c)
  depart(sim, b)
  t.is(counted(a.node), 1)
  a.node.propose('depart A', mark(a, true))
  sim.run(1000)
  t.is(a.events.find(e => e.changeId === 'depart A')?.code, 'PEM_ERR_BAD_CONFIG')
  t.false(a.node.departed)
  t.is(sim.safetyViolation(), null)
})

test('a replayed Leave is refused and a member back from its departure keeps being counted', t => {
  const sim = Sim.cluster(3, 44)
  const a = sim.get('A'); const c = sim.get('C')
  c.node.leave()
  sim.run(100)
  const leave = sim.net.sent.filter(p => p.kind === 'msg' && p.from === c.addr && p.to === a.addr).find(p => {
    const raw = splitClusterMsg(p.bytes)
    return raw.header.type === ClusterMsgType.Heartbeat && decodeHeartbeatBody(raw.body).status === ClusterStatus.Leave
  })
  t.truthy(leave)
  t.true(a.node.peers.get(c.identity.id)?.left)
  t.is(counted(a.node), 3, 'a Leave alone changes no count')
  sim.restart('C')
  sim.run(3000)
  t.false(a.node.peers.get(c.identity.id)?.left, 'heard again after the restart')
  const before = a.node.rejections.PEM_ERR_REPLAY ?? 0
  if (leave !== undefined) sim.net.inject(leave)
  sim.run(0)
  t.is((a.node.rejections.PEM_ERR_REPLAY ?? 0) - before, 1)
  t.false(a.node.peers.get(c.identity.id)?.left, 'the replay did not mark C as left')
})
