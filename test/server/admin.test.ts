// Admin API through spctl against a real spd: logins, expiring tokens, key pinning, policy diff, keys, hosts, bad input.
import test from 'ava'
import fs from 'node:fs'
import path from 'node:path'
import { cli, initSpd, loginSpctl, spctlFor, startSpd, stopAll, stopSpd, tempDir, writeFile, type Spd } from '../../scripts/procs'

let spd: Spd
const work = tempDir('admin')
test.before(async () => {
  spd = await initSpd('spd-admin')
  await startSpd(spd)
})
test.after.always(async () => { if (spd !== undefined) await stopSpd(spd); stopAll() })

test.serial('calls without a login, or with a wrong password, are refused with PEM_ERR_AUTH', async t => {
  const spctl = spctlFor(spd)
  const anon = await spctl(['status'])
  t.is(anon.code, 1); t.regex(anon.stderr, /PEM_ERR_AUTH/)
  const wrong = await spctl(['login', '--password-file', writeFile(work, 'wrong', 'not the password\n')])
  t.is(wrong.code, 1); t.regex(wrong.stderr, /PEM_ERR_AUTH/)
  const unknown = await spctl(['login', '--user', 'mallory', '--password-file', spd.passwordFile])
  t.is(unknown.code, 1); t.regex(unknown.stderr, /PEM_ERR_AUTH/)
})

test('a session token expires', async t => {
  const short = await initSpd('spd-ttl', { load: { threshold: 1 }, adminTokenTtlS: 5 })
  await startSpd(short)
  t.teardown(async () => { await stopSpd(short) })
  const spctl = await loginSpctl(short)
  t.is((await spctl(['status'])).code, 0)
  await new Promise(resolve => setTimeout(resolve, 5500))
  const r = await spctl(['status'])
  t.is(r.code, 1); t.regex(r.stderr, /expired/)
})

test.serial('spctl pins the member key: a different --server-id is refused before anything is sent', async t => {
  const spctl = spctlFor(spd)
  const r = await spctl(['--server-id', 'ab'.repeat(32), 'login', '--password-file', spd.passwordFile])
  t.is(r.code, 1); t.regex(r.stderr, /PEM_ERR_PEER_KEY/)
})

test.serial('policy diff, key create/rotate/list, host add/list/remove', async t => {
  const spctl = await loginSpctl(spd)
  const p1 = 'format: 1\nkeys: [a]\nguards:\n  /g:\n    rules:\n      - id: r1\n        effect: apply_key(a)\n'
  t.is((await spctl(['policy', 'apply', writeFile(work, 'p1.yaml', p1)])).code, 0)
  const p2 = p1 + '      - id: r2\n        effect: deny\n'
  const diff = await spctl(['policy', 'diff', writeFile(work, 'p2.yaml', p2)])
  t.is(diff.code, 1, diff.stderr); t.regex(diff.stdout, /r2/) // 1: there are changes (as diff(1))
  const keys = JSON.parse((await spctl(['--json', 'key', 'list'])).stdout) as Array<{ name: string, version: number }>
  t.deepEqual(keys.map(k => k.name), ['a'], 'the policy created its key')
  t.is(JSON.parse((await spctl(['--json', 'key', 'rotate', 'a'])).stdout).version, 2)
  const dup = await spctl(['key', 'create', 'a'])
  t.is(dup.code, 1); t.regex(dup.stderr, /PEM_ERR_BUSY/)
  const badName = await spctl(['key', 'create', 'no spaces please'])
  t.is(badName.code, 2); t.regex(badName.stderr, /PEM_ERR_BAD_ARGUMENT/)
  await spctl(['host', 'add', 'web-1'])
  const tokenOnly = JSON.parse((await spctl(['--json', 'host', 'list'])).stdout)
  t.deepEqual(tokenOnly, [], 'a token is not an enrolled host')
  const missing = await spctl(['host', 'remove', 'nosuchhost'])
  t.is(missing.code, 1); t.regex(missing.stderr, /PEM_ERR_NOT_FOUND/)
})

test.serial('bad command lines exit non-zero with a one-line reason', async t => {
  const noArgs = await cli('spd', ['init'])
  t.not(noArgs.code, 0); t.regex(noArgs.stderr, /required option/)
  const badListen = await cli('spd', ['init', '--data-dir', path.join(work, 'x'), '--name', 'x', '--listen', 'nonsense', '--admin-password-file', spd.passwordFile])
  t.not(badListen.code, 0); t.regex(badListen.stderr, /--listen nonsense is not HOST:PORT.*\(PEM_ERR_BAD_ARGUMENT\)/)
  t.false(fs.existsSync(path.join(work, 'x')), 'nothing was created')
  const again = await cli('spd', ['init', '--data-dir', spd.dir, '--name', 'x', '--listen', '127.0.0.1:1', '--admin-password-file', spd.passwordFile])
  t.not(again.code, 0); t.regex(again.stderr, /already holds a member/)
  const unknownFlag = await cli('spctl', ['--frobnicate', 'status'])
  t.not(unknownFlag.code, 0); t.regex(unknownFlag.stderr, /unknown option/)
  const broken = tempDir('broken')
  fs.writeFileSync(path.join(broken, 'spd.json'), '{"name": 5}')
  const start = await cli('spd', ['start', '--data-dir', broken])
  t.not(start.code, 0); t.regex(start.stderr, /PEM_ERR_BAD_CONFIG/)
})
