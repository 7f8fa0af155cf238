// `npm run demo`: the whole story so far on loopback, each step printed with what it saw. Exits non-zero when a
// step fails, so it is a test of its own. Everything runs in a temp dir and is stopped and removed at the end.
import fs from 'node:fs'
import path from 'node:path'
import { attrsOf } from '../lib/pem-fs/attrs'
import { ClusterClient } from '../lib/pem-fs/client'
import { hostIdentity, readCluster } from '../lib/pem-fs/host-config'
import { cli, initSpd, loginSpctl, startSpd, stopAll, stopSpd, tempDir, writeFile, type Spd } from './procs'

const POLICY = `# demo policy (docs/POLICY.md)
format: 1
keys: [finance]
guards:
  /srv/data:
    rules:
      - id: finance-encrypted
        resources: { dirs: [/finance] }
        users: { uids: [0] }
        effect: apply_key(finance)
        compression: zstd
      - id: secret-closed
        resources: { dirs: [/secret] }
        effect: deny
        audit: true
      - id: public-readonly
        resources: { dirs: [/public] }
        actions: [read, list, getattr]
        effect: permit
`

let step = 0
function say (what: string): void { process.stdout.write(`\n[${++step}] ${what}\n`) }
function saw (what: string): void { process.stdout.write(`    ${what}\n`) }
function show (text: string): void { for (const line of text.trimEnd().split('\n')) saw(line) }
function expect (cond: boolean, what: string): void {
  if (!cond) throw new Error(`step ${step} failed: ${what}`)
  saw(`ok: ${what}`)
}

async function main (): Promise<void> {
  const work = tempDir('demo')
  let spd: Spd | undefined
  let client: ClusterClient | undefined
  try {
    say('spd init: a member with a key pair, an encrypted store and an admin')
    spd = await initSpd('spd-a')
    saw(`data dir ${spd.dir}, hosts on ${spd.listen}, admin on ${spd.admin}`)
    const id = await cli('spd', ['id', '--data-dir', spd.dir])
    process.stdout.write(id.stdout)

    say('spd start')
    await startSpd(spd)
    saw('serving')

    say('spctl login (pins the member key on first use), then apply a policy')
    const spctl = await loginSpctl(spd)
    const applied = await spctl(['policy', 'apply', writeFile(work, 'policy.yaml', POLICY)])
    show(applied.stdout)
    expect(applied.code === 0, 'policy applied')

    say('a bad policy is refused with its line, and the old one stays')
    const bad = await spctl(['policy', 'apply', writeFile(work, 'bad.yaml', POLICY.replace('apply_key(finance)', 'apply_key(nokey)'))])
    show(bad.stderr)
    expect(bad.code !== 0 && /:10:/.test(bad.stderr), 'refused, naming line 10')

    say('spctl host add, then pemfs enroll with the one-time token')
    const added = JSON.parse((await spctl(['--json', 'host', 'add', 'demo-host'])).stdout) as { token: string }
    saw(`token ${added.token.slice(0, 20)}… (one-time, pins ${added.token.slice(-64, -48)}…)`)
    const hostDir = path.join(work, 'host')
    const enrolled = await cli('pemfs', ['enroll', '--cluster', spd.listen, '--token', added.token, '--config-dir', hostDir, '--name', 'demo-host'])
    show(enrolled.stdout)
    expect(enrolled.code === 0, 'host enrolled')
    const reuse = await cli('pemfs', ['enroll', '--cluster', spd.listen, '--token', added.token, '--config-dir', path.join(work, 'thief')])
    expect(reuse.code !== 0, `the token cannot be used twice (${reuse.stderr.trim()})`)

    say('decisions over the pinned TLS channel, with load and weight in every reply')
    client = new ClusterClient(hostIdentity(hostDir), readCluster(hostDir).servers)
    const me = attrsOf(process.pid, process.getuid?.() ?? 0, process.getgid?.() ?? 0)
    for (const [p, action] of [['/finance/q3.xlsx', 'write'], ['/public/readme.txt', 'read'], ['/public/readme.txt', 'write'], ['/secret/plans.txt', 'read']] as const) {
      const d = await client.decide({ guard: '/srv/data', path: p, action, attrs: me })
      saw(`${action.padEnd(5)} ${p.padEnd(20)} → ${d.ok ? 'permit' : 'deny  '} rule=${d.rule ?? '(default deny)'} key=${d.key ?? '-'} bypass=${String(d.bypass)} load=${d.load.total} weight=${d.weight} pv=${d.pv}`)
    }
    const fin = await client.decide({ guard: '/srv/data', path: '/finance/q3.xlsx', action: 'write', attrs: me })
    expect(fin.ok && fin.key === 'finance' && !fin.bypass, 'finance data goes through the cluster under key finance')
    const sec = await client.decide({ guard: '/srv/data', path: '/secret/plans.txt', action: 'read', attrs: me })
    expect(!sec.ok && sec.rule === 'secret-closed', 'the secret dir is denied by its rule')

    say('a policy change bumps the version; the host adopts it on its next request')
    const before = client.pv
    await spctl(['key', 'create', 'hr'])
    const after = await client.decide({ guard: '/srv/data', path: '/public/readme.txt', action: 'read', attrs: me })
    expect(after.pv > before, `version ${before} → ${after.pv}`)

    say('pemfs check: the same question from the command line, as the calling process')
    const check = await cli('pemfs', ['check', '/srv/data/secret/x', '--guard', '/srv/data', '--config-dir', hostDir])
    show(check.stdout)
    expect(check.code === 3, 'denied (exit code 3)')

    say('spctl status and the audit log')
    show((await spctl(['status'])).stdout)
    const tail = (await spctl(['audit', 'tail', '-n', '4'])).stdout
    show(tail)
    expect(tail.includes('"kind":"decision"'), 'decisions are audited')

    say('the store on disk is sealed')
    const store = fs.readFileSync(path.join(spd.dir, 'store.bin'))
    expect(store.indexOf('finance-encrypted') === -1 && store.indexOf('demo-host') === -1, `no policy or host names in ${store.length} bytes of store.bin`)

    say('stop')
    client.close(); client = undefined
    expect(await stopSpd(spd) === 0, 'SIGTERM: clean exit')
    process.stdout.write('\ndemo finished: every step passed\n')
  } finally {
    client?.close()
    if (spd !== undefined) await stopSpd(spd)
    stopAll()
    fs.rmSync(work, { recursive: true, force: true })
    if (spd !== undefined) fs.rmSync(path.dirname(spd.dir), { recursive: true, force: true })
  }
}

main().catch(err => { process.stderr.write(`\ndemo FAILED: ${(err as Error).message}\n`); stopAll(); process.exit(1) })
