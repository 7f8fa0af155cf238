// The install rule with real spd members in network namespaces (docs/CLUSTER.md, "The install rule and its failure
// cases"): an active but slow member holds the install back until it holds the version; one silent past the active
// window does not, and back (resumed, or restarted after a crash) it answers decisions only once it has installed
// what the others installed; a member cut off while admins change both sides serves nothing at its old version after
// healing. Decisions are asked from the root namespace by a host enrolled over the lab's bridge, one member at a time.
import test, { type ExecutionContext } from 'ava'
import fs from 'node:fs'
import path from 'node:path'
import { admin, allInstalled, clusterStatus, installedVersion, until } from '../../scripts/cluster'
import { cli, tempDir } from '../../scripts/procs'
import { hostIdentity, readCluster } from '../../lib/pem-fs/host-config'
import { createLab, destroyAllLabs, dropped, heal, split, type Lab } from '../helpers/netns'
import { clusterIn, settle, startIn, stopAllIn, type NsMember } from '../helpers/netns-cluster'
import { createKey, decideAt, pollDecisions, type LeaveCluster } from '../helpers/leave-cluster'

/** 200 ms heartbeats, a 2 s active window (so a pause of 1 s stays inside it), decisions fenced after 3 s alone. */
const EXTRA = { load: { threshold: 1 }, cluster: { intervalMs: 200, activeWindowMs: 2000, maxStalenessMs: 3000, changeTimeoutMs: 8000 } }
const WINDOW_MS = EXTRA.cluster.activeWindowMs
const STALE_MS = EXTRA.cluster.maxStalenessMs

let lab: Lab
let ms: NsMember[] = []
let c: LeaveCluster
const paused = new Set<NsMember>()

const sleep = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms))
const keysOf = async (m: NsMember): Promise<string[]> => (await admin(m, 'GET', '/v1/keys') as Array<{ name: string }>).map(k => k.name)

/** SIGSTOP / SIGCONT of a member's process (the PID of `ip netns exec` is the member's: it execs). */
function pause (m: NsMember): void { m.proc?.kill('SIGSTOP'); paused.add(m) }
function resume (m: NsMember): void { m.proc?.kill('SIGCONT'); paused.delete(m) }

async function seen (observer: NsMember, name: string): Promise<string> {
  return (await clusterStatus(observer)).members.find(x => x.name === name)?.state ?? 'unlisted'
}

/** Every answered decision of `m` during `during` carried at least `min`, and `m` decides again afterwards. */
async function servesOnlyFrom (t: ExecutionContext, m: NsMember, min: number, during: () => Promise<void>): Promise<void> {
  const poll = pollDecisions(c, m)
  try {
    await during()
    t.true(await until(async () => (await decideAt(c, m)).ok, 15000), `${m.name} decides again`)
    await until(async () => poll.answered() > 0, 5000) // the poll's own answers, so the check below is not vacuous
  } finally {
    const served = await poll.stop()
    t.true(served.length > 0, `${m.name} answered some decision`)
    t.deepEqual(served.filter(pv => pv < min), [], `${m.name} answered only at version ${min} or later (${served.length} answers)`)
  }
}

test.before(async t => {
  t.timeout(180000)
  lab = await createLab(3)
  ms = await clusterIn(lab.nodes, EXTRA)
  const work = tempDir('install-rule-host')
  const file = path.join(work, 'policy.yaml')
  fs.writeFileSync(file, 'format: 1\nguards:\n  /srv/data:\n    rules:\n      - id: open\n        resources: { dirs: [/public] }\n        effect: permit\n')
  const p = await ms[0].spctl(['policy', 'apply', '--yes', file])
  if (p.code !== 0) throw new Error(p.stderr)
  await settle(ms)
  const token = (JSON.parse((await ms[0].spctl(['--json', 'host', 'add', 'h'])).stdout) as { token: string }).token
  const e = await cli('pemfs', ['enroll', '--cluster', ms[0].listen, '--token', token, '--config-dir', work, '--name', 'h'])
  if (e.code !== 0) throw new Error(e.stderr)
  c = { ms, host: hostIdentity(work), servers: readCluster(work).servers }
  if (c.servers.length !== 3) throw new Error(`the host lists ${c.servers.length} servers`)
})

test.after.always(async () => {
  try {
    for (const m of paused) resume(m)
    await stopAllIn()
  } finally {
    const errors = await destroyAllLabs()
    if (errors.length > 0) throw new Error(`lab teardown: ${errors.join('; ')}`)
  }
})

test.serial('one slow member (paused inside the active window): the others install only once it holds the version, then all three', async t => {
  t.timeout(60000)
  const [m1, , m3] = ms
  const base = await settle(ms)
  t.teardown(() => { if (paused.has(m3)) resume(m3) })
  pause(m3)
  const pausedAt = Date.now()
  const change = createKey(m1, 'slow-member') // the admin API directly: proposed at once, well inside the window
  t.true(await until(async () => (await clusterStatus(m1)).pending !== null, 5000), 'm1 proposes the change')
  await sleep(300) // m2 fetches and advertises it: a majority holds it
  const view = await clusterStatus(m1)
  t.is(view.members.find(x => x.name === 'm3')?.state, 'active', `m3 is still inside the active window (${Date.now() - pausedAt} ms after the pause)`)
  t.is(view.installed.version, base, 'm1 has not installed while m3, active, does not hold the version')
  t.deepEqual(view.pending === null ? null : { version: view.pending.version, locked: view.pending.locked }, { version: base + 1, locked: false }, 'nor locked it')
  const resumedAt = Date.now()
  resume(m3)
  const r = await change
  const answeredAt = Date.now()
  t.deepEqual(r, { pv: base + 1 })
  t.true(answeredAt >= resumedAt, 'the change was installed on m1 only after m3 had resumed')
  await allInstalled(ms, base + 1)
  t.log(`paused ${resumedAt - pausedAt} ms; installed on m1 ${answeredAt - resumedAt} ms after m3 resumed`)
})

test.serial('a member silent past the active window: the others install without it; resumed, it answers decisions only once caught up', async t => {
  t.timeout(60000)
  const [m1, m2, m3] = ms
  const base = await settle(ms)
  t.teardown(() => { if (paused.has(m3)) resume(m3) })
  pause(m3)
  t.true(await until(async () => await seen(m1, 'm3') === 'down', WINDOW_MS + 5000), 'm1 marks m3 down after the window')
  t.deepEqual(await createKey(m1, 'silent-member'), { pv: base + 1 })
  await allInstalled([m1, m2], base + 1)
  await servesOnlyFrom(t, m3, base + 1, async () => {
    await sleep(STALE_MS) // what m3 heard before its pause is older than maxStalenessMs when it resumes
    resume(m3)
    await allInstalled(ms, base + 1)
  })
})

test.serial('a member cut off while admins change both sides: only the majority installs; after healing the cut-off one answers nothing at its old version', async t => {
  t.timeout(90000)
  const [m1, m2, m3] = ms
  const base = await settle(ms)
  t.teardown(async () => { await heal(lab) })
  await split([m3.node], [m1.node, m2.node])
  const [majority, minority] = await Promise.all([createKey(m1, 'cut-majority'), createKey(m3, 'cut-minority')])
  t.deepEqual(majority, { pv: base + 1 })
  t.deepEqual(minority, { code: 'PEM_ERR_CHANGE_PENDING' }, 'the cut-off member\'s change waits')
  await allInstalled([m1, m2], base + 1)
  t.is(await installedVersion(m3), base)
  t.true(await until(async () => !(await clusterStatus(m3)).canServe, STALE_MS + 5000), 'm3 stops serving once cut off for maxStalenessMs')
  const drops = await dropped(lab)
  t.true(drops.m3 > 0 && drops.m1 + drops.m2 > 0, `the cut dropped packets both ways: ${JSON.stringify(drops)}`)
  await servesOnlyFrom(t, m3, base + 1, async () => {
    await heal(lab)
    await allInstalled(ms, base + 2, 45000) // the majority's version, then m3's own change re-based on it
  })
  for (const m of ms) {
    t.deepEqual((await keysOf(m)).filter(k => k.startsWith('cut-')).sort(), ['cut-majority', 'cut-minority'], m.name)
  }
})

test.serial('a member killed and restarted after the others moved on: it answers decisions only once it has installed their version', async t => {
  t.timeout(90000)
  const [m1, m2, m3] = ms
  const base = await settle(ms)
  const exited = new Promise(resolve => m3.proc?.once('exit', resolve))
  m3.proc?.kill('SIGKILL')
  await exited
  t.deepEqual(await createKey(m1, 'while-m3-dead'), { pv: base + 1 })
  await allInstalled([m1, m2], base + 1)
  await servesOnlyFrom(t, m3, base + 1, async () => {
    await startIn(m3, m3.node)
    await allInstalled(ms, base + 1)
  })
  await settle(ms)
})
