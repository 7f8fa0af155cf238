// The cluster's audit trail through the real programs: two spd members, a host deciding through member 2 only, and
// `spctl audit tail` logged in to member 1 alone: member 2's deny is there, --member and the filters cut it down,
// --follow prints a record written after it started and ends with exit 0 on SIGINT.
import test from 'ava'
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { connect } from '../../lib/channel/tls'
import { generateIdentity, loadIdentity } from '../../lib/crypto/identity'
import { attrsOf } from '../../lib/pem-fs/attrs'
import { ClusterClient } from '../../lib/pem-fs/client'
import { hostIdentity, readCluster } from '../../lib/pem-fs/host-config'
import { Op } from '../../lib/wire/opcodes'
import { clusterStatus, startCluster, until, type Member } from '../../scripts/cluster'
import { cli, ROOT, stopAll, tempDir } from '../../scripts/procs'

const FAST = { load: { threshold: 1 }, cluster: { intervalMs: 200, maxStalenessMs: 3000 } }
let ms: Member[]
let client: ClusterClient
const work = tempDir('spd-audit-trail')

interface Row { ts: string, member: string, hostName: string, uid: number, action: string, path: string, effect: string, rule: string | null }
const rows = (stdout: string): Row[] => stdout.split('\n').filter(l => l !== '').map(l => JSON.parse(l) as Row)
const decide = async (p: string, uid = 1000): Promise<boolean> =>
  (await client.decide({ guard: '/srv/data', path: p, action: 'read', attrs: attrsOf(process.pid, uid, 1000) })).ok

test.before(async () => {
  ms = await startCluster(2, 'trail', FAST)
  fs.writeFileSync(path.join(work, 'p.yaml'), 'format: 1\nguards:\n  /srv/data:\n    rules:\n      - id: pub\n        resources: { dirs: [/public] }\n        effect: permit\n')
  const r = await ms[0].spctl(['policy', 'apply', '--yes', path.join(work, 'p.yaml')])
  if (r.code !== 0) throw new Error(r.stderr)
  const token = JSON.parse((await ms[0].spctl(['--json', 'host', 'add', 'h1'])).stdout).token as string
  const hostDir = path.join(work, 'host')
  const e = await cli('pemfs', ['enroll', '--cluster', ms[0].listen, '--token', token, '--config-dir', hostDir, '--name', 'h1'])
  if (e.code !== 0) throw new Error(e.stderr)
  // Member 1 must know member 2's host address to ask it; the host decides through member 2 only.
  if (!await until(async () => (await clusterStatus(ms[0])).members.some(m => m.name === 'trail2' && m.hostAddr !== ''), 10000)) throw new Error('member 2 never published its host address')
  client = new ClusterClient(hostIdentity(hostDir), readCluster(hostDir).servers.filter(s => s.name === 'trail2'), { timeoutMs: 2000 })
  if (await decide('/secret/b', 1001)) throw new Error('expected a deny')
  if (!await decide('/public/a')) throw new Error('expected a permit')
})

test.after.always(() => {
  for (const s of client?.servers ?? []) s.channel?.close()
  stopAll()
})

test('a deny decided by member 2 is in the trail read through member 1, with its member and host', async t => {
  const r = await ms[0].spctl(['--json', 'audit', 'tail', '-n', '50'])
  t.is(r.code, 0, r.stderr)
  const deny = rows(r.stdout).find(x => x.path === '/secret/b')
  t.like(deny, { member: 'trail2', hostName: 'h1', uid: 1001, action: 'read', effect: 'deny', rule: null })
  const human = await ms[0].spctl(['audit', 'tail', '-n', '50'])
  t.regex(human.stdout, /^\S+Z trail2 host=h1 uid=1001 read \/srv\/data\/secret\/b deny rule=-$/m)
})

test('--member and the filters keep only the matching records', async t => {
  const only1 = rows((await ms[0].spctl(['--json', 'audit', 'tail', '--member', 'trail1'])).stdout)
  t.false(only1.some(x => x.member !== 'trail1'))
  const denies = rows((await ms[0].spctl(['--json', 'audit', 'tail', '--effect', 'deny'])).stdout)
  t.true(denies.length >= 1)
  t.true(denies.every(x => x.effect === 'deny'))
  const byUser = rows((await ms[0].spctl(['--json', 'audit', 'tail', '--user', '1001'])).stdout)
  t.deepEqual(byUser.map(x => x.path), ['/secret/b'])
  const byRule = rows((await ms[0].spctl(['--json', 'audit', 'tail', '--rule', 'pub', '--host', 'h1'])).stdout)
  t.true(byRule.length >= 1)
  t.true(byRule.every(x => x.rule === 'pub' && x.path === '/public/a'))
  t.is(rows((await ms[0].spctl(['--json', 'audit', 'tail', '--since', '1h', '--user', '4242'])).stdout).length, 0)
  const bad = await ms[0].spctl(['audit', 'tail', '--effect', 'maybe'])
  t.is(bad.code, 2)
  t.is((await ms[0].spctl(['audit', 'tail', '--member', 'nobody'])).code === 0, false)
  t.is((await ms[0].spctl(['audit', 'tail', '--host', 'nohost'])).code === 0, false)
})

test('--follow prints a record written after it started and exits 0 on SIGINT', async t => {
  const env = { ...process.env, SPCTL_CONFIG: path.join(path.dirname(ms[0].dir), 'spctl.json'), SPCTL_ENDPOINT: `https://${ms[0].admin}` }
  const p = spawn(process.execPath, [path.join(ROOT, 'bin', 'spctl.js'), 'audit', 'tail', '-n', '1', '--follow', '--user', '1002'], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  p.stdout.on('data', (c: Buffer) => { out += c.toString('utf8') })
  p.stderr.on('data', (c: Buffer) => { err += c.toString('utf8') })
  const exited = new Promise<number | null>(resolve => p.once('exit', code => resolve(code)))
  try {
    await new Promise(resolve => setTimeout(resolve, 1500)) // its first read is done
    t.is(out, '')
    t.false(await decide('/secret/later', 1002))
    t.true(await until(async () => out.includes('/srv/data/secret/later deny'), 8000), out + err)
    p.kill('SIGINT')
    t.is(await exited, 0, err)
  } finally { p.kill('SIGKILL') }
})

test('on the host listener a member key may only read the trail, a host key may not read it, a stranger gets no channel', async t => {
  const [host, port] = ms[1].listen.split(':')
  const read = { since: null, after: 0, limit: 5, uid: null, host: null, effect: null, rule: null }
  const peer = await connect({ host, port: Number(port), identity: loadIdentity(path.join(ms[0].dir, 'identity.key')), role: 'member', expectedId: ms[1].id, connectTimeoutMs: 2000 })
  try {
    const r = await peer.request(Op.AuditRead, read) as { member: string, records: unknown[] }
    t.is(r.member, 'trail2')
    t.true(r.records.length > 0)
    await t.throwsAsync(peer.request(Op.Decide, { pv: 1, guard: '/srv/data', path: '/public/a', action: 'read', attrs: attrsOf(process.pid, 0, 0) }), { message: /not served to a member/ })
  } finally { peer.close() }
  const hostChannel = client.servers[0].channel
  t.truthy(hostChannel)
  await t.throwsAsync(hostChannel!.request(Op.AuditRead, read), { message: /opcode 64/ })
  await t.throwsAsync(connect({ host, port: Number(port), identity: generateIdentity(), role: 'member', expectedId: ms[1].id, connectTimeoutMs: 2000 }))
})
