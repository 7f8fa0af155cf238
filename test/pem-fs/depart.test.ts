// A host over a 2-member cluster when one member stops cleanly (issue 21 finding 2, the host's side): reads and writes
// through the mount go on without an error, the host stops picking the departed member and adopts the cluster's
// current server list (in pemfs status and cluster.json); back and caught up, the member is in the host's list again.
import test from 'ava'
import fs from 'node:fs'
import path from 'node:path'
import { readCluster } from '../../lib/pem-fs/host-config'
import { allInstalled, clusterStatus, installedVersion, until, type Member } from '../../scripts/cluster'
import { cli, startSpd, stopSpd } from '../../scripts/procs'
import { daemonLogs, encryptedCluster, mountOrThrow, sh, tearDown, type Cluster } from '../helpers/mounts'

const FAST = { load: { threshold: 1 }, cluster: { intervalMs: 200 } }
let ms: Member[]
let c: Cluster
let dir: string
const status = async (): Promise<{ pv: number, servers: Array<{ name: string, state: string, requests: number }> }> =>
  JSON.parse((await cli('pemfs', ['status', dir, '--config-dir', c.hostDir, '--json'])).stdout)

test.before(async () => {
  ;({ ms, c, dir } = await encryptedCluster(2, 'depart', 'dp', FAST))
  await mountOrThrow(c, dir, ['--timeout-ms', '1000'])
})

test.after.always(async () => { await tearDown(c) })

/** Reads an existing file and writes a new one through the mount, in a child process; the number of failed rounds. */
async function traffic (rounds: number, tag: string): Promise<{ failed: number, errors: string[] }> {
  const errors: string[] = []
  for (let i = 0; i < rounds; i++) {
    const r = await sh(`cat '${dir}/kept.txt' > /dev/null && echo round-${i} > '${dir}/${tag}-${i}.txt' && cat '${dir}/${tag}-${i}.txt'`, { timeoutMs: 20000 })
    if (r.code !== 0 || r.stdout.trim() !== `round-${i}`) errors.push(`round ${i}: ${r.code} ${r.stderr.trim()}`)
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  return { failed: errors.length, errors }
}

test.serial('one of two members stops cleanly: reads and writes recover, the host adopts the list without it; back, it is listed again', async t => {
  t.timeout(120000)
  t.is((await sh(`echo kept > '${dir}/kept.txt'`)).code, 0)
  // The precondition, not the claim: the mount serves through both members (a first data call right after the mount
  // has been seen refused by the joined member's listener on a loaded machine; see the report of issue 21).
  const serving = await until(async () => (await traffic(1, 'before')).failed === 0 && (await status()).servers.every(s => s.state === 'up'), 20000, 250)
  t.true(serving, `${daemonLogs(c)}\n${ms[1].name}: ${ms[1].logs.slice(-10).join('\n')}`)
  const [a, b] = ms
  t.is(await stopSpd(b, 'SIGTERM'), 0, 'a clean stop')
  const away = await traffic(20, 'away') // about 2 s of work right after the departure
  // Known gap (issue 21 report): reads in the first seconds after the stop still fail at times (EHOSTUNREACH, from
  // 0 to 20 of these 20 rounds in 6 runs on a loaded machine); the claim here is that they recover, on the adopted list.
  t.log(`${away.failed} of 20 rounds failed in the 2 s after the stop`)
  t.true(await until(async () => (await traffic(1, 'recovered')).failed === 0, 15000, 250), `reads recover: ${daemonLogs(c)}`)
  t.true(await until(async () => (await status()).servers.map(s => s.name).join() === a.name, 10000, 200), JSON.stringify((await status()).servers))
  t.deepEqual(readCluster(c.hostDir).servers.map(s => s.name), [a.name], 'saved in cluster.json for the next mount')

  const departedAt = (await installedVersion(a)) ?? 0
  await startSpd(b)
  await allInstalled(ms, departedAt + 1) // b's return, installed on both
  t.false((await clusterStatus(b)).departed)
  const listed = await until(async () => {
    await traffic(1, 'back') // traffic carries the return's version to the host
    return (await status()).servers.length === 2
  }, 20000, 200)
  t.true(listed, JSON.stringify((await status()).servers))
  t.deepEqual(readCluster(c.hostDir).servers.map(s => s.name).sort(), [a.name, b.name].sort())
  const back = await traffic(3, 'after')
  t.is(back.failed, 0, back.errors.join('\n'))
})

test.serial('the daemon logs JSON lines like spd (guard, level, time, msg), no /proc/self/fd links, one line per failure', async t => {
  t.timeout(60000)
  for (const m of ms) await stopSpd(m, 'SIGKILL') // the whole cluster gone: every access fails
  const failed = await sh(`cat '${dir}/kept.txt'; cat '${dir}/kept.txt'; echo x > '${dir}/new.txt'`, { timeoutMs: 30000 })
  t.not(failed.code, 0)
  const log = fs.readFileSync(path.join(c.hostDir, 'run', fs.readdirSync(path.join(c.hostDir, 'run')).find(f => f.endsWith('.log')) as string), 'utf8')
  const lines = log.split('\n').filter(l => l !== '')
  const events = lines.map(l => { try { return JSON.parse(l) as { level: number, time: number, msg: string, guard: string, code?: string } } catch { return null } })
  t.true(events.every(e => e !== null), `every line is JSON:\n${log}`)
  for (const e of events) {
    if (e === null) continue
    t.is(e.guard, dir)
    t.true(Number.isInteger(e.level) && Number.isInteger(e.time) && typeof e.msg === 'string', JSON.stringify(e))
  }
  t.true(events.some(e => e?.msg === 'pemfs guarding'))
  t.true(events.some(e => e !== null && e.level === 40 && e.code !== undefined), `the failures are logged:\n${log}`)
  t.false(log.includes('/proc/self/fd'), log)
  const warnings = events.filter(e => e !== null && e.level === 40).map(e => `${e?.code ?? ''}|${e?.msg ?? ''}|${Math.floor((e?.time ?? 0) / 1000)}`)
  t.is(new Set(warnings).size, warnings.length, `no warning twice in one second:\n${log}`)
})
