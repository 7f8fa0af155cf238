// Clean stops with 5 real spd members on loopback: one stops cleanly (4 decide and install), a second one too (the
// remaining 3 decide and install), both come back and serve only once caught up. Helpers: test/helpers/leave-cluster.ts.
import test from 'ava'
import { stopAll } from '../../scripts/procs'
import { cleanStop, comeBack, leaveCluster, type LeaveCluster } from '../helpers/leave-cluster'

let five: LeaveCluster

test.before(async t => {
  t.timeout(180000) // five sponsored joins one after another
  five = await leaveCluster(5, 'lv5-')
})
test.after.always(() => { stopAll() })

test.serial('5 members: two stop cleanly one after the other, the remaining 3 decide and install; both come back caught up', async t => {
  t.timeout(90000)
  const [a, b, c, d, e] = five.ms
  await cleanStop(t, five, e, [a, b, c, d])
  const v = await cleanStop(t, five, d, [a, b, c])
  await comeBack(t, five, [d, e], v)
})
