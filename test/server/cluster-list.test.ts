// Short heartbeats (FORMAT.md §5, header version 2): the full digest list goes out only after a start or a change, a
// receiver trusts a list digest only against the sender's last full list, and a receiver that lacks it asks for it.
import test from 'ava'
import { buildHeartbeat } from '../../lib/server/cluster/message'
import { SequenceSource } from '../../lib/server/cluster/sequence'
import { ClusterMsgType, decodeHeartbeatBody, digestListDigest, MemberState, splitClusterMsg, type DigestEntry, type HeartbeatBody } from '../../lib/wire/cluster-msg'
import type { Packet } from '../../lib/server/cluster/transport'
import { Sim, setPolicy, type SimMember } from '../helpers/cluster-sim'

interface Seen { packet: Packet, type: number, epoch: number, body: HeartbeatBody | null }
/** Every cluster message sent from index `from` on, decoded (bodies of heartbeats only). */
function sentSince (sim: Sim, from: number): Seen[] {
  return sim.net.sent.slice(from).filter(p => p.kind === 'msg').map(packet => {
    const raw = splitClusterMsg(packet.bytes)
    return { packet, type: raw.header.type, epoch: raw.header.epoch, body: raw.header.type === ClusterMsgType.Heartbeat ? decodeHeartbeatBody(raw.body) : null }
  })
}
const heartbeats = (seen: Seen[], from: SimMember, to?: SimMember): Seen[] =>
  seen.filter(s => s.type === ClusterMsgType.Heartbeat && s.packet.from === from.addr && (to === undefined || s.packet.to === to.addr))
const listFetches = (seen: Seen[], from: SimMember, to: SimMember): Seen[] =>
  seen.filter(s => s.type === ClusterMsgType.ListFetch && s.packet.from === from.addr && s.packet.to === to.addr)
const ids = (list: DigestEntry[] | null | undefined): string[] => (list ?? []).map(e => e.digest.toString('hex'))

test('steady heartbeats carry only the list digest (190 bytes); a membership change sends the full list, then the digest again', t => {
  const sim = Sim.cluster(3)
  sim.run(2000)
  const mark = sim.net.sent.length
  sim.run(3000)
  const steady = sentSince(sim, mark)
  for (const name of sim.names()) {
    const hbs = heartbeats(steady, sim.get(name))
    t.true(hbs.length >= 6, `${name} sent ${hbs.length}`)
    t.true(hbs.every(s => s.body?.members === null && s.packet.bytes.length === 190), `${name}: all short`)
    t.deepEqual(hbs[0].body?.listDigest, digestListDigest(sim.node(name).heartbeatBody().members))
  }
  t.deepEqual(steady.filter(s => s.type === ClusterMsgType.ListFetch), [], 'nobody needed to ask')

  const v = sim.node('A').installed.version
  const d = sim.sponsorJoin('C', 'D')
  t.true(sim.until(() => sim.converged(v + 1)) >= 0)
  sim.run(3000)
  const after = sentSince(sim, mark)
  for (const name of ['A', 'B', 'C']) {
    const hbs = heartbeats(after, sim.get(name)).filter(s => (s.body?.installedVersion ?? 0) > v)
    t.true(hbs.length >= 3)
    const first = hbs[0].body as HeartbeatBody
    t.not(first.members, null, `${name}: the first heartbeat after the change carries the full list`)
    t.true(ids(first.members).includes(d.identity.id), `${name}: the full list names the new member`)
    // The same bytes went to every member; after that broadcast only the answer to the joiner's ask may be full (D was
    // still on its trust state when the full list came, refused it as from an unknown member, and asked once it joined).
    const later = hbs.filter(s => !s.packet.bytes.equals(hbs[0].packet.bytes) && !(s.packet.to === d.addr && s.body?.members !== null))
    t.true(later.length >= 2 && later.every(s => s.body?.members === null && s.body.listDigest.equals(first.listDigest)), `${name}: then short, with the new digest`)
  }
  t.is(sim.safetyViolation(), null)
})

test('a short heartbeat whose list digest is unknown, stale or another sender\'s is never taken as listing the receiver', t => {
  const sim = Sim.cluster(3)
  sim.run(2000)
  const a = sim.get('A'); const b = sim.get('B'); const c = sim.get('C')
  const sA = { clusterId: sim.clusterId, identity: a.identity, seq: new SequenceSource(50) }
  const sC = { clusterId: sim.clusterId, identity: c.identity, seq: new SequenceSource(50) }
  const base = a.node.heartbeatBody()
  const pending = { pendingVersion: 99, pendingDigest: Buffer.alloc(32, 0xab), phase: 1 as const }
  /** A's list with C's address changed: still names B, but a list B never received in full from A. */
  const variant = (addr: string): DigestEntry[] => base.members.map(e => e.digest.toString('hex') === c.identity.id ? { ...e, addr } : e)
  const full = (list: DigestEntry[]): HeartbeatBody => ({ ...base, members: list, listDigest: digestListDigest(list) })
  const short = (list: DigestEntry[]): HeartbeatBody => ({ ...base, ...pending, members: null, listDigest: digestListDigest(list) })
  const send = (signer: typeof sA, from: SimMember, body: HeartbeatBody): void => {
    sim.net.inject({ kind: 'msg', from: from.addr, to: b.addr, bytes: buildHeartbeat(signer, body) })
    sim.net.clock.runFor(0)
  }
  const heard = (): number | undefined => b.node.peers.get(a.identity.id)?.lastHeard
  const check = (what: string, body: HeartbeatBody, signer = sA, from = a): void => {
    const before = { unknown: b.node.unknownLists, heard: heard(), sent: sim.net.sent.length }
    send(signer, from, body)
    t.is(b.node.unknownLists, before.unknown + 1, `${what}: ignored as unknown`)
    t.is(heard(), before.heard, `${what}: the sender is not refreshed`)
    t.is(b.node.want, null, `${what}: the advertised version is not fetched`)
    t.true(listFetches(sentSince(sim, before.sent), b, a).length <= 1)
  }
  t.true(base.members.some(e => e.digest.toString('hex') === b.identity.id), 'the lists below all name B')
  // Never received in full from A (it names B, and A could sign it, but B has not seen it).
  const before = sim.net.sent.length
  check('unknown digest', short(variant('10.9.9.9:1')))
  t.is(listFetches(sentSince(sim, before), b, a).length, 1, 'B asks A for its full list')
  t.deepEqual(b.node.rejections.PEM_ERR_NOT_ADDRESSED, undefined)
  // Stale: A's earlier full list, after a later one.
  send(sA, a, full(variant('10.9.9.1:1')))
  send(sA, a, full(variant('10.9.9.2:1')))
  sim.run(1000)
  check('stale digest', short(variant('10.9.9.1:1')))
  // Another sender's: C's last full list, quoted by A.
  send(sC, c, full(variant('10.9.9.3:1')))
  check('another sender\'s digest', short(variant('10.9.9.3:1')))
  // The matching digest is trusted: the pending version is then fetched.
  send(sA, a, short(variant('10.9.9.2:1')))
  t.is(b.node.want?.version, 99)
})

test('a known list that lacks the receiver, or lists it removed, stays NOT_ADDRESSED in the short form', t => {
  const sim = Sim.cluster(3)
  const a = sim.get('A'); const b = sim.get('B')
  const signer = { clusterId: sim.clusterId, identity: a.identity, seq: new SequenceSource(50) }
  const base = a.node.heartbeatBody()
  for (const list of [base.members.filter(e => e.digest.toString('hex') !== b.identity.id), base.members.map(e => e.digest.toString('hex') === b.identity.id ? { ...e, state: MemberState.Removed } : e)]) {
    const before = b.node.rejections.PEM_ERR_NOT_ADDRESSED ?? 0
    for (const members of [list, null]) {
      sim.net.inject({ kind: 'msg', from: a.addr, to: b.addr, bytes: buildHeartbeat(signer, { ...base, members, listDigest: digestListDigest(list) }) })
      sim.net.clock.runFor(0)
    }
    t.is((b.node.rejections.PEM_ERR_NOT_ADDRESSED ?? 0) - before, 2)
  }
})

test('a receiver that restarted gets the full lists (it asks), hears everyone at once and takes part in the next change', t => {
  const sim = Sim.cluster(3)
  sim.run(2000)
  const a = sim.get('A'); const b = sim.get('B'); const c = sim.get('C')
  const mark = sim.net.sent.length
  sim.restart('B')
  const restartedAt = sim.now
  sim.run(2000)
  const seen = sentSince(sim, mark)
  for (const x of [a, c]) {
    t.true(heartbeats(seen, x, b).some(s => s.body?.members === null), `${x.name} kept sending short heartbeats`)
    t.true(listFetches(seen, b, x).length >= 1, `B asked ${x.name}`)
    t.true(heartbeats(seen, x, b).some(s => s.body?.members !== null && ids(s.body?.members).includes(b.identity.id)), `${x.name} answered with its full list`)
    t.true((b.node.peers.get(x.identity.id)?.lastHeard ?? -1) > restartedAt, `B hears ${x.name}`)
  }
  t.true(b.node.unknownLists >= 2)
  t.true(b.node.canServe(2000))
  // The restarted B's own first heartbeat is full (a start), so A and C accept it without asking.
  const fromB = heartbeats(seen, b)
  t.true(fromB.length > 0 && fromB[0].body?.members !== null)
  t.deepEqual([...listFetches(seen, a, b), ...listFetches(seen, c, b)], [])
  const v = sim.node('A').installed.version
  sim.node('B').propose('after restart', setPolicy('rules: after restart'))
  t.true(sim.until(() => sim.converged(v + 1)) >= 0)
  t.is(sim.safetyViolation(), null)
})
