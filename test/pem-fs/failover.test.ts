// pemfs over a real 2-member cluster: one spd SIGKILLed in the middle of an encrypted write (the write completes on
// the other member, nothing acknowledged is lost), and a member joining while the mount runs (the host learns the new
// server list without a remount).
import test from 'ava'
import fs from 'node:fs'
import path from 'node:path'
import { listenPort } from '../../lib/channel/listen-port'
import { readCluster } from '../../lib/pem-fs/host-config'
import { allInstalled, installedVersion, join, until, type Member } from '../../scripts/cluster'
import { cli, startSpd, stopSpd } from '../../scripts/procs'
import { encryptedCluster, mountOrThrow, sh, tearDown, type Cluster } from '../helpers/mounts'

const FAST = { load: { threshold: 1 }, cluster: { intervalMs: 200 } }
let ms: Member[]
let c: Cluster
let dir: string
let metricsFile: string
let metricsPort: number
let underneath: number // the guarded directory itself, opened before the mount hid it
const status = async (): Promise<{ pv: number, servers: Array<{ name: string, state: string, requests: number }> }> =>
  JSON.parse((await cli('pemfs', ['status', dir, '--config-dir', c.hostDir, '--json'])).stdout)

test.before(async () => {
  ;({ ms, c, dir } = await encryptedCluster(2, 'failover', 'fo', FAST))
  underneath = fs.openSync(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY)
  metricsFile = path.join(c.work, 'pemfs.prom')
  metricsPort = await listenPort()
  await mountOrThrow(c, dir, ['--timeout-ms', '1000', '--metrics-file', metricsFile, '--metrics-listen', `127.0.0.1:${metricsPort}`])
})

test.after.always(async () => {
  if (underneath !== undefined) fs.closeSync(underneath)
  await tearDown(c)
})

test.serial('one of two spd killed mid-write: the write completes on the other, and reads back bit for bit', async t => {
  const file = path.join(dir, 'big.bin')
  // 512 MiB in 1 MiB writes (long enough to kill a member in the middle, also on the native block path), fsync, SHA-256 of what was written; in its own process (never from the test process).
  const writer = sh(`node -e "const fs=require('fs'),c=require('crypto');const h=c.createHash('sha256');const fd=fs.openSync('${file}','w');for(let i=0;i<512;i++){const b=Buffer.alloc(1<<20,(i%250)+1);h.update(b);fs.writeSync(fd,b)}fs.fsyncSync(fd);fs.closeSync(fd);console.log(h.digest('hex'))"`, { timeoutMs: 120000 })
  let done = false
  void writer.then(() => { done = true })
  t.true(await until(async () => (await status()).servers.some(s => s.requests > 5), 20000), 'the write reached a server')
  // The member serving the write is the one whose request count grows while it runs (its grant's server).
  const first = await status()
  await new Promise(resolve => setTimeout(resolve, 300))
  const second = await status()
  const growth = (name: string): number => (second.servers.find(s => s.name === name)?.requests ?? 0) - (first.servers.find(s => s.name === name)?.requests ?? 0)
  const busiest = second.servers.reduce((a, b) => growth(b.name) > growth(a.name) ? b : a)
  t.true(growth(busiest.name) > 0, 'a server is serving the write')
  t.false(done, 'still writing when the member is killed')
  const victim = ms.find(m => m.name === busiest.name) as Member
  await stopSpd(victim, 'SIGKILL')
  const w = await writer
  const r = await sh(`sha256sum '${file}'`, { timeoutMs: 60000 })
  const st = await status()
  // Back before asserting, so a failure here does not take the next tests' majority with it.
  await startSpd(victim)
  await allInstalled(ms, (await installedVersion(ms[0] === victim ? ms[1] : ms[0])) ?? 0)
  t.is(w.code, 0, w.stderr)
  t.is(r.stdout.split(' ')[0], w.stdout.trim(), 'the data read back is the data written')
  t.not(st.servers.find(s => s.name === victim.name)?.state, 'up', 'the host marked it down (or due for a retry)')
  const raw = fs.readFileSync(`/proc/self/fd/${underneath}/big.bin`)
  t.is(raw.subarray(0, 4).toString('latin1'), 'PEMF')
  t.false(raw.includes(Buffer.alloc(64, 1)), 'ciphertext underneath')
})

test.serial('a member joining while mounted: the host learns the new server list without a remount', async t => {
  const before = (await status()).servers.length
  t.is(before, 2)
  const third = await join(ms[0], 'fo3', FAST)
  ms.push(third)
  const learnt = await until(async () => {
    await sh(`ls '${dir}' > /dev/null; head -c 1048576 '${dir}/big.bin' > /dev/null`, { timeoutMs: 60000 }) // traffic carries the new version
    return (await status()).servers.length === 3
  }, 20000, 300)
  t.true(learnt, JSON.stringify((await status()).servers))
  t.deepEqual(readCluster(c.hostDir).servers.map(s => s.name).sort(), ['fo1', 'fo2', 'fo3'], 'saved in cluster.json for the next mount')
})

test.serial('metrics of the mount: a textfile-collector file and pemfs status --prometheus, with the server table', async t => {
  const text = (await cli('pemfs', ['status', dir, '--config-dir', c.hostDir, '--prometheus'])).stdout
  const value = (name: string): number => Number(new RegExp(`^${name.replace(/[{}]/g, '\\$&')} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN)
  t.true(value(`pemfs_bytes_written_total{guard="${dir}"}`) >= 48 << 20)
  const up = ms.map(m => value(`pemfs_server_up{guard="${dir}",server="${m.name}"}`))
  t.true(up.every(v => v === 0 || v === 1), `every server has its up gauge: ${up.join(',')}`)
  t.true(up.filter(v => v === 1).length >= 2, 'the servers that were never killed are up (the restarted one is up once asked again)')
  t.true(await until(async () => fs.existsSync(metricsFile) && fs.readFileSync(metricsFile, 'utf8').includes('server="fo3"'), 12000, 500), 'the file is rewritten with the new server list')
  t.regex(fs.readFileSync(metricsFile, 'utf8'), /^# TYPE pemfs_server_requests_total gauge$/m)
  t.notRegex(text, /\n\n/, 'no blank lines between the series')
  t.regex(text, /^pemfs_build_info\{version="[^"]+",commit="[^"]+",node="[^"]+",openssl="[^"]+"\} 1$/m)
  const served = await fetch(`http://127.0.0.1:${metricsPort}/metrics`)
  t.is(served.status, 200)
  const body = await served.text()
  t.regex(body, new RegExp(`^pemfs_server_up\\{guard="${dir}",server="fo3"\\} [01]$`, 'm'), 'the endpoint serves the same metrics')
  t.is((await fetch(`http://127.0.0.1:${metricsPort}/other`)).status, 404)
  const wide = await cli('pemfs', ['mount', path.join(c.work, 'never'), '--metrics-listen', '0.0.0.0:9560', '--config-dir', c.hostDir])
  t.is(wide.code, 2, 'bad usage')
  t.regex(wide.stderr, /--metrics-listen 0\.0\.0\.0:9560 is not a loopback HOST:PORT/)
})
