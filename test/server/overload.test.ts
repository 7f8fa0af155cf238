// Overload: above the threshold a member rejects with reason overload (reject mode) or holds the request (queue mode).
import test from 'ava'
import path from 'node:path'
import { attrsOf } from '../../lib/pem-fs/attrs'
import { ClusterClient } from '../../lib/pem-fs/client'
import { hostIdentity, readCluster } from '../../lib/pem-fs/host-config'
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

test('reject mode: a request above the threshold gets PEM_ERR_OVERLOAD', async t => {
  const c = await enrolledClient({ bias: 0.5, threshold: 0.4, overload: 'reject' })
  t.teardown(() => c.close())
  const err = await t.throwsAsync(c.decide({ guard: '/g', path: '/x', action: 'read', attrs: attrsOf(process.pid, 0, 0) }))
  t.is((err as { code?: string }).code, 'PEM_ERR_OVERLOAD')
  t.is(c.servers[0].rejections, 1)
})

test('queue mode: the request waits its queue time, then is rejected if the load stays high', async t => {
  const c = await enrolledClient({ bias: 0.5, threshold: 0.4, overload: 'queue', queueMs: 300 })
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
