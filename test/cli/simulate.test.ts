// Decision replay through the real spd and spctl (issue 20, part 2): a recorded workload of host decisions is replayed
// under drafts. A tightening draft shows exactly the decisions it turns from permit to deny, with the rule and
// examples; the installed policy again shows no change; an invalid draft exits 2 naming its file; an audit file copy
// replays offline with no member; apply refuses a permit -> deny without --yes off a terminal and applies with --yes,
// and on a terminal (script(1) gives it one) it shows the summary and asks. The records' admin route needs a session.
import test from 'ava'
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { adminCall } from '../../lib/cli/admin-client'
import { attrsOf } from '../../lib/pem-fs/attrs'
import { ClusterClient } from '../../lib/pem-fs/client'
import { hostIdentity, readCluster } from '../../lib/pem-fs/host-config'
import type { SimulationReport } from '../../lib/cli/spctl-simulate'
import type { AccessAttrs, Action } from '../../lib/wire/packets'
import { cli, initSpd, loginSpctl, ROOT, startSpd, stopAll, stopSpd, tempDir, writeFile, type RunResult, type Spd } from '../../scripts/procs'

const INSTALLED = `format: 1
keys: [fin]
guards:
  /srv/data:
    rules:
      - id: finance
        users: { uids: [4242] }
        resources: { dirs: [/finance] }
        effect: apply_key(fin)
      - id: public
        resources: { dirs: [/public] }
        actions: readonly
        effect: permit
`
// The same, with /public/tmp closed and finance's key renamed: 3 reads under /public/tmp and 2 finance reads change.
const TIGHTER = INSTALLED
  .replace('keys: [fin]', 'keys: [fin, fin2]')
  .replace('effect: apply_key(fin)', 'effect: apply_key(fin2)')
  .replace('      - id: public\n', '      - id: no-tmp\n        resources: { dirs: [/public/tmp] }\n        effect: deny\n      - id: public\n')
const INVALID = 'format: 1\nguards:\n  /srv/data:\n    rules:\n      - id: r1\n        effect: apply_key(nosuchkey)\n'

let spd: Spd
let spctl: (args: string[]) => Promise<RunResult>
let client: ClusterClient
const work = tempDir('simulate-test')
const files = { installed: '', tighter: '', invalid: '' }

test.before(async () => {
  files.installed = writeFile(work, 'installed.yaml', INSTALLED)
  files.tighter = writeFile(work, 'tighter.yaml', TIGHTER)
  files.invalid = writeFile(work, 'invalid.yaml', INVALID)
  spd = await initSpd('spd-sim')
  await startSpd(spd)
  spctl = await loginSpctl(spd)
  const applied = await spctl(['policy', 'apply', files.installed, '--yes'])
  if (applied.code !== 0) throw new Error(applied.stderr)
  const token = JSON.parse((await spctl(['--json', 'host', 'add', 'host-1'])).stdout).token as string
  const hostDir = path.join(work, 'host')
  const enrolled = await cli('pemfs', ['enroll', '--cluster', spd.listen, '--token', token, '--config-dir', hostDir, '--name', 'host-1'])
  if (enrolled.code !== 0) throw new Error(enrolled.stderr)
  client = new ClusterClient(hostIdentity(hostDir), readCluster(hostDir).servers)
  // The workload: 10 decisions, 5 of which the tighter draft decides otherwise.
  const ask = async (p: string, action: Action, uid = 1000): Promise<boolean> => {
    const attrs: AccessAttrs = { ...attrsOf(process.pid, uid, 1000) }
    return (await client.decide({ guard: '/srv/data', path: p, action, attrs })).ok
  }
  const expected = [
    [await ask('/public/readme.txt', 'read'), true],
    [await ask('/public/readme.txt', 'write'), false],
    [await ask('/public/tmp/a', 'read'), true], // -> deny by no-tmp
    [await ask('/public/tmp/b', 'read'), true], // -> deny by no-tmp
    [await ask('/public/tmp/c', 'getattr'), true], // -> deny by no-tmp
    [await ask('/public/tmp/d', 'write'), false], // deny (no rule) -> deny by no-tmp
    [await ask('/finance/q3.xlsx', 'read', 4242), true], // -> key fin2
    [await ask('/finance/q4.xlsx', 'read', 4242), true], // -> key fin2
    [await ask('/finance/q3.xlsx', 'read', 1000), false],
    [await ask('/secret/x', 'read'), false]
  ]
  for (const [got, want] of expected) if (got !== want) throw new Error('the workload was not decided as the installed policy says')
})

test.after.always(async () => {
  client?.close()
  if (spd !== undefined) await stopSpd(spd)
  stopAll()
})

const report = (r: RunResult): SimulationReport => JSON.parse(r.stdout) as SimulationReport
const group = (s: SimulationReport, fromRule: string | null, toRule: string | null): SimulationReport['changes'][number] | undefined =>
  s.changes.find(g => g.from.rule === fromRule && g.to.rule === toRule)

test.serial('a tightening draft shows exactly the decisions it changes: permit -> deny with the rule and examples', async t => {
  const r = await spctl(['--json', 'policy', 'simulate', files.tighter, '--examples', '2'])
  t.is(r.code, 1, r.stderr)
  const s = report(r)
  t.is(s.replayed, 10)
  t.is(s.changed, 6)
  t.is(s.permitToDeny, 3)
  t.is(s.notAsRecorded, 0, 'every record was decided under the installed policy')
  const closed = group(s, 'public', 'no-tmp')
  t.deepEqual(closed?.from, { effect: 'permit', rule: 'public', key: null })
  t.deepEqual(closed?.to, { effect: 'deny', rule: 'no-tmp', key: null })
  t.is(closed?.count, 3)
  t.deepEqual(closed?.examples.map(e => e.path), ['/public/tmp/a', '/public/tmp/b'], 'the first two, in log order')
  t.deepEqual(s.changes[0], closed, 'permit -> deny comes first')
  t.is(group(s, null, 'no-tmp')?.count, 1, 'a deny by no rule becoming a deny by no-tmp')
  const rekeyed = group(s, 'finance', 'finance')
  t.deepEqual([rekeyed?.from.key, rekeyed?.to.key, rekeyed?.count], ['fin', 'fin2', 2])
  t.is(s.changes.length, 3)

  const text = await spctl(['policy', 'simulate', files.tighter])
  t.is(text.code, 1)
  t.regex(text.stdout, /replayed 10 recorded decisions since .*: 6 would change, 3 of them permit -> deny/)
  t.regex(text.stdout, /3 {2}permit \(rule public\) -> deny \(rule no-tmp\)\n.*e\.g\. .* read \/srv\/data\/public\/tmp\/a {2}by uid 1000/)
})

test.serial('the installed policy as the draft shows no change and exits 0', async t => {
  const r = await spctl(['policy', 'simulate', files.installed])
  t.is(r.code, 0, r.stderr)
  t.regex(r.stdout, /^replayed 10 recorded decisions since .*: no change\n/)
  const j = await spctl(['--json', 'policy', 'simulate', files.installed])
  t.is(j.code, 0)
  t.deepEqual([report(j).changed, report(j).changes], [0, []])
})

test.serial('an invalid draft exits 2 and names the file and line', async t => {
  const r = await spctl(['policy', 'simulate', files.invalid])
  t.is(r.code, 2)
  t.regex(r.stderr, /PEM_ERR_BAD_POLICY/)
  t.true(r.stderr.includes(`${files.invalid}:6: guards["/srv/data"].rules[0].effect: apply_key(nosuchkey) names an unknown key`), r.stderr)
  t.is(r.stdout, '')
})

test.serial('--from replays a copied audit file offline, with no member or session', async t => {
  const copy = path.join(work, 'audit-copy.log')
  fs.copyFileSync(path.join(spd.dir, 'audit.log'), copy)
  const env = { SPCTL_CONFIG: path.join(work, 'no-session.json'), SPCTL_ENDPOINT: 'https://127.0.0.1:1' }
  const r = await cli('spctl', ['--json', 'policy', 'simulate', files.tighter, '--from', copy], env)
  t.is(r.code, 1, r.stderr)
  const s = report(r)
  t.deepEqual([s.replayed, s.changed, s.permitToDeny, s.source.kind], [10, 6, 3, 'file'])
  t.is(group(s, 'public', 'no-tmp')?.count, 3)
  const same = await cli('spctl', ['policy', 'simulate', files.installed, '--from', copy], env)
  t.is(same.code, 0, same.stderr)
  const missing = await cli('spctl', ['policy', 'simulate', files.installed, '--from', path.join(work, 'nope.log')], env)
  t.is(missing.code, 2)
  t.regex(missing.stderr, /no such file .*nope\.log/)
})

test.serial('GET /v1/audit/decisions needs a session, checks its arguments and keeps the newest records under a limit', async t => {
  const [host, port] = spd.admin.split(':')
  const target = { host, port: Number(port), pin: null }
  const since = encodeURIComponent(new Date(Date.now() - 3_600_000).toISOString())
  const anonymous = await t.throwsAsync(adminCall(target, 'GET', `/v1/audit/decisions?since=${since}`))
  t.is((anonymous as { code?: string }).code, 'PEM_ERR_AUTH')
  const session = JSON.parse(fs.readFileSync(path.join(path.dirname(spd.dir), 'spctl.json'), 'utf8'))[spd.admin] as { token: string }
  const get = async (query: string): Promise<unknown> => (await adminCall(target, 'GET', `/v1/audit/decisions?${query}`, undefined, session.token)).value
  const newest = await get(`since=${since}&limit=3`) as { records: Array<{ path: string }>, truncated: boolean }
  t.true(newest.truncated)
  t.deepEqual(newest.records.map(r => r.path), ['/finance/q4.xlsx', '/finance/q3.xlsx', '/secret/x'])
  for (const bad of ['since=yesterday', `since=${since}&limit=0`, `since=${since}&limit=100001`]) {
    const e = await t.throwsAsync(get(bad))
    t.is((e as { code?: string }).code, 'PEM_ERR_BAD_ARGUMENT', bad)
  }
})

test.serial('apply refuses a permit -> deny without --yes off a terminal (exit 2, nothing applied); --yes applies', async t => {
  const before = await spctl(['--json', 'policy', 'get'])
  const r = await spctl(['policy', 'apply', files.tighter])
  t.is(r.code, 2, r.stdout + r.stderr)
  t.regex(r.stderr, /tighter\.yaml would deny 3 of the 10 decisions recorded in the last 24h that the installed policy permits/)
  t.regex(r.stderr, /add --yes/)
  t.is((await spctl(['--json', 'policy', 'get'])).stdout, before.stdout, 'the installed policy stays')
  const ok = await spctl(['policy', 'apply', files.tighter, '--yes'])
  t.is(ok.code, 0, ok.stderr)
  t.is(JSON.parse((await spctl(['--json', 'policy', 'get'])).stdout).text, TIGHTER)
  // Back to the installed policy: it permits more, so no confirmation is needed.
  const back = await spctl(['--json', 'policy', 'apply', files.installed])
  t.is(back.code, 0, back.stderr)
  t.like(JSON.parse(back.stdout), { applied: files.installed, replayed: 10, permitToDeny: 0 })
})

/** spctl on a terminal: script(1) runs it on a pseudo-terminal and types `typed` into it. */
async function onTerminal (args: string[], typed: string): Promise<RunResult> {
  const env = { ...process.env, SPCTL_CONFIG: path.join(path.dirname(spd.dir), 'spctl.json'), SPCTL_ENDPOINT: `https://${spd.admin}` }
  const command = [process.execPath, path.join(ROOT, 'bin', 'spctl.js'), ...args].map(a => `'${a}'`).join(' ')
  return await new Promise(resolve => {
    const child = spawn('script', ['-qec', command, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'], env })
    let out = ''
    child.stdout.on('data', (c: Buffer) => { out += c.toString('utf8') })
    child.stderr.on('data', (c: Buffer) => { out += c.toString('utf8') })
    setTimeout(() => child.stdin.end(typed), 300)
    const timer = setTimeout(() => child.kill('SIGKILL'), 20000)
    child.on('close', code => { clearTimeout(timer); resolve({ code: code ?? 1, stdout: out, stderr: '' }) })
  })
}

test.serial('on a terminal apply shows the summary and asks before a permit -> deny: no keeps the policy, yes applies', async t => {
  const before = (await spctl(['--json', 'policy', 'get'])).stdout
  const no = await onTerminal(['policy', 'apply', files.tighter], 'n\n')
  t.is(no.code, 1, no.stdout)
  t.regex(no.stdout, /3 +permit \(rule public\) -> deny \(rule no-tmp\)/)
  t.regex(no.stdout, /would deny 3 of the 10 decisions .*Apply it\? \[y\/N\]/)
  t.regex(no.stdout, /not applied/)
  t.is((await spctl(['--json', 'policy', 'get'])).stdout, before)
  const yes = await onTerminal(['policy', 'apply', files.tighter], 'y\n')
  t.is(yes.code, 0, yes.stdout)
  t.is(JSON.parse((await spctl(['--json', 'policy', 'get'])).stdout).text, TIGHTER)
})

test.serial('--since replays only the decisions of that window, from the member and --from a copy; a bad duration exits 2', async t => {
  await new Promise(resolve => setTimeout(resolve, 6000)) // every decision recorded so far is older than 5 s now
  const late = await client.decide({ guard: '/srv/data', path: '/public/tmp/late', action: 'read', attrs: attrsOf(process.pid, 1000, 1000) })
  t.false(late.ok, 'denied by no-tmp: the test before installed the tighter policy')
  const member = await spctl(['--json', 'policy', 'simulate', files.installed, '--since', '5s'])
  t.is(member.code, 1, member.stderr)
  const m = report(member)
  t.deepEqual([m.replayed, m.changed, m.permitToDeny], [1, 1, 0], 'only the late decision, deny -> permit under the draft')
  t.deepEqual(group(m, 'no-tmp', 'public')?.examples.map(e => e.path), ['/public/tmp/late'])
  t.true(report(await spctl(['--json', 'policy', 'simulate', files.installed, '--since', '1d'])).replayed >= 11, 'a day holds them all')
  const copy = path.join(work, 'audit-late.log')
  fs.copyFileSync(path.join(spd.dir, 'audit.log'), copy)
  const offline = await cli('spctl', ['--json', 'policy', 'simulate', files.installed, '--from', copy, '--since', '5s'], { SPCTL_CONFIG: path.join(work, 'no-session.json') })
  t.is(offline.code, 1, offline.stderr)
  t.deepEqual([report(offline).replayed, report(offline).changed], [1, 1])
  for (const bad of ['0s', '5x', '-1h']) {
    const r = await spctl(['policy', 'simulate', files.installed, '--since', bad])
    t.is(r.code, 2, `--since ${bad}: ${r.stdout}`)
    t.regex(r.stderr, /is not a duration.*PEM_ERR_BAD_ARGUMENT/, bad)
  }
})
