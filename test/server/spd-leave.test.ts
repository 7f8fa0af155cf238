// Clean stops and crashes with real spd processes on loopback, 2 and 3 members (5: spd-leave-five.test.ts): a member
// stopped with SIGTERM is left out of the majority count, so the rest keep deciding and install an admin change; it
// comes back serving nothing until it has caught up. A SIGKILLed member of two still counts: decisions for
// maxStalenessMs, then refused, and the change waits (PEM_ERR_CHANGE_PENDING) until it is back.
import test from 'ava'
import { clusterStatus, until } from '../../scripts/cluster'
import { startSpd, stopAll, stopSpd } from '../../scripts/procs'
import { cleanStop, comeBack, createKey, decideAt, leaveCluster, type LeaveCluster } from '../helpers/leave-cluster'

let two: LeaveCluster
let three: LeaveCluster

test.before(async () => { [two, three] = await Promise.all([leaveCluster(2, 'lv2-'), leaveCluster(3, 'lv3-')]) })
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
