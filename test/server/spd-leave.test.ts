// Clean stops and crashes with real spd processes on loopback, 2 and 3 members (5: spd-leave-five.test.ts): a member
// stopped with SIGTERM is left out of the majority count, so the rest keep deciding and install an admin change; it
// comes back serving nothing until it has caught up. A SIGKILLed member of two still counts: decisions for
// maxStalenessMs, then refused, and the change waits (PEM_ERR_CHANGE_PENDING) until it is back; so does one whose
// Leave arrives without a departure, and a replayed or forged Leave (spoken with the member's real key) is refused.
import test from 'ava'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { loadIdentity } from '../../lib/crypto/identity'
import { ChannelTransport } from '../../lib/server/cluster/channel-transport'
import { ClusterNode } from '../../lib/server/cluster/node'
import { MemoryHwmStore } from '../../lib/server/cluster/sequence'
import { ClusterStateFile } from '../../lib/server/cluster/state-file'
import { IDENTITY_FILE } from '../../lib/server/member'
import { ConfigStore, storeKeyFrom } from '../../lib/server/store'
import { clusterStatus, until, type Member } from '../../scripts/cluster'
import { startSpd, stopAll, stopSpd } from '../../scripts/procs'
import { cleanStop, comeBack, createKey, decideAt, leaveCluster, type LeaveCluster } from '../helpers/leave-cluster'

let two: LeaveCluster
let three: LeaveCluster

test.before(async t => {
  t.timeout(180000) // two clusters grown by sponsorship side by side
  ;[two, three] = await Promise.all([leaveCluster(2, 'lv2-'), leaveCluster(3, 'lv3-')])
})
test.after.always(() => { stopAll() })

test.serial('2 members: one stops cleanly, the other keeps deciding and installs a change; back, it catches up first', async t => {
  const [a, b] = two.ms
  const v = await cleanStop(t, two, b, [a])
  await comeBack(t, two, [b], v)
})

test.serial('3 members: one stops cleanly, the other two keep deciding and install a change; back, it catches up first', async t => {
  const [a, b, c] = three.ms
  const v = await cleanStop(t, three, a, [b, c])
  await comeBack(t, three, [a], v)
})

test.serial('2 members: a SIGKILLed one still counts: decisions for maxStalenessMs then refused, the change waits for its return', async t => {
  const [a, b] = two.ms
  await stopSpd(b, 'SIGKILL')
  t.true((await decideAt(two, a)).ok, 'inside the staleness window')
  t.deepEqual(await createKey(a, 'while-crashed'), { code: 'PEM_ERR_CHANGE_PENDING' })
  t.true(await until(async () => !(await decideAt(two, a)).ok, 5000), 'refused once cut off for maxStalenessMs')
  t.false((await clusterStatus(a)).canServe)
  await startSpd(b)
  t.true(await until(async () => (await clusterStatus(a)).queued.length === 0 && (await clusterStatus(b)).installed.version === (await clusterStatus(a)).installed.version, 10000), 'the queued change installed on both')
  t.true((await decideAt(two, a)).ok)
})

/**
 * Speak for the SIGKILLed member `b` with its real key over the real TLS transport: send one Leave heartbeat built by
 * an engine holding b's stored configuration at boot `epoch`, its bytes passed through `tamper`.
 */
async function leaveAs (b: Member, a: Member, epoch: number, tamper: (bytes: Buffer) => Buffer = x => x): Promise<void> {
  const identity = loadIdentity(path.join(b.dir, IDENTITY_FILE))
  const store = ConfigStore.open(b.dir, storeKeyFrom(identity.signKey))
  const state = store.state
  const aAddr = state.members[a.id].clusterAddr ?? a.cluster
  const transport = new ChannelTransport({ identity, listen: state.members[identity.id].clusterAddr ?? b.cluster, admits: id => id === a.id, idOf: addr => addr === aAddr ? a.id : undefined, receive: () => {}, onRefused: () => {}, retryMs: 200 })
  await transport.start()
  const node = new ClusterNode({
    clusterId: Buffer.from(state.clusterId ?? '', 'hex'),
    identity,
    addr: state.members[identity.id].clusterAddr ?? b.cluster,
    transport: { send: p => transport.send({ ...p, bytes: tamper(p.bytes) }) },
    clock: { now: () => performance.now() },
    epoch,
    hwm: new MemoryHwmStore(),
    installed: state,
    installedPlaintext: store.plaintext,
    commit: () => {}
  })
  node.leave()
  await new Promise(resolve => setTimeout(resolve, 500))
  await transport.close()
}

test.serial('2 members: a replayed or forged Leave is refused, and even a genuine Leave without a departure changes no count', async t => {
  const [a, b] = two.ms
  await stopSpd(b, 'SIGKILL')
  const refused = async (code: string): Promise<number> => (await clusterStatus(a)).rejections[code] ?? 0
  const replays = await refused('PEM_ERR_REPLAY')
  await leaveAs(b, a, 1) // an old boot epoch: what a captured Leave of an earlier run looks like
  t.true(await until(async () => await refused('PEM_ERR_REPLAY') > replays, 3000), 'the replay is refused')
  const freshEpoch = (): number => ClusterStateFile.open(b.dir).epoch // raised durably: b's next real start is fresher still
  const forged = await refused('PEM_ERR_BAD_SIGNATURE')
  await leaveAs(b, a, freshEpoch(), bytes => { const x = Buffer.from(bytes); x[x.length - 1] ^= 1; return x })
  t.true(await until(async () => await refused('PEM_ERR_BAD_SIGNATURE') > forged, 3000), 'a Leave with a broken signature is refused')
  t.not((await clusterStatus(a)).members.find(m => m.name === b.name)?.state, 'left')
  await leaveAs(b, a, freshEpoch())
  t.true(await until(async () => (await clusterStatus(a)).members.find(m => m.name === b.name)?.state === 'left', 3000), 'a genuine Leave is taken')
  t.true(await until(async () => !(await decideAt(two, a)).ok, 5000), 'but b still counts: cut off after maxStalenessMs')
  t.deepEqual(await createKey(a, 'after-a-bare-leave'), { code: 'PEM_ERR_CHANGE_PENDING' })
  await startSpd(b)
  t.true(await until(async () => (await clusterStatus(a)).queued.length === 0 && (await decideAt(two, a)).ok, 10000))
})
