// Overload: above the threshold a member refuses a share of the requests growing with the excess (refuseShare), all of
// them well over it, with reason overload (reject mode) or after holding them (queue mode).
import test from 'ava'
import path from 'node:path'
import { attrsOf } from '../../lib/pem-fs/attrs'
import { ClusterClient } from '../../lib/pem-fs/client'
import { hostIdentity, readCluster } from '../../lib/pem-fs/host-config'
import { refuseShare, SHED_SPAN } from '../../lib/server/load'
import { cli, initSpd, loginSpctl, startSpd, stopAll, stopSpd, tempDir, writeFile, type Spd } from '../../scripts/procs'

const POLICY = 'format: 1\nguards:\n  /g:\n    rules:\n      - id: all\n        effect: permit\n'
const members: Spd[] = []
test.after.always(async () => { for (const m of members) await stopSpd(m); stopAll() })

async function enrolledClient (load: Record<string, unknown>): Promise<ClusterClient> {
  const s = await initSpd('spd-load', { load })
  members.push(s)
  await startSpd(s)
  const spctl = await loginSpctl(s)
  const work = tempDir('overload')
  await spctl(['policy', 'apply', writeFile(work, 'p.yaml', POLICY)])
  const token = JSON.parse((await spctl(['--json', 'host', 'add', 'h'])).stdout).token as string
  const dir = path.join(work, 'host')
  const r = await cli('pemfs', ['enroll', '--cluster', s.listen, '--token', token, '--config-dir', dir])
  if (r.code !== 0) throw new Error(r.stderr)
  return new ClusterClient(hostIdentity(dir), readCluster(dir).servers, { timeoutMs: 3000 })
}

test('the share refused: none up to the threshold, growing linearly with the excess, all from threshold + SHED_SPAN', t => {
  t.is(refuseShare(0.5, 0.95), 0)
  t.is(refuseShare(0.95, 0.95), 0)
  t.true(Math.abs(refuseShare(0.95 + SHED_SPAN / 4, 0.95) - 0.25) < 1e-9)
  t.true(Math.abs(refuseShare(0.95 + SHED_SPAN / 2, 0.95) - 0.5) < 1e-9)
  t.is(refuseShare(0.95 + SHED_SPAN, 0.95), 1)
  t.is(refuseShare(3, 0.95), 1)
  t.is(refuseShare(1.2, 0.95, 0), 1, 'no span: all refused above the threshold (the rule before)')
  t.is(refuseShare(5, 1), 0, 'the reported load is capped at 1: a threshold of 1 admits all')
})

// bias 0.8 over a threshold of 0.4: the excess (0.4 and more, whatever the machine's own load) is beyond SHED_SPAN.
test('reject mode: a request well above the threshold gets PEM_ERR_OVERLOAD', async t => {
  t.true(0.8 - 0.4 >= SHED_SPAN)
  const c = await enrolledClient({ bias: 0.8, threshold: 0.4, overload: 'reject' })
  t.teardown(() => c.close())
  const err = await t.throwsAsync(c.decide({ guard: '/g', path: '/x', action: 'read', attrs: attrsOf(process.pid, 0, 0) }))
  t.is((err as { code?: string }).code, 'PEM_ERR_OVERLOAD')
  t.is(c.servers[0].rejections, 1)
  t.is(c.servers[0].state, 'down', 'skipped for a while ...')
  t.true(c.servers[0].downUntil - Date.now() <= 500, '... for overloadBackoffMs, not retryDownMs')
  t.not(c.servers[0].channel, null, 'an overloaded server is alive: its channel is kept')
})

test('queue mode: the request waits its queue time, then is rejected if the load stays high', async t => {
  const c = await enrolledClient({ bias: 0.8, threshold: 0.4, overload: 'queue', queueMs: 300 })
  t.teardown(() => c.close())
  const t0 = Date.now()
  const err = await t.throwsAsync(c.decide({ guard: '/g', path: '/x', action: 'read', attrs: attrsOf(process.pid, 0, 0) }))
  t.is((err as { code?: string }).code, 'PEM_ERR_OVERLOAD')
  t.true(Date.now() - t0 >= 250, 'it was held in the queue first')
})

test('the bias is part of the reported load; under the threshold the member permits', async t => {
  const c = await enrolledClient({ bias: 0.1, threshold: 1 }) // 1: the test machine's own CPU load never counts as over
  t.teardown(() => c.close())
  const d = await c.decide({ guard: '/g', path: '/x', action: 'read', attrs: attrsOf(process.pid, 0, 0) })
  t.true(d.ok)
  t.true(d.load.total >= 0.1, 'the bias is part of the reported load')
})
