// End to end through the real programs: spd init/start, spctl, pemfs enroll, and the host client library over the
// real TLS channel — permit, deny, apply_key, audit, default deny, stale version, refusals, overload, restart.
import test from 'ava'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import tls from 'node:tls'
import { connect } from '../../lib/channel/tls'
import { generateIdentity } from '../../lib/crypto/identity'
import { attrsOf } from '../../lib/pem-fs/attrs'
import { ClusterClient } from '../../lib/pem-fs/client'
import { hostIdentity, readCluster } from '../../lib/pem-fs/host-config'
import { ERRORS } from '../../lib/wire/errors'
import { Op } from '../../lib/wire/opcodes'
import type { AccessAttrs, DecideReply } from '../../lib/wire/packets'
import { cli, loginSpctl, startSpd, stopSpd, tempDir, writeFile, type Spd } from '../../scripts/procs'
import { spdWithEnrolledHost, stopEnrolledHost, type EnrolledHost } from '../helpers/enrolled-host'

const nodeHash = crypto.createHash('sha256').update(fs.readFileSync(process.execPath)).digest('hex')
const POLICY = `format: 1
keys: [finance]
guards:
  /srv/data:
    rules:
      - id: audit-reports
        resources: { dirs: [/reports] }
        effect: audit
      - id: deny-secret
        resources: { dirs: [/secret] }
        effect: deny
      - id: finance-enc
        resources: { dirs: [/finance] }
        users: { uids: [4242] }
        effect: apply_key(finance)
        compression: zstd
      - id: node-tools
        resources: { dirs: [/tools] }
        processes: { signatures: ["sha256:${nodeHash}"] }
        effect: permit
      - id: public
        resources: { dirs: [/public, /reports] }
        actions: [read, list, getattr]
        effect: permit
`
const BAD_POLICY = `format: 1
keys: [finance]
guards:
  /srv/data:
    rules:
      - id: broken
        effect: apply_key(nosuchkey)
`

let spd: Spd
let spctl: (args: string[]) => Promise<{ code: number, stdout: string, stderr: string }>
let hostDir: string
let client: ClusterClient
let env: EnrolledHost | undefined
const work = tempDir('spd-test')

const attrs = (over: Partial<AccessAttrs> = {}): AccessAttrs => ({ ...attrsOf(process.pid, 1000, 1000), ...over })
const decide = async (p: string, action: 'read' | 'write' = 'read', over: Partial<AccessAttrs> = {}): Promise<DecideReply> =>
  await client.decide({ guard: '/srv/data', path: p, action, attrs: attrs(over) })

test.before(async () => {
  env = await spdWithEnrolledHost(work, 'spd-a', { load: { threshold: 1 } }, POLICY, 'host-1')
  ;({ spd, hostDir, client, spctl } = env)
})

test.after.always(async () => { await stopEnrolledHost(env) })

test.serial('status shows the member, the policy and the enrolled host', async t => {
  const r = await spctl(['--json', 'status'])
  t.is(r.code, 0, r.stderr)
  const s = JSON.parse(r.stdout)
  t.is(s.name, 'spd-a')
  t.is(s.hosts, 1)
  t.true(s.version >= 3, 'init, policy, token and enrollment each committed a version')
  t.truthy(s.policy)
  const hosts = JSON.parse((await spctl(['--json', 'host', 'list'])).stdout)
  t.deepEqual(hosts.map((h: { name: string }) => h.name), ['host-1'])
})

test.serial('permit without a key is a bypass decision naming its rule, with load and weight', async t => {
  const d = await decide('/public/readme.txt')
  t.true(d.ok); t.is(d.rule, 'public'); t.true(d.bypass); t.is(d.key, null)
  t.true(d.weight >= 1 && d.weight <= 100)
  t.true(d.load.total >= 0 && d.load.total <= 1)
  t.true(d.ttl > 0)
})

test.serial('the client pipelines: 200 decisions in flight on one channel, each answered correctly', async t => {
  const paths = Array.from({ length: 200 }, (_, i) => i % 2 === 0 ? `/public/f${i}` : `/secret/f${i}`)
  const replies = await Promise.all(paths.map(async p => await decide(p)))
  replies.forEach((d, i) => t.is(d.rule, i % 2 === 0 ? 'public' : 'deny-secret', paths[i]))
  t.is(client.servers[0].channel?.inFlight, 0)
})

test.serial('deny names the deny rule; a write outside the permitted actions is default-denied', async t => {
  const d = await decide('/secret/plans.txt')
  t.false(d.ok); t.is(d.reason, ERRORS.PEM_ERR_POLICY_DENY.id); t.is(d.rule, 'deny-secret')
  const w = await decide('/public/readme.txt', 'write')
  t.false(w.ok); t.is(w.rule, null, 'no rule matched: default deny')
})

test.serial('apply_key grants the key and compression to the matching user only', async t => {
  const d = await decide('/finance/q3.xlsx', 'read', { uid: 4242 })
  t.true(d.ok); t.is(d.rule, 'finance-enc'); t.is(d.key, 'finance'); t.false(d.bypass); t.is(d.compression, 'zstd')
  const other = await decide('/finance/q3.xlsx', 'read', { uid: 1000 })
  t.false(other.ok); t.is(other.rule, null)
})

test.serial('process signature: the node binary is permitted, another hash is not', async t => {
  t.true((await decide('/tools/x')).ok)
  t.false((await decide('/tools/x', 'read', { exeHash: '0'.repeat(64) })).ok)
})

test.serial('audit is non-terminal and every decision lands in the audit log', async t => {
  const d = await decide('/reports/r1.pdf')
  t.true(d.ok); t.is(d.rule, 'public')
  await new Promise(resolve => setTimeout(resolve, 50))
  const r = await spctl(['--json', 'audit', 'events', '-n', '1000'])
  const events = JSON.parse(r.stdout) as Array<Record<string, unknown>>
  const e = events.reverse().find(x => x.kind === 'decision' && x.path === '/reports/r1.pdf')
  t.truthy(e); t.is(e?.rule, 'public'); t.deepEqual(e?.audit, ['audit-reports'])
  t.truthy(events.find(x => x.event === 'policy_applied'))
})

test.serial('a bad policy is refused whole with its line, and the old one stays in force', async t => {
  const before = JSON.parse((await spctl(['--json', 'status'])).stdout).version
  const r = await spctl(['policy', 'apply', writeFile(work, 'bad.yaml', BAD_POLICY)])
  t.not(r.code, 0)
  t.regex(r.stderr, /PEM_ERR_BAD_POLICY/)
  t.regex(r.stderr, /:7:/, 'the error names line 7')
  const yamlSyntax = await spctl(['policy', 'apply', writeFile(work, 'syntax.yaml', 'format: 1\nguards: [\n')])
  t.not(yamlSyntax.code, 0)
  t.is(JSON.parse((await spctl(['--json', 'status'])).stdout).version, before)
  t.is((await spctl(['policy', 'get'])).stdout, POLICY)
  t.true((await decide('/public/a')).ok)
})

test.serial('a stale policy version is refused with the installed one; the client adopts it and retries', async t => {
  const ch = await connect({ host: '127.0.0.1', port: Number(spd.listen.split(':')[1]), identity: hostIdentity(hostDir), role: 'host', expectedId: readCluster(hostDir).servers[0].id })
  t.teardown(() => ch.close())
  const pv = ch.helloReply?.pv ?? 0
  const stale = await ch.request(Op.Decide, { pv: pv - 1, guard: '/srv/data', path: '/public/a', action: 'read', attrs: attrs() }) as DecideReply
  t.false(stale.ok); t.is(stale.reason, ERRORS.PEM_ERR_STALE_POLICY.id); t.is(stale.pv, pv)
  const oldPv = client.pv
  await spctl(['key', 'create', 'extra'])
  const d = await decide('/public/a')
  t.true(d.ok); t.true(d.pv > oldPv); t.is(client.pv, d.pv)
})

test.serial('an unenrolled host is refused at the handshake and the refusal is audited', async t => {
  const stranger = generateIdentity()
  const err = await t.throwsAsync(connect({ host: '127.0.0.1', port: Number(spd.listen.split(':')[1]), identity: stranger, role: 'host', expectedId: readCluster(hostDir).servers[0].id }))
  t.truthy(err)
  t.regex(String((err as { code?: string }).code), /PEM_ERR_NOT_ENROLLED|PEM_ERR_CLOSED/)
  const s = JSON.parse((await spctl(['--json', 'status'])).stdout)
  t.true(s.counters.refused >= 1)
})

test.serial('a used token cannot enroll again; a wrong server pin is refused', async t => {
  const token = JSON.parse((await spctl(['--json', 'host', 'add', 'host-2'])).stdout).token as string
  const dir2 = path.join(work, 'host2')
  t.is((await cli('pemfs', ['enroll', '--cluster', spd.listen, '--token', token, '--config-dir', dir2])).code, 0)
  const again = await cli('pemfs', ['enroll', '--cluster', spd.listen, '--token', token, '--config-dir', path.join(work, 'host3')])
  t.not(again.code, 0); t.regex(again.stderr, /PEM_ERR_BAD_TOKEN/)
  const forged = token.replace(/\.[0-9a-f]{64}$/, '.' + 'ab'.repeat(32))
  const pinned = await cli('pemfs', ['enroll', '--cluster', spd.listen, '--token', forged, '--config-dir', path.join(work, 'host4')])
  t.not(pinned.code, 0); t.regex(pinned.stderr, /PEM_ERR_PEER_KEY/)
})

test.serial('garbage on an enrolled channel closes that channel only; the server keeps serving', async t => {
  const id = hostIdentity(hostDir)
  const sock = tls.connect({ host: '127.0.0.1', port: Number(spd.listen.split(':')[1]), key: id.keyPem, cert: id.certPem, rejectUnauthorized: false, ALPNProtocols: ['pem/1'], minVersion: 'TLSv1.3' })
  await new Promise<void>((resolve, reject) => { sock.once('secureConnect', () => resolve()); sock.once('error', reject) })
  sock.resume() // read, so that the server's close reaches us
  const closed = new Promise<void>(resolve => sock.once('close', () => resolve()))
  sock.write(Buffer.from('ffffffff00000000000000000000', 'hex'))
  await closed
  t.true((await decide('/public/a')).ok)
})

test.serial('pemfs check asks the cluster as the calling process', async t => {
  const ok = await cli('pemfs', ['check', '/srv/data/public/x', '--guard', '/srv/data', '--config-dir', hostDir, '--json'])
  t.is(ok.code, 0, ok.stderr); t.is(JSON.parse(ok.stdout).rule, 'public')
  const no = await cli('pemfs', ['check', '/srv/data/secret/x', '--guard', '/srv/data', '--config-dir', hostDir, '--json'])
  t.is(no.code, 3); t.is(JSON.parse(no.stdout).decision, 'deny')
  const bad = await cli('pemfs', ['check', '/elsewhere', '--guard', '/srv/data', '--config-dir', hostDir])
  t.is(bad.code, 2); t.regex(bad.stderr, /not inside the guard point/)
})

test.serial('a restart keeps the policy, the keys and the enrolled hosts', async t => {
  const before = JSON.parse((await spctl(['--json', 'status'])).stdout)
  client.close()
  t.is(await stopSpd(spd), 0, 'SIGTERM is a clean exit')
  await startSpd(spd)
  spctl = await loginSpctl(spd)
  const after = JSON.parse((await spctl(['--json', 'status'])).stdout)
  t.is(after.version, before.version); t.is(after.hosts, before.hosts); t.is(after.keys, before.keys)
  client = new ClusterClient(hostIdentity(hostDir), readCluster(hostDir).servers)
  const d = await decide('/finance/q', 'read', { uid: 4242 })
  t.true(d.ok); t.is(d.key, 'finance')
})

test.serial('the store on disk is encrypted: no policy text, key names or host names in the clear', t => {
  const bytes = fs.readFileSync(path.join(spd.dir, 'store.bin'))
  for (const needle of ['finance-enc', 'host-1', 'apply_key', 'scrypt']) t.is(bytes.indexOf(needle), -1, needle)
})
