// `npm run demo`: the whole story on loopback — a 3-member cluster grown by sponsorship, a host, a guarded directory,
// policy, encryption, denial, a cluster-wide change, a member killed mid-write — each step printed with what it saw.
// Exits non-zero when a step fails, so it is a test of its own. Everything runs in temp dirs, stopped and removed at the end.
import { execFile } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { attrsOf } from '../lib/pem-fs/attrs'
import { ClusterClient } from '../lib/pem-fs/client'
import { hostIdentity, readCluster } from '../lib/pem-fs/host-config'
import { Progress } from '../lib/cli/progress'
import { allInstalled, clusterStatus, installedVersion, join, type Member } from './cluster'
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
async function run (cmd: string, args: string[], timeoutMs = 20000): Promise<{ code: number, out: string }> {
  return await new Promise(resolve => {
    execFile(cmd, args, { timeout: timeoutMs }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1
      resolve({ code, out: (stdout + stderr).trim() })
    })
  })
}
const nodeDo = async (js: string, timeoutMs?: number): Promise<{ code: number, out: string }> => await run(process.execPath, ['-e', js], timeoutMs)

/** The members table as `spctl member list` prints it, from one member's point of view. */
async function showMembers (m: Member): Promise<void> { show((await m.spctl(['member', 'list'])).stdout) }

async function main (): Promise<void> {
  const work = tempDir('demo')
  const guard = path.join(work, 'data') // the directory pemfs guards in place
  fs.mkdirSync(guard)
  fs.writeFileSync(path.join(guard, 'notes.txt'), 'plaintext left from before pemfs\n')
  const POLICY = policyFor(guard)
  const members: Member[] = []
  let client: ClusterClient | undefined
  let hostDir = ''
  let mounted = false
  try {
    say('spd init: the first member — a key pair, an encrypted store, an admin, a cluster of one')
    const first: Spd = await initSpd('spd-a')
    saw(`data dir ${first.dir}; hosts on ${first.listen}, members on ${first.cluster}, admin on ${first.admin}`)
    show((await cli('spd', ['id', '--data-dir', first.dir])).stdout)
    await startSpd(first)
    const firstId = (JSON.parse((await cli('spd', ['id', '--data-dir', first.dir, '--json'])).stdout) as { id: string }).id
    members.push({ ...first, spctl: await loginSpctl(first), id: firstId })
    saw('serving; spctl logged in (the member key is pinned on first use)')

    say('grow the cluster one sponsored key at a time: spctl member add on spd-a, spd trust + spd start on the new member')
    for (const name of ['spd-b', 'spd-c']) {
      const m = await join(members[0], name)
      members.push(m)
      saw(`${name} joined (its key sponsored by spd-a, its installed version now ${String(await installedVersion(m))})`)
    }
    await showMembers(members[0])
    expect((await clusterStatus(members[0])).members.length === 3, 'three members, each heard from')

    say('apply a policy on spd-a: every member installs it, with one digest')
    const spctl = members[0].spctl
    const applied = await spctl(['--json', 'policy', 'apply', writeFile(work, 'policy.yaml', POLICY)])
    expect(applied.code === 0, `policy applied as version ${String(JSON.parse(applied.stdout || '{}').version)}`)
    const digest = await allInstalled(members, JSON.parse(applied.stdout).version as number)
    saw(`installed on spd-a, spd-b, spd-c with digest ${digest.slice(0, 16)}…`)

    say('a bad policy is refused with its line, and the old one stays')
    const bad = await spctl(['policy', 'apply', writeFile(work, 'bad.yaml', POLICY.replace('apply_key(finance)', 'apply_key(nokey)'))])
    show(bad.stderr)
    expect(bad.code !== 0 && /:\d+:/.test(bad.stderr), 'refused, naming the line')

    say('spctl host add, then pemfs enroll with the one-time token: the host learns all three servers')
    const added = JSON.parse((await spctl(['--json', 'host', 'add', 'demo-host'])).stdout) as { token: string }
    saw(`token ${added.token.slice(0, 20)}… (one-time, pins member ${added.token.slice(-64, -48)}…)`)
    hostDir = path.join(work, 'host')
    const enrolled = await cli('pemfs', ['enroll', '--cluster', first.listen, '--token', added.token, '--config-dir', hostDir, '--name', 'demo-host'])
    show(enrolled.stdout)
    expect(enrolled.code === 0 && readCluster(hostDir).servers.length === 3, 'host enrolled with 3 servers')
    const reuse = await cli('pemfs', ['enroll', '--cluster', first.listen, '--token', added.token, '--config-dir', path.join(work, 'thief')])
    expect(reuse.code !== 0 && reuse.stderr.includes('PEM_ERR_BAD_TOKEN'), `the token cannot be used twice (${reuse.stderr.trim()})`)

    say('decisions over the pinned TLS channels; the host picks the server from the load and weight in every reply')
    client = new ClusterClient(hostIdentity(hostDir), readCluster(hostDir).servers)
    const names = new Map(client.servers.map(x => [x.entry.id, x.entry.name]))
    const me = attrsOf(process.pid, process.getuid?.() ?? 0, process.getgid?.() ?? 0)
    for (const [p, action] of [['/finance/q3.txt', 'write'], ['/public/readme.txt', 'read'], ['/public/readme.txt', 'write'], ['/secret/plans.txt', 'read']] as const) {
      const d = await client.decide({ guard, path: p, action, attrs: me })
      saw(`${action.padEnd(5)} ${p.padEnd(20)} → ${d.ok ? 'permit' : 'deny  '} rule=${d.rule ?? '(default deny)'} key=${d.key ?? '-'} bypass=${String(d.bypass)} server=${names.get(d.server) ?? '?'} load=${d.load.total} pv=${d.pv}`)
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

    say('a policy change on spd-b: every member installs it together; the mount adopts it on its next request')
    const p2 = POLICY.replace('      - id: public-readonly', '      - id: drafts-closed\n        resources: { dirs: [/drafts] }\n        effect: deny\n      - id: public-readonly')
    const p2file = writeFile(work, 'policy2.yaml', p2)
    const sim = await members[1].spctl(['policy', 'simulate', p2file])
    show(sim.stdout)
    expect(sim.code === 0 || sim.code === 1, 'spctl policy simulate replays the recorded decisions under the draft first')
    const applied2 = await members[1].spctl(['--json', 'policy', 'apply', '--yes', p2file])
    const v2 = JSON.parse(applied2.stdout || '{}').version as number
    expect(applied2.code === 0, `applied on spd-b as version ${v2}`)
    const digest2 = await allInstalled(members, v2)
    await showMembers(members[2])
    saw(`all three at version ${v2}, digest ${digest2.slice(0, 16)}…`)
    const d2 = await run('mkdir', [path.join(guard, 'drafts')])
    expect(d2.code !== 0, `mkdir drafts is now denied (${d2.out})`)

    say('kill the member serving a 256 MiB encrypted write (SIGKILL) while it runs: the write finishes on the others')
    const big = path.join(guard, 'finance/big.bin')
    const writer = nodeDo(`const fs=require('fs'),c=require('crypto');const h=c.createHash('sha256');const fd=fs.openSync(${JSON.stringify(big)},'w');for(let i=0;i<256;i++){const b=Buffer.alloc(1<<20,i);h.update(b);fs.writeSync(fd,b)}fs.fsyncSync(fd);fs.closeSync(fd);console.log(h.digest('hex'))`, 120000)
    let writerDone = false
    void writer.then(() => { writerDone = true })
    const written = async (): Promise<number> => Number((JSON.parse((await cli('pemfs', ['status', guard, '--config-dir', hostDir, '--json'])).stdout) as { bytesWritten: number }).bytesWritten)
    const base = await written()
    const bar = new Progress({ total: 256 << 20, label: '    write', unit: 'bytes', stream: process.stdout })
    let sofar = 0
    const showProgress = (async () => { while (!writerDone) { sofar = Math.max(0, (await written()) - base); bar.update(sofar); await new Promise(resolve => setTimeout(resolve, 100)) } })()
    while (!writerDone && sofar < 16 << 20) await new Promise(resolve => setTimeout(resolve, 50)) // kill once 16 MiB went through
    // The member serving the write is the one whose request count grows while it runs.
    type Table = { servers: Array<{ name: string, requests: number, state: string }> }
    const tableOf = async (): Promise<Table> => JSON.parse((await cli('pemfs', ['status', guard, '--config-dir', hostDir, '--json'])).stdout) as Table
    const t1 = await tableOf()
    const table = await tableOf()
    const growth = (name: string): number => (table.servers.find(x => x.name === name)?.requests ?? 0) - (t1.servers.find(x => x.name === name)?.requests ?? 0)
    const busiest = table.servers.reduce((a, b) => growth(b.name) > growth(a.name) ? b : a)
    const victim = members.find(x => x.name === busiest.name) as Member
    expect(!writerDone, `the write is still running when ${victim.name} (serving it: +${growth(busiest.name)} requests between two looks) is killed`)
    await stopSpd(victim, 'SIGKILL')
    const wrote = await writer
    await showProgress
    bar.finish()
    expect(wrote.code === 0 && /^[0-9a-f]{64}$/.test(wrote.out), `the writer finished and fsynced (sha256 ${wrote.out.slice(0, 16)}…)`)
    const readBack = await nodeDo(`const fs=require('fs'),c=require('crypto');console.log(c.createHash('sha256').update(fs.readFileSync(${JSON.stringify(big)})).digest('hex'))`, 120000)
    expect(readBack.out === wrote.out, 'reading it back gives the same SHA-256: no acknowledged byte lost')
    const rawBig = fs.statSync(`/proc/self/fd/${underneath}/finance/big.bin`)
    saw(`underneath: ${rawBig.size} bytes of ciphertext for ${256 << 20} bytes of plaintext`)
    fs.closeSync(underneath)

    say('pemfs status: the host marked the killed member down and carried on')
    show((await cli('pemfs', ['status', guard, '--config-dir', hostDir])).stdout)
    const after = await tableOf()
    expect(after.servers.find(x => x.name === victim.name)?.state !== 'up', `${victim.name} is not up in the host's table`)

    say('spctl status on a survivor: the cluster sees the killed member down; changes still install on the majority')
    const survivors = members.filter(x => x !== victim)
    const k = await survivors[0].spctl(['--json', 'key', 'create', 'after-the-kill'])
    expect(k.code === 0, `a change on ${survivors[0].name} installed as version ${String(JSON.parse(k.stdout || '{}').pv)} with one member down`)
    await allInstalled(survivors, JSON.parse(k.stdout).pv as number)
    show((await survivors[0].spctl(['status'])).stdout)
    const tail = (await survivors[0].spctl(['audit', 'events', '-n', '3'])).stdout
    show(tail)
    expect(tail.includes('"kind"'), 'admin changes and decisions are audited')

    say(`restart ${victim.name}: it catches up with the change it missed`)
    await startSpd(victim)
    const digest3 = await allInstalled(members, JSON.parse(k.stdout).pv as number)
    expect(true, `${victim.name} installed the same digest ${digest3.slice(0, 16)}…`)

    say('unmount; the files stay, encrypted; the stores on disk are sealed too')
    const u = await cli('pemfs', ['unmount', guard, '--config-dir', hostDir], {}, 30000)
    mounted = u.code !== 0
    expect(u.code === 0, 'unmounted')
    expect(fs.readFileSync(path.join(guard, 'finance/q3.txt')).indexOf('Q3 revenue') === -1, 'finance/q3.txt is ciphertext')
    expect(fs.readFileSync(path.join(guard, 'notes.txt'), 'utf8').startsWith('plaintext left'), 'the file from before is untouched')
    for (const x of members) {
      const store = fs.readFileSync(path.join(x.dir, 'store.bin'))
      expect(store.indexOf('finance-node-only') === -1 && store.indexOf('demo-host') === -1, `${x.name}: no policy or host names in ${store.length} bytes of store.bin`)
    }

    say('stop the cluster')
    for (const x of members) expect(await stopSpd(x) === 0, `${x.name}: SIGTERM, leave message sent, clean exit`)
    process.stdout.write('\ndemo finished: every step passed\n')
  } finally {
    client?.close()
    if (mounted) {
      await cli('pemfs', ['unmount', guard, '--lazy', '--config-dir', hostDir], {}, 30000)
      await run('umount', ['-l', guard])
    }
    for (const x of members) await stopSpd(x)
    stopAll()
    fs.rmSync(work, { recursive: true, force: true })
    for (const x of members) fs.rmSync(path.dirname(x.dir), { recursive: true, force: true })
  }
}

main().catch(err => { process.stderr.write(`\ndemo FAILED: ${(err as Error).message}\n`); stopAll(); process.exit(1) })
