// pemfs over a real 2-member cluster while one member stops: a clean stop (SIGTERM) of the member serving the host
// costs the application no error at all (the host moves to the other member at once, retrying what was in flight),
// and so does a crash (SIGKILL) while another member is up.
import test from 'ava'
import path from 'node:path'
import { allInstalled, installedVersion, until, type Member } from '../../scripts/cluster'
import { cli, startSpd, stopSpd } from '../../scripts/procs'
import { daemonLogs, encryptedCluster, mountOrThrow, sh, tearDown, type Cluster } from '../helpers/mounts'

const FAST = { load: { threshold: 1 }, cluster: { intervalMs: 200 } }
let ms: Member[]
let c: Cluster
let dir: string
let termed: Member | undefined
const status = async (): Promise<{ servers: Array<{ name: string, requests: number }> }> =>
  JSON.parse((await cli('pemfs', ['status', dir, '--config-dir', c.hostDir, '--json'])).stdout)

test.before(async () => {
  ;({ ms, c, dir } = await encryptedCluster(2, 'clean-stop', 'cs', FAST))
  await mountOrThrow(c, dir, ['--timeout-ms', '3000'])
})

test.after.always(async () => { await tearDown(c) })

/**
 * For `durationMs`, in its own process: create a new file, write it, read it back and compare, and read an older
 * one, over and over (every new file asks a server for a decision and a header, every open for a key or grant). Prints {rounds, errors: [first few messages]}.
 */
async function churn (tag: string, durationMs: number): Promise<{ rounds: number, errors: string[] }> {
  const script = `const fs=require('fs'),p=require('path');const d=${JSON.stringify(path.join(dir, tag))};fs.mkdirSync(d,{recursive:true});` +
    `const end=Date.now()+${durationMs};let rounds=0;const errors=[];` +
    `while(Date.now()<end){const f=p.join(d,'f'+rounds);const b=Buffer.alloc(70000,rounds%251);` +
    `try{fs.writeFileSync(f,b);if(!fs.readFileSync(f).equals(b))errors.push('mismatch '+f);fs.statSync(f);if(rounds>0){const o=p.join(d,'f'+(rounds>>1));if(fs.readFileSync(o).length!==70000)errors.push('short '+o)}}catch(e){errors.push(e.code+' '+e.message)}rounds++}` +
    `console.log(JSON.stringify({rounds,errors:errors.slice(0,5),count:errors.length}))`
  const r = await sh(`node -e "${script.replace(/"/g, '\\"')}"`, { timeoutMs: durationMs + 60000 })
  if (r.code !== 0) throw new Error(`reader: ${r.code} ${r.stderr}`)
  const out = JSON.parse(r.stdout) as { rounds: number, errors: string[], count: number }
  return { rounds: out.rounds, errors: out.count === 0 ? [] : [`${out.count} errors`, ...out.errors] }
}

/** The member serving the host now: the one whose request count grows while `churn` runs. */
async function serving (): Promise<Member> {
  const first = await status()
  await new Promise(resolve => setTimeout(resolve, 400))
  const second = await status()
  const growth = (name: string): number => (second.servers.find(s => s.name === name)?.requests ?? 0) - (first.servers.find(s => s.name === name)?.requests ?? 0)
  const busiest = second.servers.reduce((a, b) => growth(b.name) > growth(a.name) ? b : a)
  return ms.find(m => m.name === busiest.name) as Member
}

for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
  test.serial(`${signal} of a member serving the host: reads and writes through the mount see no error`, async t => {
    const running = churn(signal, 6000)
    t.true(await until(async () => (await status()).servers.some(s => s.requests > 3), 20000), 'the host reached a server')
    // The clean stop takes the member serving the host; the crash then takes the other one, the member the host moved
    // to, while the host still has the first one marked down (it came back, caught up, and is the only one left).
    const victim = signal === 'SIGTERM' ? (termed = await serving()) : ms.find(m => m !== termed) as Member
    await stopSpd(victim, signal)
    const r = await running
    await startSpd(victim)
    await allInstalled(ms, (await installedVersion(ms[0] === victim ? ms[1] : ms[0])) ?? 0)
    // A departed member is out of the host's table until it is back (a new version the host's list watcher fetches).
    const back = await until(async () => {
      await sh(`ls '${dir}' > /dev/null`) // traffic carries the new version
      return (await status()).servers.length === 2
    }, 20000, 300)
    t.true(r.rounds > 10, `the loop ran (${r.rounds} rounds)`)
    t.deepEqual(r.errors, [], daemonLogs(c))
    t.true(back, 'the member is back in the host\'s table')
  })
}
