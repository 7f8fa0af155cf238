// spd's latency histograms and build info through a real member: decisions of both effects from an enrolled host show
// up in GET /metrics as spd_decision_duration_seconds by effect; spd_build_info names the build.
import test from 'ava'
import https from 'node:https'
import path from 'node:path'
import { attrsOf } from '../../lib/pem-fs/attrs'
import { ClusterClient } from '../../lib/pem-fs/client'
import { hostIdentity, readCluster } from '../../lib/pem-fs/host-config'
import { cli, initSpd, loginSpctl, startSpd, stopAll, tempDir, writeFile, type Spd } from '../../scripts/procs'

let spd: Spd
let client: ClusterClient
const work = tempDir('spd-metrics')

async function scrape (addr: string): Promise<string> {
  const [host, port] = addr.split(':')
  return await new Promise((resolve, reject) => {
    https.get({ host, port: Number(port), path: '/metrics', rejectUnauthorized: false }, res => {
      let text = ''
      res.on('data', (c: Buffer) => { text += c.toString('utf8') })
      res.on('end', () => res.statusCode === 200 ? resolve(text) : reject(new Error(`HTTP ${String(res.statusCode)}: ${text}`)))
    }).on('error', reject)
  })
}
const valueOf = (text: string, series: string): number => Number(new RegExp(`^${series.replace(/[{}+]/g, '\\$&')} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN)

test.before(async () => {
  spd = await initSpd('spd-metrics')
  await startSpd(spd)
  const spctl = await loginSpctl(spd)
  const p = writeFile(work, 'p.yaml', 'format: 1\nguards:\n  /srv/data:\n    rules:\n      - id: pub\n        resources: { dirs: [/public] }\n        effect: permit\n')
  const applied = await spctl(['policy', 'apply', '--yes', p])
  if (applied.code !== 0) throw new Error(applied.stderr)
  const token = JSON.parse((await spctl(['--json', 'host', 'add', 'h1'])).stdout).token as string
  const hostDir = path.join(work, 'host')
  const e = await cli('pemfs', ['enroll', '--cluster', spd.listen, '--token', token, '--config-dir', hostDir, '--name', 'h1'])
  if (e.code !== 0) throw new Error(e.stderr)
  client = new ClusterClient(hostIdentity(hostDir), readCluster(hostDir).servers, { timeoutMs: 2000 })
})

test.after.always(() => {
  for (const s of client?.servers ?? []) s.channel?.close()
  stopAll()
})

test('decisions are timed by effect; block ops and build info are exported', async t => {
  for (let i = 0; i < 3; i++) t.true((await client.decide({ guard: '/srv/data', path: '/public/a', action: 'read', attrs: attrsOf(process.pid, 1000, 1000) })).ok)
  for (let i = 0; i < 2; i++) t.false((await client.decide({ guard: '/srv/data', path: '/secret/b', action: 'read', attrs: attrsOf(process.pid, 1000, 1000) })).ok)
  const text = await scrape(spd.admin)
  t.is(valueOf(text, 'spd_decision_duration_seconds_count{effect="permit"}'), 3)
  t.is(valueOf(text, 'spd_decision_duration_seconds_count{effect="deny"}'), 2)
  t.is(valueOf(text, 'spd_decision_duration_seconds_bucket{le="+Inf",effect="deny"}'), 2)
  t.true(valueOf(text, 'spd_decision_duration_seconds_sum{effect="permit"}') > 0)
  t.regex(text, /^# TYPE spd_decision_duration_seconds histogram$/m)
  t.regex(text, /^# TYPE spd_block_op_duration_seconds histogram$/m)
  const build = /^spd_build_info\{version="([^"]+)",commit="([^"]+)",node="([^"]+)",openssl="([^"]+)"\} 1$/m.exec(text)
  t.truthy(build, text.split('\n').filter(l => l.includes('build_info')).join('\n'))
  t.is(build?.[3], process.versions.node)
  t.is(build?.[4], process.versions.openssl)
})
