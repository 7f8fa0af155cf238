// Clean stops and crashes with 5 real spd members on loopback: one stops cleanly (4 decide and install), a second one
// too (the remaining 3 decide and install), both come back and serve only once caught up; then two are SIGKILLed (the
// remaining 3 are a majority of 5: they decide and install changes), and both come back and serve only once caught
// up. Helpers: test/helpers/leave-cluster.ts.
import test from 'ava'
import { allInstalled, clusterStatus, installedVersion, until } from '../../scripts/cluster'
import { startSpd, stopAll, stopSpd } from '../../scripts/procs'
import { cleanStop, comeBack, createKey, decideAt, leaveCluster, LEAVE_FAST, pollDecisions, type LeaveCluster } from '../helpers/leave-cluster'

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

test.serial('5 members: two SIGKILLed, the remaining 3 (a majority) decide and install two changes; both come back and serve only once caught up', async t => {
  t.timeout(60000)
  const [a, b, c, d, e] = five.ms
  await Promise.all([stopSpd(d, 'SIGKILL'), stopSpd(e, 'SIGKILL')])
  await new Promise(resolve => setTimeout(resolve, LEAVE_FAST.cluster.maxStalenessMs + 300)) // past the staleness window
  for (const m of [a, b, c]) {
    t.true((await clusterStatus(m)).canServe, `${m.name} serves with 3 of 5`)
    t.deepEqual(await decideAt(five, m), { ok: true, pv: (await installedVersion(m)) ?? -1 }, `${m.name} decides`)
  }
  let v = -1
  for (const name of ['while-crashed-1', 'while-crashed-2']) {
    const key = await createKey(a, name)
    if (!('pv' in key)) { t.fail(`key create on ${a.name}: ${key.code}`); return }
    await allInstalled([a, b, c], key.pv)
    v = key.pv
  }
  const polls = [d, e].map(m => pollDecisions(five, m))
  await Promise.all([startSpd(d), startSpd(e)])
  await allInstalled(five.ms, v)
  t.true(await until(async () => (await Promise.all([d, e].map(async m => (await decideAt(five, m)).ok))).every(Boolean), 10000), 'the returned members decide')
  for (const [i, p] of polls.entries()) {
    const served = await p.stop()
    t.true(served.length > 0 && served.every(pv => pv >= v), `${[d, e][i].name} answered only at version ${v} or later: ${served.join(',')}`)
  }
})
