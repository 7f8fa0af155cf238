// What one compromised member can no longer do (issue 15 findings 1 and 8; CHECKLIST C12, C13, D20, E25), on the
// in-memory network: the harness holds member A's key and speaks for it with sets it signs itself (forgeSet). Every
// set is checked against the receiver's INSTALLED configuration; catch-up needs a majority of installed voters.
import test from 'ava'
import { ClusterNode, type ChangeEvent } from '../../lib/server/cluster/node'
import { buildHeartbeat } from '../../lib/server/cluster/message'
import { MemoryHwmStore, SequenceSource } from '../../lib/server/cluster/sequence'
import { buildSet, contentOf } from '../../lib/server/cluster/set-codec'
import { adminKeyPairFromSeed, adminPasswdInput, adminRecordInput, encodeAdminKey } from '../../lib/crypto/admin-key'
import { checkSuccession, draftChange, signAsOrigin, type Change } from '../../lib/server/cluster/changes'
import { MemberTable } from '../../lib/server/cluster/members'
import { SIG_CTX_ADMIN_MEMBER_CHANGE, SIG_CTX_ADMIN_PASSWD } from '../../lib/crypto/contexts'
import { SCRYPT_DEFAULT } from '../../lib/crypto/password'
import { sign } from '../../lib/crypto/sign'
import { MockNetwork } from '../../lib/server/cluster/transport-mock'
import { ClusterMsgType, ClusterStatus, PendingPhase, splitClusterMsg } from '../../lib/wire/cluster-msg'
import { emptyState, type ConfigState } from '../../lib/server/state'
import { pack, unpack } from '../../lib/wire/frame'
import { forgeSet, identityNo, memberRecord, Sim, SIM_ADMIN, simAdmins, type SimMember } from '../helpers/cluster-sim'

interface Advert { installed?: { version: number, digest: string }, pending?: { version: number, digest: string } }

/**
 * Kill `a` and speak for it with its key: every interval a heartbeat to `to` advertising `advert`, and `set` to whoever
 * fetches. Returns a function that stops speaking.
 */
let epochs = 1000
function speakFor (sim: Sim, a: SimMember, to: SimMember[], advert: Advert, set: Buffer): () => void {
  sim.kill(a.name)
  const signer = { clusterId: sim.clusterId, identity: a.identity, seq: new SequenceSource(epochs++) } // fresh each time
  sim.net.attach(a.addr, p => {
    if (p.kind === 'msg' && splitClusterMsg(p.bytes).header.type === ClusterMsgType.SetFetch) sim.net.send({ kind: 'set', from: a.addr, to: p.from, bytes: set })
  })
  const body = a.node.heartbeatBody()
  if (advert.installed !== undefined) { body.installedVersion = advert.installed.version; body.installedDigest = Buffer.from(advert.installed.digest, 'hex') }
  if (advert.pending !== undefined) { body.pendingVersion = advert.pending.version; body.pendingDigest = Buffer.from(advert.pending.digest, 'hex'); body.phase = PendingPhase.Held; body.status = ClusterStatus.SyncInProgress }
  let speaking = true
  const speak = (): void => {
    if (!speaking) return
    for (const x of to) sim.net.send({ kind: 'msg', from: a.addr, to: x.addr, bytes: buildHeartbeat(signer, body) })
    sim.net.clock.at(sim.now + sim.intervalMs, speak)
  }
  speak()
  return () => { speaking = false; sim.net.detach(a.addr) }
}

const alarmsOf = (x: SimMember): string => x.node.alarms.join(' | ')

test('finding 1: a set at installed + 1 that drops a member (no admin change record) is refused; nobody is dropped', t => {
  const sim = Sim.cluster(3, 31)
  const a = sim.get('A'); const b = sim.get('B'); const c = sim.get('C')
  const v = b.node.installed.version
  for (const [what, edit] of [
    ['record deleted', (d: ConfigState) => { delete d.members[c.identity.id] }],
    ['marked removed', (d: ConfigState) => { d.members[c.identity.id].state = 'removed' }]
  ] as const) {
    const forged = forgeSet(sim.clusterId, a, v + 1, d => { edit(d); d.policyText = 'A rules alone' })
    const stop = speakFor(sim, a, [b], { installed: { version: v + 1, digest: forged.digest }, pending: { version: v + 1, digest: forged.digest } }, forged.set)
    sim.run(8000)
    stop()
    t.is(b.node.installed.version, v, what)
    t.is(b.node.pending, null, what)
    t.true((b.node.rejections.PEM_ERR_BAD_SUCCESSION ?? 0) >= 1, what)
    t.false(b.node.members.get(c.identity.id)?.removed ?? true, `${what}: C is still an active member on B`)
  }
  t.is(sim.safetyViolation(), null)
})

test('finding 1: two member-list changes in one version, or an add with no admin, are refused even with a change record', t => {
  const sim = Sim.cluster(3, 32)
  const a = sim.get('A'); const b = sim.get('B'); const c = sim.get('C')
  const v = b.node.installed.version
  const x = identityNo(90); const y = identityNo(91)
  const cases: Array<[string, ReturnType<typeof forgeSet>]> = [
    ['two added', forgeSet(sim.clusterId, a, v + 1, d => { d.members[x.id] = memberRecord(x, 'x', '10.9.0.1:7400'); d.members[y.id] = memberRecord(y, 'y', '10.9.0.2:7400') })],
    ['added by no admin', forgeSet(sim.clusterId, a, v + 1, d => { d.members[x.id] = memberRecord(x, 'x', '10.9.0.1:7400') })]
  ]
  for (const [what, forged] of cases) {
    const stop = speakFor(sim, a, [b, c], { pending: { version: v + 1, digest: forged.digest } }, forged.set)
    sim.run(6000)
    stop()
    t.is(b.node.installed.version, v, what); t.is(c.node.installed.version, v, what)
    t.is(b.node.pending, null, what)
    t.is(b.node.members.get(x.id), undefined, what)
  }
  t.true((b.node.rejections.PEM_ERR_BAD_SUCCESSION ?? 0) >= 2)
})

test('finding 1 / C13: a signed fast-forward to 2^53 - 1 is refused at once; the cluster carries on', t => {
  const sim = Sim.cluster(3, 33)
  const a = sim.get('A'); const b = sim.get('B'); const c = sim.get('C')
  const v = b.node.installed.version
  const forged = forgeSet(sim.clusterId, a, Number.MAX_SAFE_INTEGER, d => { delete d.members[c.identity.id] })
  const stop = speakFor(sim, a, [b, c], { installed: { version: Number.MAX_SAFE_INTEGER, digest: forged.digest } }, forged.set)
  sim.run(6000)
  t.is(b.node.installed.version, v)
  t.is(b.node.pending, null, 'not even held')
  t.true(alarmsOf(b).includes('PEM_ERR_BAD_SUCCESSION'), alarmsOf(b))
  t.true(b.node.members.get(c.identity.id)?.removed === false, 'C is still a member on B')
  // A member that stays active and never supports blocks agreement (docs/CLUSTER.md); silent, it stops blocking.
  stop()
  b.node.propose('after the probe', d => { d.policyText = 'honest' })
  t.true(sim.until(() => sim.converged(v + 1, [b, c]), 30_000) >= 0, 'B is not wedged: its next change installs on B and C')
  t.is(c.stored.state.policyText, 'honest')
})

test('finding 1: a short jump with a fabricated change log is held but never installed while the other voter is down', t => {
  const sim = Sim.cluster(3, 34)
  const a = sim.get('A'); const b = sim.get('B')
  const v = b.node.installed.version
  sim.kill('C')
  const fabricated = [1, 2].map(i => ({ version: v + i, origin: a.identity.id, change: `made up ${i}` }))
  const forged = forgeSet(sim.clusterId, a, v + 3, d => { d.policyText = 'A rules alone' }, fabricated)
  const stop = speakFor(sim, a, [b], { installed: { version: v + 3, digest: forged.digest } }, forged.set)
  sim.run(15_000)
  stop()
  t.is(b.node.installed.version, v, 'one voter advertising it installed is not a majority of the installed voters')
  t.true(sim.allInstalls.every(i => i.version <= v))
  t.true(alarmsOf(b).includes('stalled catch-up'), alarmsOf(b))
})

test('finding 8: an origin claimed by another member does not verify, so it cannot bar that member\'s honest change', t => {
  const sim = Sim.cluster(3, 35)
  const a = sim.get('A'); const b = sim.get('B'); const c = sim.get('C')
  const v = b.node.installed.version
  // A seals a set claiming B as its origin (B's name in the header, the configuration and the log; A cannot sign as B).
  const state = forgeSet(sim.clusterId, a, v + 1, d => { d.policyText = 'framed' }).state
  state.changedBy = b.identity.id
  state.clusterLog = [...(state.clusterLog ?? []).slice(0, -1), { version: v + 1, origin: b.identity.id, change: 'framed' }]
  const framed = contentOf(state)
  const set = buildSet(sim.clusterId, a.identity, framed.plaintext, b.identity.id)
  const stop = speakFor(sim, a, [c], { pending: { version: v + 1, digest: framed.digest.toString('hex') } }, set)
  sim.run(5000)
  stop()
  sim.run(5000) // A's last heartbeat leaves the active window
  t.true((c.node.rejections.PEM_ERR_BAD_SUCCESSION ?? 0) >= 1)
  b.node.propose('honest', d => { d.policyText = 'honest' })
  t.true(sim.until(() => sim.converged(v + 1, [b, c]), 30_000) >= 0)
  t.is(c.stored.state.policyText, 'honest')
  t.false(alarmsOf(c).includes('equivocation'), alarmsOf(c))
})

test('finding 1: an admin change removing a member still works, and the removed member is not needed to agree', t => {
  const sim = Sim.cluster(3, 36)
  const c = sim.get('C')
  const v = sim.node('A').installed.version
  sim.node('A').propose('remove C', d => { d.members[c.identity.id].state = 'removed' }, SIM_ADMIN)
  t.true(sim.until(() => sim.converged(v + 1, [sim.get('A'), sim.get('B')]), 30_000) >= 0)
  const entry = sim.get('B').stored.state.clusterLog?.at(-1)
  t.like(entry, { version: v + 1, member: { op: 'remove', id: c.identity.id }, admin: SIM_ADMIN.user })
  t.regex(entry?.sig ?? '', /^[A-Za-z0-9+/]{86}==$/)
  const failed: ChangeEvent[] = []
  sim.node('B').propose('self-removal', d => { d.members[sim.get('B').identity.id].state = 'removed' }, SIM_ADMIN)
  sim.node('B').propose('no admin', d => { d.members[identityNo(92).id] = memberRecord(identityNo(92), 'z', '10.9.0.3:7400') })
  sim.run(3000)
  failed.push(...sim.get('B').events.filter(e => e.outcome === 'failed'))
  t.deepEqual(failed.map(e => e.code), ['PEM_ERR_BAD_CONFIG', 'PEM_ERR_BAD_CONFIG'])
})

/** A founder node alone (no peers) with `state` installed, for proposals that cannot be sealed. */
function lonely (state: ConfigState): { node: ClusterNode, events: ChangeEvent[] } {
  const net = new MockNetwork(1)
  const me = identityNo(0)
  const events: ChangeEvent[] = []
  const node = new ClusterNode({ clusterId: Buffer.alloc(32, 5), identity: me, addr: '10.0.0.1:7400', transport: net.transport('10.0.0.1:7400'), clock: net.clock, epoch: 1, hwm: new MemoryHwmStore(), installed: state, commit: () => {}, onChange: e => events.push(e) })
  return { node, events }
}

test('finding 8: a change past version 2^53 - 1 or past 256 members fails as a change; propose and tick do not throw', t => {
  const me = identityNo(0)
  const base = (): ConfigState => ({ ...emptyState(), version: 1, admins: simAdmins(), members: { [me.id]: memberRecord(me, 'me', '10.0.0.1:7400') } })
  const last = { ...base(), version: Number.MAX_SAFE_INTEGER }
  const a = lonely(last)
  t.notThrows(() => { a.node.propose('one more', d => { d.policyText = 'x' }); a.node.tick() })
  t.like(a.events[0], { outcome: 'failed', code: 'PEM_ERR_BAD_CONFIG' })
  t.is(a.node.installed.version, Number.MAX_SAFE_INTEGER)

  const full = base()
  for (let i = 1; i < 256; i++) full.members[identityNo(i).id] = memberRecord(identityNo(i), `m${i}`, `10.1.${i >> 8}.${i & 255}:7400`)
  const b = lonely(full)
  const extra = identityNo(256)
  t.notThrows(() => { b.node.propose('member 257', d => { d.members[extra.id] = memberRecord(extra, 'extra', '10.2.0.1:7400') }, SIM_ADMIN); b.node.tick() })
  t.like(b.events[0], { outcome: 'failed', code: 'PEM_ERR_BAD_ARGUMENT' })
})

test('a set signed as origin verifies only over the exact content: any edit after signing is refused', t => {
  const sim = Sim.cluster(3, 37)
  const a = sim.get('A'); const b = sim.get('B')
  const v = b.node.installed.version
  const forged = forgeSet(sim.clusterId, a, v + 1, d => { d.policyText = 'signed text' }).state
  forged.policyText = 'edited after signing'
  const edited = contentOf(forged)
  const stop = speakFor(sim, a, [b], { pending: { version: v + 1, digest: edited.digest.toString('hex') } }, buildSet(sim.clusterId, a.identity, edited.plaintext, a.identity.id))
  sim.run(5000)
  stop()
  t.true((b.node.rejections.PEM_ERR_BAD_SUCCESSION ?? 0) >= 1)
  t.is(b.node.pending, null)
  t.throws(() => signAsOrigin(sim.clusterId, forged, a.identity), { code: 'PEM_ERR_BAD_ARGUMENT' }, 'an entry is signed once')
})

test('a member-list change that loses its version to a concurrent one lands re-based, still as an admin change', t => {
  const x = identityNo(93)
  // Both proposals race for v + 1 and the smaller digest wins: pick a schedule where the add loses, so it is re-based.
  let sim: Sim | undefined
  let v = 0
  for (let seed = 38; seed < 70 && sim === undefined; seed++) {
    const s = Sim.cluster(3, seed)
    v = s.node('A').installed.version
    s.node('A').propose('add x', d => { d.members[x.id] = memberRecord(x, 'x', '10.9.0.4:7400') }, SIM_ADMIN)
    s.node('C').propose('policy', d => { d.policyText = 'concurrent' })
    if ((s.node('A').pending?.digest ?? '') > (s.node('C').pending?.digest ?? '')) sim = s
  }
  if (sim === undefined) { t.fail('no schedule where the add loses'); return }
  const found = sim
  t.true(found.until(() => found.converged(v + 2)) >= 0)
  const events = found.get('A').events.filter(e => e.changeId === 'add x')
  t.deepEqual(events.map(e => e.outcome), ['rebased', 'installed'], JSON.stringify(events))
  t.false(found.node('B').members.get(x.id)?.removed ?? true, 'x is a member everywhere')
  t.is(found.get('B').stored.state.policyText, 'concurrent')
})

/** A set of `as` at `version` whose own log entry carries `fields` (a member-list change record as `as` writes it). */
function forgeRecord (sim: Sim, as: SimMember, version: number, edit: (d: ConfigState) => void, fields: Partial<NonNullable<ConfigState['clusterLog']>[number]>): { set: Buffer, digest: string } {
  const state = unpack(as.node.installed.plaintext) as ConfigState
  edit(state)
  state.version = version
  state.changedBy = as.identity.id
  state.clusterLog = [...(state.clusterLog ?? []), { version, origin: as.identity.id, change: 'forged', ...fields }]
  signAsOrigin(sim.clusterId, state, as.identity)
  const { plaintext, digest } = contentOf(state)
  return { set: buildSet(sim.clusterId, as.identity, plaintext, as.identity.id), digest: digest.toString('hex') }
}

test('issue 15: a member-list change needs the admin\'s own signature; a compromised member naming the admin, signing with its own key, replaying a logged signature or swapping the admin\'s key adds nobody', t => {
  const sim = Sim.cluster(3, 40)
  const a = sim.get('A'); const b = sim.get('B')
  const x = identityNo(94)
  const rogue = identityNo(95)
  // A genuine admin change first: its record (signed by the admin's key) is then in every member's log.
  const v = b.node.installed.version + 1
  sim.node('A').propose('add x', d => { d.members[x.id] = memberRecord(x, 'x', '10.9.0.5:7400') }, SIM_ADMIN)
  t.true(sim.until(() => sim.converged(v)) >= 0)
  const logged = b.stored.state.clusterLog?.at(-1)
  t.like(logged, { member: { op: 'add', id: x.id }, admin: SIM_ADMIN.user })
  const addRogue = (d: ConfigState): void => { d.members[rogue.id] = memberRecord(rogue, 'rogue', '10.9.0.6:7400') }
  const signedByA = sign(SIG_CTX_ADMIN_MEMBER_CHANGE, adminRecordInput(sim.clusterId, v + 1, 'add', rogue.id, a.identity.id), a.identity.signKey).toString('base64')
  const cases: Array<[string, (d: ConfigState) => void, Partial<NonNullable<ConfigState['clusterLog']>[number]>]> = [
    ['the admin named, no signature', addRogue, { member: { op: 'add', id: rogue.id }, admin: SIM_ADMIN.user }],
    ['signed with A\'s own key', addRogue, { member: { op: 'add', id: rogue.id }, admin: SIM_ADMIN.user, adminSig: signedByA }],
    ['the logged signature of another change', addRogue, { member: { op: 'add', id: rogue.id }, admin: SIM_ADMIN.user, adminSig: logged?.adminSig }],
    ['the admin\'s key swapped for A\'s in the same set', d => { addRogue(d); d.admins[SIM_ADMIN.user].signKey = encodeAdminKey(SCRYPT_DEFAULT, Buffer.alloc(16), a.identity.publicKey) },
      { member: { op: 'add', id: rogue.id }, admin: SIM_ADMIN.user, adminSig: signedByA }]
  ]
  for (const [what, edit, fields] of cases) {
    const refusedBefore = b.node.rejections.PEM_ERR_BAD_SUCCESSION ?? 0
    const forged = forgeRecord(sim, a, v + 1, edit, fields)
    const stop = speakFor(sim, a, [b], { installed: { version: v + 1, digest: forged.digest }, pending: { version: v + 1, digest: forged.digest } }, forged.set)
    sim.run(6000)
    stop()
    t.true((b.node.rejections.PEM_ERR_BAD_SUCCESSION ?? 0) > refusedBefore, `${what}: refused`)
    t.is(b.node.installed.version, v, what)
    t.is(b.node.members.get(rogue.id), undefined, `${what}: the rogue key is no member on B`)
  }
  t.is(sim.safetyViolation(), null)
})

test('issue 15: an admin whose record has no signing key cannot change the member list; a session without one is refused as a change', t => {
  const me = identityNo(0)
  const extra = identityNo(96)
  const { node, events } = lonely({ ...emptyState(), version: 1, admins: { [SIM_ADMIN.user]: { hash: 'unused' } }, members: { [me.id]: memberRecord(me, 'me', '10.0.0.1:7400') } })
  node.propose('add without key', d => { d.members[extra.id] = memberRecord(extra, 'extra', '10.2.0.1:7400') }, SIM_ADMIN)
  node.propose('add without session', d => { d.members[extra.id] = memberRecord(extra, 'extra', '10.2.0.1:7400') })
  t.deepEqual(events.map(e => [e.outcome, e.code]), [['failed', 'PEM_ERR_BAD_CONFIG'], ['failed', 'PEM_ERR_BAD_CONFIG']])
  t.is(node.members.get(extra.id), undefined)
})

test('issue 15: a change whose admin session expired while it waited behind another is not made (PEM_ERR_AUTH)', t => {
  const sim = Sim.cluster(3, 41)
  const a = sim.get('A')
  const v = a.node.installed.version
  const seen = a.events.length
  const x = identityNo(97)
  sim.kill('B'); sim.kill('C') // nothing installs: the first change stays pending, the second waits behind it
  a.node.propose('first', d => { d.policyText = 'first' })
  a.node.propose('add x, session ends in 2 s', d => { d.members[x.id] = memberRecord(x, 'x', '10.9.0.7:7400') }, { ...SIM_ADMIN, expires: sim.now + 2000 })
  a.node.propose('policy, session ends in 2 s', d => { d.policyText = 'late' }, { ...SIM_ADMIN, expires: sim.now + 2000 })
  sim.run(3000)
  sim.restart('B'); sim.restart('C')
  t.true(sim.until(() => sim.converged(v + 1)) >= 0)
  sim.run(3000)
  t.deepEqual(a.events.slice(seen).map(e => [e.changeId, e.outcome, e.code]), [
    ['first', 'installed', undefined],
    ['add x, session ends in 2 s', 'failed', 'PEM_ERR_AUTH'],
    ['policy, session ends in 2 s', 'failed', 'PEM_ERR_AUTH']
  ])
  t.is(a.node.installed.version, v + 1)
  t.is(a.node.members.get(x.id), undefined)
})

test('issue 15: the admin list changes only by a key-less record gaining its key, named in the log; a later member change may use that key', t => {
  const me = identityNo(0)
  const clusterId = Buffer.alloc(32, 7)
  const pairOf = (n: number): ReturnType<typeof adminKeyPairFromSeed> => adminKeyPairFromSeed(Buffer.alloc(32, n))
  const keyOf = (n: number): string => encodeAdminKey(SCRYPT_DEFAULT, Buffer.alloc(16, n), pairOf(n).publicKey)
  const installed: ConfigState = { ...emptyState(), version: 1, clusterId: clusterId.toString('hex'), admins: { root: { hash: 'h1' }, other: { hash: 'h2', signKey: keyOf(1) } }, members: { [me.id]: memberRecord(me, 'me', '10.0.0.1:7400') } }
  const members = MemberTable.of(installed)
  const on = (base: ConfigState) => (change: Omit<Change, 'changeId'>): ConfigState => draftChange({ plaintext: pack(base), version: base.version, state: base }, MemberTable.of(base), me, clusterId, { changeId: 'c', ...change }, 0).state
  const upgraded = on(installed)({ mutate: d => { d.admins.root = { ...d.admins.root, signKey: keyOf(2) } } })
  t.is(upgraded.clusterLog?.at(-1)?.adminUpgrade, 'root')
  t.is(checkSuccession(installed, members, upgraded, clusterId), 'verified')
  // The proposer refuses every other edit of the admin list.
  const edits: Array<[string, (d: ConfigState) => void]> = [
    ['a key replaced', d => { d.admins.other = { ...d.admins.other, signKey: keyOf(3) } }],
    ['a hash changed with the upgrade', d => { d.admins.root = { hash: 'h9', signKey: keyOf(2) } }],
    ['a user added', d => { d.admins.mallory = { hash: 'h3', signKey: keyOf(3) } }],
    ['a malformed key', d => { d.admins.root = { ...d.admins.root, signKey: 'ed25519-scrypt$1' } }]
  ]
  for (const [what, mutate] of edits) t.throws(() => on(installed)({ mutate }), { code: 'PEM_ERR_BAD_SUCCESSION' }, what)
  // A receiver refuses an upgrade whose log entry does not name it (a compromised origin leaving it out).
  const unnamed = unpack(pack(upgraded)) as ConfigState
  const last = unnamed.clusterLog?.at(-1)
  if (last !== undefined) { delete last.adminUpgrade; delete last.sig }
  signAsOrigin(clusterId, unnamed, me)
  t.throws(() => checkSuccession(installed, members, unnamed, clusterId), { code: 'PEM_ERR_BAD_SUCCESSION' })
  // A member caught up across the upgrade and a member addition signed with the new key takes both.
  const x = identityNo(97)
  const added = on(upgraded)({ mutate: d => { d.members[x.id] = memberRecord(x, 'x', '10.0.0.9:7400') }, admin: { user: 'root', expires: Infinity, sign: m => sign(SIG_CTX_ADMIN_MEMBER_CHANGE, m, pairOf(2).signKey) } })
  t.is(checkSuccession(installed, members, added, clusterId), 'verified')
  // Before the upgrade the same key authorises nothing.
  t.throws(() => on(installed)({ mutate: d => { d.members[x.id] = memberRecord(x, 'x', '10.0.0.9:7400') }, admin: { user: 'root', expires: Infinity, sign: m => sign(SIG_CTX_ADMIN_MEMBER_CHANGE, m, pairOf(2).signKey) } }), { code: 'PEM_ERR_BAD_CONFIG' })
})

test('issue 15: a password change is taken only signed with the record\'s previous key; a member caught up across two takes both and the newest key', t => {
  const me = identityNo(0)
  const clusterId = Buffer.alloc(32, 7)
  const pairOf = (n: number): ReturnType<typeof adminKeyPairFromSeed> => adminKeyPairFromSeed(Buffer.alloc(32, n))
  const keyOf = (n: number): string => encodeAdminKey(SCRYPT_DEFAULT, Buffer.alloc(16, n), pairOf(n).publicKey)
  const hashOf = (n: number): string => `scrypt$${SCRYPT_DEFAULT.N}$${SCRYPT_DEFAULT.r}$${SCRYPT_DEFAULT.p}$${Buffer.alloc(16, n).toString('base64url')}$${Buffer.alloc(32, n).toString('base64url')}`
  const installed: ConfigState = { ...emptyState(), version: 1, clusterId: clusterId.toString('hex'), admins: { root: { hash: hashOf(1), signKey: keyOf(1) } }, members: { [me.id]: memberRecord(me, 'me', '10.0.0.1:7400') } }
  const members = MemberTable.of(installed)
  const on = (base: ConfigState) => (change: Omit<Change, 'changeId'>): ConfigState => draftChange({ plaintext: pack(base), version: base.version, state: base }, MemberTable.of(base), me, clusterId, { changeId: 'c', ...change }, 0).state
  const by = (n: number, ctx = SIG_CTX_ADMIN_PASSWD): Change['admin'] => ({ user: 'root', expires: Infinity, sign: m => sign(ctx, m, pairOf(n).signKey) })
  const passwd = (n: number) => (d: ConfigState): void => { d.admins.root = { hash: hashOf(n), signKey: keyOf(n) } }
  const second = on(installed)({ mutate: passwd(2), admin: by(1) })
  t.is(second.clusterLog?.at(-1)?.adminPasswd?.user, 'root')
  t.is(checkSuccession(installed, members, second, clusterId), 'verified')
  t.throws(() => on(installed)({ mutate: passwd(2) }), { code: 'PEM_ERR_BAD_CONFIG' }, 'no admin session')
  t.throws(() => on(installed)({ mutate: passwd(2), admin: { user: 'root', expires: Infinity, sign: null } }), { code: 'PEM_ERR_AUTH' }, 'no signature')
  // The proposer and every receiver refuse the change signed by any key but the previous one (the new key, here).
  t.throws(() => on(installed)({ mutate: passwd(2), admin: by(2) }), { code: 'PEM_ERR_BAD_CONFIG' })
  const forged = unpack(pack(second)) as ConfigState
  const entry = forged.clusterLog?.at(-1)
  if (entry?.adminPasswd !== undefined) {
    entry.adminPasswd.sig = sign(SIG_CTX_ADMIN_PASSWD, adminPasswdInput(clusterId, 2, 'root', entry.adminPasswd, me.id), pairOf(2).signKey).toString('base64')
    delete entry.sig
  }
  signAsOrigin(clusterId, forged, me)
  t.throws(() => checkSuccession(installed, members, forged, clusterId), { code: 'PEM_ERR_BAD_SUCCESSION' })
  // And one whose log entry sets another record than the configuration holds.
  const mismatched = unpack(pack(second)) as ConfigState
  const last = mismatched.clusterLog?.at(-1)
  if (last?.adminPasswd !== undefined) { last.adminPasswd.hash = hashOf(5); delete last.sig }
  signAsOrigin(clusterId, mismatched, me)
  t.throws(() => checkSuccession(installed, members, mismatched, clusterId), { code: 'PEM_ERR_BAD_SUCCESSION' })
  // Two changes and a member addition signed with the newest key, checked at once from the installed version.
  const third = on(second)({ mutate: passwd(3), admin: by(2) })
  const x = identityNo(96)
  const added = on(third)({ mutate: d => { d.members[x.id] = memberRecord(x, 'x', '10.0.0.9:7400') }, admin: by(3, SIG_CTX_ADMIN_MEMBER_CHANGE) })
  t.is(checkSuccession(installed, members, added, clusterId), 'verified')
  t.throws(() => on(third)({ mutate: d => { d.members[x.id] = memberRecord(x, 'x', '10.0.0.9:7400') }, admin: by(1, SIG_CTX_ADMIN_MEMBER_CHANGE) }), { code: 'PEM_ERR_BAD_CONFIG' }, 'the old key authorises nothing after the change')
})
