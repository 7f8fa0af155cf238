// The cluster protocol with real spd processes on loopback: a 3-member cluster grown by sponsorship, policy changes on
// each member installing everywhere, a killed member (the rest still install; it catches up on restart), concurrent
// changes, removal that sticks, a rogue key refused at the handshake — while a host's decisions keep being served.
import test from 'ava'
import fs from 'node:fs'
import https from 'node:https'
import path from 'node:path'
import { connect } from '../../lib/channel/tls'
import { generateIdentity } from '../../lib/crypto/identity'
import { attrsOf } from '../../lib/pem-fs/attrs'
import { ClusterClient } from '../../lib/pem-fs/client'
import { hostIdentity, readCluster } from '../../lib/pem-fs/host-config'
import { ERRORS } from '../../lib/wire/errors'
import { Op } from '../../lib/wire/opcodes'
import type { DecideReply } from '../../lib/wire/packets'
import { admin, allInstalled, clusterStatus, installedVersion, startCluster, until, type Member } from '../../scripts/cluster'
import { cli, startSpd, stopAll, stopSpd, tempDir, writeFile } from '../../scripts/procs'

const FAST = { load: { threshold: 1 }, cluster: { intervalMs: 200, maxStalenessMs: 3000 } }
const policy = (tag: string): string => `format: 1
guards:
  /srv/data:
    rules:
      - id: ${tag}
        resources: { dirs: [/public] }
        effect: permit
`

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
const metricOf = (text: string, line: string): number => Number(new RegExp(`^${line.replace(/[{}]/g, '\\$&')} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN)

let ms: Member[]
let client: ClusterClient
const work = tempDir('spd-cluster')
let decisions = { ok: 0, failed: 0, lastError: '' }
let driving = true
let paused = false
let driver: Promise<void> = Promise.resolve()

test.before(async () => {
  ms = await startCluster(3, 'c', FAST)
  fs.writeFileSync(path.join(work, 'p0.yaml'), policy('v0'))
  const r = await ms[0].spctl(['policy', 'apply', path.join(work, 'p0.yaml')])
  if (r.code !== 0) throw new Error(r.stderr)
  // A host enrolled at member 1 learns every member's host address and keeps deciding through everything below.
  const token = JSON.parse((await ms[0].spctl(['--json', 'host', 'add', 'h1'])).stdout).token as string
  const hostDir = path.join(work, 'host')
  const e = await cli('pemfs', ['enroll', '--cluster', ms[0].listen, '--token', token, '--config-dir', hostDir, '--name', 'h1'])
  if (e.code !== 0) throw new Error(e.stderr)
  const servers = readCluster(hostDir).servers
  if (servers.length !== 3) throw new Error(`enrollment returned ${servers.length} servers, not 3`)
  client = new ClusterClient(hostIdentity(hostDir), servers, { timeoutMs: 1000, retryDownMs: 500 })
  driver = (async () => {
    while (driving) {
      if (paused) { await new Promise(resolve => setTimeout(resolve, 20)); continue }
      try {
        const d = await client.decide({ guard: '/srv/data', path: '/public/a', action: 'read', attrs: attrsOf(process.pid, 1000, 1000) })
        if (d.ok) decisions.ok++; else { decisions.failed++; decisions.lastError = `reason ${d.reason}` }
      } catch (err) { decisions.failed++; decisions.lastError = (err as Error).message }
      await new Promise(resolve => setTimeout(resolve, 20))
    }
  })()
})

test.after.always(async () => {
  driving = false
  await driver
  for (const s of client?.servers ?? []) s.channel?.close()
  stopAll()
})

test.serial('three members built by sponsorship share one installed configuration', async t => {
  const v = await installedVersion(ms[0])
  t.truthy(v)
  const digest = await allInstalled(ms, v ?? 0)
  t.regex(digest, /^[0-9a-f]{64}$/)
  const view = await clusterStatus(ms[1])
  t.is(view.members.length, 3)
  t.true(view.members.every(m => m.state === 'self' || m.state === 'active'), JSON.stringify(view.members))
  t.true(view.members.every(m => m.hostAddr !== ''), 'every member published its host address')
})

test.serial('a policy change on each member in turn is installed on all, with one digest', async t => {
  for (const [i, m] of ms.entries()) {
    const file = writeFile(work, `p${i + 1}.yaml`, policy(`from-${m.name}`))
    const r = await m.spctl(['--json', 'policy', 'apply', file])
    t.is(r.code, 0, r.stderr)
    const version = JSON.parse(r.stdout).version as number
    await allInstalled(ms, version)
    for (const other of ms) {
      const got = await admin(other, 'GET', '/v1/policy') as { version: number, text: string }
      t.is(got.version, version)
      t.true(got.text.includes(`from-${m.name}`), `${other.name} serves the policy applied on ${m.name}`)
    }
  }
})

test.serial('concurrent changes on two members converge: both land, one after the other, everywhere the same', async t => {
  const before = (await installedVersion(ms[0])) ?? 0
  const [a, b] = await Promise.all([
    ms[0].spctl(['--json', 'key', 'create', 'alpha']),
    ms[1].spctl(['--json', 'key', 'create', 'beta'])
  ])
  t.is(a.code, 0, a.stderr); t.is(b.code, 0, b.stderr)
  const va = JSON.parse(a.stdout).pv as number
  const vb = JSON.parse(b.stdout).pv as number
  t.not(va, vb, 'the two changes took different versions')
  t.is(Math.max(va, vb), before + 2)
  await allInstalled(ms, before + 2)
  for (const m of ms) {
    const keys = (await admin(m, 'GET', '/v1/keys') as Array<{ name: string }>).map(k => k.name)
    t.true(keys.includes('alpha') && keys.includes('beta'), `${m.name}: ${keys.join(',')}`)
  }
})

test.serial('a killed member does not block the others; on restart it catches up to the same digest', async t => {
  const dead = ms[2]
  await stopSpd(dead, 'SIGKILL')
  const r = await ms[1].spctl(['--json', 'key', 'create', 'while-down'])
  t.is(r.code, 0, r.stderr)
  const version = JSON.parse(r.stdout).pv as number
  const digest = await allInstalled([ms[0], ms[1]], version)
  await startSpd(dead)
  t.is(await allInstalled(ms, version), digest)
  const keys = (await admin(dead, 'GET', '/v1/keys') as Array<{ name: string }>).map(k => k.name)
  t.true(keys.includes('while-down'))
})

test.serial('members paused past the active window are marked down; the one left stops deciding after maxStalenessMs; all recover on SIGCONT', async t => {
  paused = true
  await new Promise(resolve => setTimeout(resolve, 100))
  const survivor = ms[0]
  const ch = client.servers.find(s => s.entry.name === survivor.name)?.channel
  t.truthy(ch)
  const ask = async (): Promise<DecideReply> => await ch?.request(Op.Decide, { pv: client.pv, guard: '/srv/data', path: '/public/a', action: 'read', attrs: attrsOf(process.pid, 1000, 1000) }) as DecideReply
  t.true((await ask()).ok)
  for (const m of [ms[1], ms[2]]) m.proc?.kill('SIGSTOP')
  try {
    t.true(await until(async () => (await clusterStatus(survivor)).members.filter(m => m.state === 'down').length === 2, 5000), 'both marked down')
    t.true(await until(async () => (await ask()).reason === ERRORS.PEM_ERR_STALE_POLICY.id, 8000), 'cut off from the majority: decisions refused as stale')
    t.is(metricOf(await scrape(survivor.admin), 'spd_cluster_can_serve'), 0)
  } finally {
    for (const m of [ms[1], ms[2]]) m.proc?.kill('SIGCONT')
  }
  t.true(await until(async () => (await clusterStatus(survivor)).members.every(m => m.state === 'self' || m.state === 'active'), 8000), 'both back')
  t.true(await until(async () => (await ask()).ok, 5000), 'deciding again')
  paused = false
})

test.serial('a process with a key nobody sponsored is refused at the handshake, and the refusal is audited', async t => {
  const rogue = generateIdentity()
  const [host, port] = ms[0].cluster.split(':')
  await t.throwsAsync(connect({ host, port: Number(port), identity: rogue, role: 'member', expectedId: ms[0].id, connectTimeoutMs: 2000 }))
  t.true(await until(async () => {
    const tail = await admin(ms[0], 'GET', '/v1/audit?n=200') as Array<Record<string, unknown>>
    return tail.some(e => e.event === 'member_refused')
  }, 5000))
  t.is((await clusterStatus(ms[0])).members.length, 3, 'nothing about the cluster changed')
})

test.serial('a removed member stays out: refused by the others, it cannot install later versions, also after a restart', async t => {
  const gone = ms[2]
  const r = await ms[0].spctl(['--json', 'member', 'remove', gone.name, '--password-file', ms[0].passwordFile])
  t.is(r.code, 0, r.stderr)
  const removedAt = JSON.parse(r.stdout).pv as number
  await allInstalled([ms[0], ms[1]], removedAt)
  const later = await ms[1].spctl(['--json', 'key', 'create', 'after-removal'])
  t.is(later.code, 0, later.stderr)
  const v = JSON.parse(later.stdout).pv as number
  await allInstalled([ms[0], ms[1]], v)
  await stopSpd(gone)
  await startSpd(gone)
  await new Promise(resolve => setTimeout(resolve, 1500)) // several heartbeat intervals
  const goneVersion = await installedVersion(gone)
  t.true(goneVersion !== null && goneVersion < v, `removed member at ${String(goneVersion)}, cluster at ${v}`)
  const view = await clusterStatus(ms[0])
  t.is(view.members.find(m => m.id === gone.id)?.state, 'removed')
  const again = await ms[0].spctl(['member', 'add', (JSON.parse((await cli('spd', ['id', '--data-dir', gone.dir, '--json'])).stdout) as { key: string }).key, '--addr', gone.cluster, '--name', 'back', '--password-file', ms[0].passwordFile])
  t.not(again.code, 0, 'a removed key cannot rejoin')
  t.regex(again.stderr, /removed/)
})

test.serial('Prometheus metrics on the admin listener: decisions, versions, member states, heartbeat lag', async t => {
  const text = await scrape(ms[0].admin)
  t.true(metricOf(text, 'spd_policy_version') === await installedVersion(ms[0]))
  t.is(metricOf(text, 'spd_cluster_members{state="self"}'), 1)
  t.is(metricOf(text, 'spd_cluster_members{state="active"}'), 1, 'one peer active, the removed one counted as removed')
  t.is(metricOf(text, 'spd_cluster_members{state="removed"}'), 1)
  t.is(metricOf(text, 'spd_cluster_can_serve'), 1)
  const lag = metricOf(text, `spd_cluster_heartbeat_lag_seconds{member="${ms[1].name}"}`)
  t.true(lag >= 0 && lag < 2, `lag ${lag}`)
  const permits = ms.map(async m => { try { return metricOf(await scrape(m.admin), 'spd_decisions_total{effect="permit"}') } catch { return 0 } })
  t.true((await Promise.all(permits)).reduce((a, b) => a + b, 0) > 0, 'the host\'s decisions are counted')
  t.regex(text, /^spd_process_cpu_seconds_total /m)
  t.false(/finance|h1|\/srv\/data/.test(text), 'no host names, paths or key names in the metrics')
})

test.serial('host server lists and preferences are cluster configuration: set on one member, served by another', async t => {
  const set = await ms[1].spctl(['--json', 'host', 'servers', 'h1', '--only', ms[0].name, '--prefer', `${ms[0].name}=1`])
  t.is(set.code, 0, set.stderr)
  await allInstalled([ms[0], ms[1]], JSON.parse(set.stdout).pv as number)
  const viaOther = client.servers.find(s => s.entry.name === ms[0].name)
  if (viaOther === undefined) return t.fail(`the host has no server ${ms[0].name}`)
  const r = await client.serverList(viaOther)
  t.deepEqual(r.servers.map(s => [s.name, s.preference]), [[ms[0].name, 1]])
  const bad = await ms[0].spctl(['host', 'servers', 'h1', '--only', 'no-such-member'])
  t.not(bad.code, 0)
  t.regex(bad.stderr, /no active member named no-such-member/)
  const clear = await ms[0].spctl(['--json', 'host', 'servers', 'h1', '--clear'])
  t.is(clear.code, 0, clear.stderr)
  const again = await client.serverList(viaOther)
  t.deepEqual(again.servers.map(s => s.name).sort(), [ms[0].name, ms[1].name].sort())
  t.true(again.servers.every(s => s.preference === undefined))
})

test.serial('the host was served through all of it: decisions kept succeeding, and it sees the installed version', async t => {
  t.true(decisions.ok > 20, `only ${decisions.ok} decisions succeeded`)
  t.is(decisions.failed, 0, decisions.lastError)
  const installed = (await installedVersion(ms[0])) ?? -1
  t.true(await until(async () => client.pv === installed, 5000), `the host sees version ${installed} (it has ${client.pv})`)
})
