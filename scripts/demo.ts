// `npm run demo`: the whole story so far on loopback, each step printed with what it saw. Exits non-zero when a
// step fails, so it is a test of its own. Everything runs in a temp dir and is stopped and removed at the end.
import { execFile } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { attrsOf } from '../lib/pem-fs/attrs'
import { ClusterClient } from '../lib/pem-fs/client'
import { hostIdentity, readCluster } from '../lib/pem-fs/host-config'
import { cli, initSpd, loginSpctl, startSpd, stopAll, stopSpd, tempDir, writeFile, type Spd } from './procs'

const NODE_SHA256 = crypto.createHash('sha256').update(fs.readFileSync(process.execPath)).digest('hex')

/** The demo policy: finance data only for the node binary (by its SHA-256), encrypted; a closed dir; the rest encrypted. */
function policyFor (guard: string): string {
  return `# demo policy (docs/POLICY.md)
format: 1
keys: [finance, general]
guards:
  ${guard}:
    rules:
      - id: finance-node-only
        resources: { dirs: [/finance] }
        processes: { signatures: ["sha256:${NODE_SHA256}"] }
        effect: apply_key(finance)
        compression: zstd
      - id: finance-closed
        resources: { dirs: [/finance] }
        effect: deny
        audit: true
      - id: secret-closed
        resources: { dirs: [/secret] }
        effect: deny
        audit: true
      - id: public-readonly
        resources: { dirs: [/public] }
        actions: [read, list, getattr]
        effect: permit
      - id: everything-else-encrypted
        effect: apply_key(general)
`
}

let step = 0
function say (what: string): void { process.stdout.write(`\n[${++step}] ${what}\n`) }
function saw (what: string): void { process.stdout.write(`    ${what}\n`) }
function show (text: string): void { for (const line of text.trimEnd().split('\n')) saw(line) }
function expect (cond: boolean, what: string): void {
  if (!cond) throw new Error(`step ${step} failed: ${what}`)
  saw(`ok: ${what}`)
}

/** A command in its own process (never touch the mount from this process's own event loop synchronously). */
async function run (cmd: string, args: string[]): Promise<{ code: number, out: string }> {
  return await new Promise(resolve => {
    execFile(cmd, args, { timeout: 20000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1
      resolve({ code, out: (stdout + stderr).trim() })
    })
  })
}
const nodeDo = async (js: string): Promise<{ code: number, out: string }> => await run(process.execPath, ['-e', js])

async function main (): Promise<void> {
  const work = tempDir('demo')
  const guard = path.join(work, 'data') // the directory pemfs guards in place
  fs.mkdirSync(guard)
  fs.writeFileSync(path.join(guard, 'notes.txt'), 'plaintext left from before pemfs\n')
  const POLICY = policyFor(guard)
  let spd: Spd | undefined
  let client: ClusterClient | undefined
  let hostDir = ''
  let mounted = false
  try {
    say('spd init: a member with a key pair, an encrypted store and an admin')
    spd = await initSpd('spd-a')
    saw(`data dir ${spd.dir}, hosts on ${spd.listen}, admin on ${spd.admin}`)
    show((await cli('spd', ['id', '--data-dir', spd.dir])).stdout)

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
    expect(bad.code !== 0 && /:\d+:/.test(bad.stderr), 'refused, naming the line')

    say('spctl host add, then pemfs enroll with the one-time token')
    const added = JSON.parse((await spctl(['--json', 'host', 'add', 'demo-host'])).stdout) as { token: string }
    saw(`token ${added.token.slice(0, 20)}… (one-time, pins member ${added.token.slice(-64, -48)}…)`)
    hostDir = path.join(work, 'host')
    const enrolled = await cli('pemfs', ['enroll', '--cluster', spd.listen, '--token', added.token, '--config-dir', hostDir, '--name', 'demo-host'])
    show(enrolled.stdout)
    expect(enrolled.code === 0, 'host enrolled')
    const reuse = await cli('pemfs', ['enroll', '--cluster', spd.listen, '--token', added.token, '--config-dir', path.join(work, 'thief')])
    expect(reuse.code !== 0, `the token cannot be used twice (${reuse.stderr.trim()})`)

    say('decisions over the pinned TLS channel, with load and weight in every reply')
    client = new ClusterClient(hostIdentity(hostDir), readCluster(hostDir).servers)
    const me = attrsOf(process.pid, process.getuid?.() ?? 0, process.getgid?.() ?? 0)
    for (const [p, action] of [['/finance/q3.txt', 'write'], ['/public/readme.txt', 'read'], ['/public/readme.txt', 'write'], ['/secret/plans.txt', 'read']] as const) {
      const d = await client.decide({ guard, path: p, action, attrs: me })
      saw(`${action.padEnd(5)} ${p.padEnd(20)} → ${d.ok ? 'permit' : 'deny  '} rule=${d.rule ?? '(default deny)'} key=${d.key ?? '-'} bypass=${String(d.bypass)} load=${d.load.total} weight=${d.weight} pv=${d.pv}`)
    }
    client.close(); client = undefined

    say(`pemfs mount ${guard}: the directory is guarded in place`)
    const underneath = fs.openSync(guard, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY) // to look under the mount later
    const m = await cli('pemfs', ['mount', guard, '--config-dir', hostDir], {}, 30000)
    show(m.stdout + m.stderr)
    expect(m.code === 0, 'mounted')
    mounted = true
    show((await run('sh', ['-c', `grep ' ${guard} ' /proc/mounts`])).out)

    say('a permitted process (node, by its SHA-256) writes finance data; the cluster encrypts it')
    const secret = 'Q3 revenue: 4,242,000 EUR — confidential\n'
    const w = await nodeDo(`const fs=require('fs');fs.mkdirSync(${JSON.stringify(guard + '/finance')});fs.writeFileSync(${JSON.stringify(guard + '/finance/q3.txt')},${JSON.stringify(secret.repeat(100))});console.log(fs.readFileSync(${JSON.stringify(guard + '/finance/q3.txt')},'utf8').split('\\n')[0])`)
    show(w.out)
    expect(w.code === 0 && w.out.startsWith('Q3 revenue'), 'node wrote and read it back through the mount')

    say('another program (cat) is denied by the policy: EACCES')
    const c = await run('cat', [path.join(guard, 'finance/q3.txt')])
    show(c.out)
    expect(c.code !== 0 && /Permission denied/.test(c.out), 'cat gets Permission denied')
    const s2 = await run('mkdir', [path.join(guard, 'secret')])
    show(s2.out)
    expect(s2.code !== 0, 'the secret dir cannot be created (mkdir is denied)')

    say('other files are encrypted under key general; ls, stat and sizes work as usual')
    const g = await run('sh', ['-c', `echo 'meeting at 10' > ${guard}/todo.txt && cat ${guard}/todo.txt && ls -l ${guard} | tail -n +2`])
    show(g.out)
    expect(g.code === 0 && g.out.includes('meeting at 10'), 'written and read back')

    say('what is on disk underneath the mount: ciphertext')
    const raw = fs.readFileSync(`/proc/self/fd/${underneath}/finance/q3.txt`)
    saw(`finance/q3.txt underneath: ${raw.length} bytes, starts ${raw.subarray(0, 4).toString('latin1')}…, last record ends …${raw.subarray(raw.length - 44, raw.length - 12).toString('hex')}`)
    expect(raw.indexOf('Q3 revenue') === -1 && raw.subarray(0, 4).toString('latin1') === 'PEMF', 'no plaintext, PEMF header')
    const rawTodo = fs.readFileSync(`/proc/self/fd/${underneath}/todo.txt`)
    expect(rawTodo.indexOf('meeting') === -1, `todo.txt underneath is ${rawTodo.length} bytes of ciphertext`)
    fs.closeSync(underneath)

    say('a policy change bumps the version; the mount adopts it on its next request')
    const p2 = POLICY.replace('      - id: public-readonly', '      - id: drafts-closed\n        resources: { dirs: [/drafts] }\n        effect: deny\n      - id: public-readonly')
    const applied2 = await spctl(['--json', 'policy', 'apply', writeFile(work, 'policy2.yaml', p2)])
    saw(`installed version ${String(JSON.parse(applied2.stdout).version)}`)
    const d2 = await run('mkdir', [path.join(guard, 'drafts')])
    expect(d2.code !== 0, `mkdir drafts is now denied (${d2.out})`)

    say('pemfs status: the server table of this host')
    show((await cli('pemfs', ['status', guard, '--config-dir', hostDir])).stdout)

    say('spctl status and the audit log')
    show((await spctl(['status'])).stdout)
    const tail = (await spctl(['audit', 'tail', '-n', '3'])).stdout
    show(tail)
    expect(tail.includes('"kind":"decision"'), 'decisions are audited')

    say('unmount; the files stay, encrypted; the store on disk is sealed too')
    const u = await cli('pemfs', ['unmount', guard, '--config-dir', hostDir], {}, 30000)
    mounted = u.code !== 0
    expect(u.code === 0, 'unmounted')
    expect(fs.readFileSync(path.join(guard, 'finance/q3.txt')).indexOf('Q3 revenue') === -1, 'finance/q3.txt is ciphertext')
    expect(fs.readFileSync(path.join(guard, 'notes.txt'), 'utf8').startsWith('plaintext left'), 'the file from before is untouched')
    const store = fs.readFileSync(path.join(spd.dir, 'store.bin'))
    expect(store.indexOf('finance-node-only') === -1 && store.indexOf('demo-host') === -1, `no policy or host names in ${store.length} bytes of store.bin`)

    say('stop')
    expect(await stopSpd(spd) === 0, 'SIGTERM: clean exit')
    process.stdout.write('\ndemo finished: every step passed\n')
  } finally {
    client?.close()
    if (mounted) {
      await cli('pemfs', ['unmount', guard, '--config-dir', hostDir], {}, 30000)
      await run('umount', ['-l', guard])
    }
    if (spd !== undefined) await stopSpd(spd)
    stopAll()
    fs.rmSync(work, { recursive: true, force: true })
    if (spd !== undefined) fs.rmSync(path.dirname(spd.dir), { recursive: true, force: true })
  }
}

main().catch(err => { process.stderr.write(`\ndemo FAILED: ${(err as Error).message}\n`); stopAll(); process.exit(1) })
