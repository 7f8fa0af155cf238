// What a new user types, through the real spd, spctl and pemfs (issue 21): one process per data dir and guard point,
// a closed output pipe, readable policy diffs and errors that name the user's file, unmount that refuses a non-mount
// and a busy mount, --version, usage errors (exit 2, one line, a hint), help, the status table, and messages that say
// what is wrong and what to do.
import test from 'ava'
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { cli, initSpd, loginSpctl, ROOT, spctlFor, startSpd, stopAll, tempDir, writeFile, type RunResult, type Spd } from '../../scripts/procs'
import { embeddedFiles } from '../../lib/cli/embedded'
import { isMounted, sh } from '../helpers/mounts'

// Serial: each case starts real processes, and the machine's two cores are shared.
let spd: Spd
let spctl: (args: string[]) => Promise<RunResult>
let work: string
const GOOD = 'format: 1\nkeys: [a]\nguards:\n  /g:\n    rules:\n      - id: r1\n        effect: apply_key(a)\n'

// The embedded mount of the pemfs tests below.
const root = tempDir('conventions')
const dir = path.join(root, 'data')
const cfg = path.join(root, 'config')
const ownPids = (): number[] => fs.readdirSync('/proc').filter(p => /^\d+$/.test(p)).map(Number).filter(pid => {
  try { return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(cfg) } catch { return false }
})

test.before(async () => {
  work = tempDir('conventions-work')
  spd = await initSpd('spd-conv')
  await startSpd(spd)
  spctl = await loginSpctl(spd)
  fs.mkdirSync(dir)
})

test.after.always(async () => {
  if (isMounted(dir)) await cli('pemfs', ['unmount', dir, '--lazy', '--config-dir', cfg], {}, 30000)
  if (isMounted(dir)) await sh(`umount -l '${dir}'`)
  for (const pid of ownPids()) process.kill(pid, 'SIGKILL')
  stopAll()
})

/** Runs a CLI whose standard output is closed before it writes (a reader like `head -1` that went away). */
async function withClosedStdout (name: string, args: string[], env: Record<string, string> = {}): Promise<RunResult> {
  return await new Promise(resolve => {
    const child = spawn(process.execPath, [path.join(ROOT, 'bin', `${name}.js`), ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } })
    child.stdout.destroy()
    let stderr = ''
    child.stderr.on('data', (c: Buffer) => { stderr += c.toString('utf8') })
    const timer = setTimeout(() => child.kill('SIGKILL'), 20000)
    child.on('close', code => { clearTimeout(timer); resolve({ code: code ?? 1, stdout: '', stderr }) })
  })
}

const spctlEnv = (): Record<string, string> => ({ SPCTL_CONFIG: path.join(path.dirname(spd.dir), 'spctl.json'), SPCTL_ENDPOINT: `https://${spd.admin}` })

// Finding 3: one spd per data dir.
test.serial('a second spd start on the same data dir is refused with the pid of the one serving it', async t => {
  const r = await cli('spd', ['start', '--data-dir', spd.dir])
  t.is(r.code, 1)
  t.regex(r.stderr, /PEM_ERR_BUSY/)
  t.true(r.stderr.includes(`pid ${spd.proc?.pid ?? -1}`), r.stderr)
  t.notRegex(r.stderr, /EADDRINUSE/)
})

// Finding 4: a closed pipe ends the program quietly.
test.serial('spctl status and spd id into a closed pipe end quietly with exit 0', async t => {
  for (const [name, args, env] of [['spctl', ['status'], spctlEnv()], ['spd', ['id', '--data-dir', spd.dir], {}]] as const) {
    const r = await withClosedStdout(name, [...args], env)
    t.is(r.code, 0, `${name}: ${r.stderr}`)
    t.notRegex(r.stderr, /EPIPE|Error|at /, name)
  }
})

// Finding 5: policy diff and policy errors.
test.serial('policy diff prints readable lines and exits like diff(1): 0 no change, 1 changes, 2 invalid', async t => {
  const p1 = writeFile(work, 'diff-1.yaml', GOOD)
  t.is((await spctl(['policy', 'apply', p1])).code, 0)
  const same = await spctl(['policy', 'diff', p1])
  t.is(same.code, 0, same.stderr)
  t.is(same.stdout, '')
  const changed = await spctl(['policy', 'diff', writeFile(work, 'diff-2.yaml', GOOD + '      - id: r2\n        effect: deny\n')])
  t.is(changed.code, 1, changed.stderr)
  t.regex(changed.stdout, /^\+ rule r2 \(guard \/g #2\)/m)
  t.notRegex(changed.stdout, /\\n|"ok"|"changes"/, 'no JSON, no escaped newlines')
  const invalid = await spctl(['policy', 'diff', writeFile(work, 'diff-bad.yaml', 'format: 1\nguards: [\n')])
  t.is(invalid.code, 2, invalid.stderr)
  t.is(invalid.stdout, '')
})

test.serial('policy errors are printed once, name the user\'s file and line, and suggest the field meant', async t => {
  const file = writeFile(work, 'typo.yaml', 'format: 1\nguards:\n  /g:\n    rules:\n      - id: r1\n        efect: permit\n')
  const r = await spctl(['policy', 'apply', file])
  t.is(r.code, 1)
  t.true(r.stderr.includes(`${file}:6: `), r.stderr)
  t.regex(r.stderr, /efect: unknown field \(did you mean 'effect'\?\)/)
  t.notRegex(r.stderr, /policy:\d/)
  t.is(r.stderr.split('\n').filter(l => l.includes('efect')).length, 1, r.stderr)
  t.notRegex(r.stderr, /effect: is required/, 'the typo is one mistake, reported once')
})

test.serial('one YAML syntax error is one located line', async t => {
  const file = writeFile(work, 'quote.yaml', 'format: 1\nguards:\n  /g:\n    rules:\n      - id: r1\n        effect: "permit\n      - id: r2\n        effect: deny\n')
  const r = await spctl(['policy', 'apply', file])
  t.is(r.code, 1)
  const located = r.stderr.split('\n').filter(l => l.includes(file))
  t.is(located.length, 1, r.stderr)
  t.regex(located[0], /YAML syntax/)
})

test.serial('an unknown spd.json field is named, with the field meant', async t => {
  const s = await initSpd('spd-typo', { weigth: 3, load: { treshold: 1 } })
  const r = await cli('spd', ['start', '--data-dir', s.dir])
  t.is(r.code, 1)
  t.regex(r.stderr, /unknown field 'weigth' \(did you mean 'weight'\?\)/)
  t.regex(r.stderr, /unknown field 'load\.treshold' \(did you mean 'threshold'\?\)/)
  t.notRegex(r.stderr, /must NOT have additional properties/)
})

// Finding 8: --version, usage errors, help, the status table, enroll's name.
test.serial('--version on spd, spctl and pemfs', async t => {
  const version = (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version
  for (const name of ['spd', 'spctl', 'pemfs'] as const) {
    const r = await cli(name, ['--version'])
    t.is(r.code, 0, name)
    t.is(r.stdout, `${version}\n`, name)
  }
})

test.serial('usage errors exit 2 with one line and a hint, not the whole help', async t => {
  const cases: Array<[('spd' | 'spctl' | 'pemfs'), string[], RegExp]> = [
    ['spctl', ['policy', 'bogus'], /unknown command 'bogus'.*run 'spctl policy --help'/],
    ['spctl', ['policy'], /needs a command: get, apply, diff.*run 'spctl policy --help'/],
    ['spctl', ['stauts'], /did you mean 'status'.*run 'spctl --help'/],
    ['spctl', ['policy', 'apply'], /missing required argument 'file'.*run 'spctl policy apply --help'/],
    ['pemfs', ['mount'], /missing required argument 'dir'.*run 'pemfs mount --help'/],
    ['spd', ['start', '--data-dir', work, '--bogus'], /unknown option '--bogus'.*run 'spd start --help'/]
  ]
  for (const [name, args, expected] of cases) {
    const r = await cli(name, args)
    t.is(r.code, 2, `${name} ${args.join(' ')}: ${r.stderr}`)
    t.is(r.stderr.trimEnd().split('\n').length, 1, r.stderr)
    t.regex(r.stderr, expected)
  }
})

test.serial('subcommand help shows the global options; spctl help policy apply is the help of policy apply', async t => {
  const sub = await cli('spctl', ['policy', 'apply', '--help'])
  t.is(sub.code, 0)
  t.regex(sub.stdout, /--endpoint <url>/)
  t.regex(sub.stdout, /--json/)
  const help = await cli('spctl', ['help', 'policy', 'apply'])
  t.is(help.code, 0, help.stderr)
  t.regex(help.stdout, /^Usage: spctl policy apply \[options\] <file>/)
})

test.serial('spctl status is a table without JSON', async t => {
  const r = await spctl(['status'])
  t.is(r.code, 0, r.stderr)
  t.notRegex(r.stdout, /[{}]/)
  t.regex(r.stdout, /^load\s+\d+% \(cpu \d+%, nic \d+%, crypto \d+%\)$/m)
  t.regex(r.stdout, /^counters\s+permit \d+, deny \d+/m)
})

test.serial('pemfs enroll reports the name the cluster recorded; enrolling an enrolled host says so', async t => {
  const token = JSON.parse((await spctl(['--json', 'host', 'add', 'web-1'])).stdout).token as string
  const hostDir = path.join(work, 'host-web-1')
  const e = await cli('pemfs', ['enroll', '--cluster', spd.listen, '--token', token, '--config-dir', hostDir, '--json'])
  t.is(e.code, 0, e.stderr)
  t.is(JSON.parse(e.stdout).name, 'web-1')
  const again = await cli('pemfs', ['enroll', '--cluster', spd.listen, '--token', token, '--config-dir', hostDir])
  t.is(again.code, 1)
  t.regex(again.stderr, /already enrolled as web-1/)
  t.notRegex(again.stderr, /session protocol/)
  fs.renameSync(path.join(hostDir, 'cluster.json'), path.join(hostDir, 'cluster.json.moved'))
  const token2 = JSON.parse((await spctl(['--json', 'host', 'add', 'web-1b'])).stdout).token as string
  const lost = await cli('pemfs', ['enroll', '--cluster', spd.listen, '--token', token2, '--config-dir', hostDir])
  t.is(lost.code, 1)
  const advice = /enrolled already .*cluster\.json is missing: spctl host remove ([0-9a-f]+) first/.exec(lost.stderr)
  t.truthy(advice, lost.stderr)
  t.is((await spctl(['host', 'remove', advice?.[1] ?? 'none'])).code, 0, 'the advice works')
  const renewed = await cli('pemfs', ['enroll', '--cluster', spd.listen, '--token', token2, '--config-dir', hostDir, '--json'])
  t.is(renewed.code, 0, renewed.stderr)
  t.is(JSON.parse(renewed.stdout).name, 'web-1b')
})

// Finding 6: a directory the policy does not guard.
test.serial('pemfs mount refuses a directory the policy has no guard point for; --force mounts it with a warning in the log', async t => {
  t.is((await spctl(['policy', 'apply', writeFile(work, 'guard-g.yaml', GOOD)])).code, 0)
  const token = JSON.parse((await spctl(['--json', 'host', 'add', 'web-unguarded'])).stdout).token as string
  const hostDir = path.join(work, 'host-unguarded')
  t.is((await cli('pemfs', ['enroll', '--cluster', spd.listen, '--token', token, '--config-dir', hostDir])).code, 0)
  const plain = path.join(root, 'unguarded')
  fs.mkdirSync(plain)
  const refused = await cli('pemfs', ['mount', plain, '--config-dir', hostDir], {}, 30000)
  t.is(refused.code, 1, refused.stderr)
  t.true(refused.stderr.includes(`has no guard point ${plain}`), refused.stderr)
  t.regex(refused.stderr, /--force/)
  t.false(isMounted(plain), 'nothing mounted')
  const forced = await cli('pemfs', ['mount', plain, '--force', '--config-dir', hostDir, '--json'], {}, 30000)
  t.is(forced.code, 0, forced.stderr)
  try {
    t.true(isMounted(plain))
    const ls = await sh(`ls '${plain}'`, { timeoutMs: 20000 })
    t.not(ls.code, 0)
    t.regex(ls.stderr, /Permission denied/)
    const log = fs.readFileSync(JSON.parse(forced.stdout).log as string, 'utf8')
    t.regex(log, /warning: the cluster's policy \(version \d+\) has no guard point/)
    t.is(log.split('\n').filter(l => l.includes('every access is denied')).length, 1, `the denial is logged once a minute at most: ${log}`)
  } finally {
    const u = await cli('pemfs', ['unmount', plain, '--lazy', '--config-dir', hostDir], {}, 30000)
    t.is(u.code, 0, u.stderr)
  }
})

// Finding 9: messages that say what is wrong and what to do.
test.serial('spd init --listen PORT says what HOST:PORT means, without a regex', async t => {
  const r = await cli('spd', ['init', '--data-dir', path.join(work, 'never'), '--name', 'x', '--listen', '7730'])
  t.is(r.code, 2)
  t.regex(r.stderr, /--listen 7730 is not HOST:PORT.*127\.0\.0\.1:7730/)
  t.notRegex(r.stderr, /\[0-9\]|\^/)
})

test.serial('an identity that does not open the store names both files', async t => {
  const other = await initSpd('spd-other')
  const copy = path.join(work, 'mixed')
  fs.cpSync(spd.dir, copy, { recursive: true })
  fs.copyFileSync(path.join(other.dir, 'identity.key'), path.join(copy, 'identity.key'))
  const r = await cli('spd', ['id', '--data-dir', copy])
  t.is(r.code, 1)
  t.true(r.stderr.includes(path.join(copy, 'store.bin')) && r.stderr.includes(path.join(copy, 'identity.key')), r.stderr)
  t.regex(r.stderr, /different members/)
})

test.serial('a wrong --endpoint is unreachable, not "not logged in"', async t => {
  const r = await cli('spctl', ['--endpoint', 'https://127.0.0.1:1', 'status'], spctlEnv())
  t.is(r.code, 1)
  t.regex(r.stderr, /PEM_ERR_UNREACHABLE/)
  t.regex(r.stderr, /check --endpoint/)
  t.notRegex(r.stderr, /not logged in/)
  const fresh = spctlFor({ ...spd, dir: path.join(work, 'nobody', 'data') })
  const notYet = await fresh(['status'])
  t.is(notYet.code, 1)
  t.regex(notYet.stderr, /not logged in to .*: run spctl login/, 'reachable without a session: log in')
})

// Findings 3, 4, 6 and 8 on a real (embedded) mount.
test.serial('one pemfs per guard point; status into a closed pipe; check finds its guard; unmount refuses a busy mount unless --lazy', async t => {
  const never = await cli('pemfs', ['unmount', path.join(root, 'never-mounted'), '--config-dir', cfg])
  t.is(never.code, 1)
  t.regex(never.stderr, /is not a pemfs mount/)

  const m = await cli('pemfs', ['mount', dir, '--embedded', '--config-dir', cfg, '--json'], {}, 30000)
  t.is(m.code, 0, m.stderr)
  const daemon = JSON.parse(m.stdout).pid as number
  const second = await cli('pemfs', ['mount', dir, '--embedded', '--config-dir', cfg], {}, 30000)
  t.is(second.code, 1)
  t.true(second.stderr.includes(`pid ${daemon}`), second.stderr)
  const elsewhere = await cli('pemfs', ['mount', dir, '--foreground', '--config-dir', path.join(root, 'other-config')], {}, 30000)
  t.is(elsewhere.code, 1)
  t.true(elsewhere.stderr.includes(`pid ${daemon}`), `another config dir, same guard point: ${elsewhere.stderr}`)

  const status = await withClosedStdout('pemfs', ['status', dir, '--config-dir', cfg])
  t.is(status.code, 0, status.stderr)
  t.notRegex(status.stderr, /EPIPE|Error/)

  const check = await cli('pemfs', ['check', path.join(dir, 'some', 'file'), '--config-dir', embeddedFiles(cfg, dir).host, '--json'])
  t.is(check.code, 0, check.stderr)
  t.is(JSON.parse(check.stdout).decision, 'permit')

  const holder = spawn('sleep', ['60'], { cwd: dir, stdio: 'ignore' })
  try {
    const busy = await cli('pemfs', ['unmount', dir, '--config-dir', cfg], {}, 30000)
    t.is(busy.code, 1)
    t.regex(busy.stderr, /PEM_ERR_BUSY/)
    t.true(busy.stderr.includes(`pid ${holder.pid ?? -1} (sleep) has its working directory`), busy.stderr)
    t.true(isMounted(dir), 'still mounted')
    // Another config dir than the mount's: the guard point's lock still names the daemon to stop.
    const lazy = await cli('pemfs', ['unmount', dir, '--lazy', '--config-dir', path.join(root, 'other-config'), '--json'], {}, 30000)
    t.is(lazy.code, 0, lazy.stderr)
    t.false(isMounted(dir))
    t.is(JSON.parse(lazy.stdout).daemon, daemon)
    t.throws(() => process.kill(daemon, 0), undefined, 'the daemon is gone')
  } finally { holder.kill('SIGKILL') }
})
