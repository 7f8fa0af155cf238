// An spd restart under a running write on the native block path (appliance placement, docs/CHANNEL.md §8 "Failover,
// expiry, fallback"): the only member is stopped and started again while a host writes sequentially (writes behind
// the writer, sealed at spd). The grants spd forgot are issued again after the restart, the write and its fsync
// succeed, and every acknowledged byte reads back bit for bit.
import test from 'ava'
import fs from 'node:fs'
import path from 'node:path'
import { until } from '../../scripts/cluster'
import { cli, startSpd, stopSpd } from '../../scripts/procs'
import { clusterWithHost, mountOrThrow, sh, tearDown, type Cluster } from '../helpers/mounts'

let c: Cluster
let dir: string
const status = async (): Promise<Record<string, number>> =>
  JSON.parse((await cli('pemfs', ['status', dir, '--config-dir', c.hostDir, '--json'])).stdout) as Record<string, number>

test.before(async () => {
  c = await clusterWithHost('spd-restart', work => {
    dir = path.join(work, 'data')
    fs.mkdirSync(dir)
    return `format: 1\nkeys: [k]\nguards:\n  ${dir}:\n    rules:\n      - id: all\n        effect: apply_key(k)\n        placement: appliance\n`
  })
  await mountOrThrow(c, dir, ['--timeout-ms', '1000'])
})

test.after.always(async () => {
  await tearDown(c)
})

test.serial('spd restarted mid-write: grants are issued again, the write and its fsync succeed, nothing acknowledged is lost', async t => {
  const file = path.join(dir, 'w.bin')
  // 160 MiB in 1 MiB writes, 20 ms apart (a few seconds: the restart lands inside), fsync, SHA-256 of what was written.
  const writer = sh(`node -e "const fs=require('fs'),c=require('crypto');const h=c.createHash('sha256');const fd=fs.openSync('${file}','w');for(let i=0;i<160;i++){const b=Buffer.alloc(1<<20,(i%250)+1);h.update(b);fs.writeSync(fd,b);Atomics.wait(new Int32Array(new SharedArrayBuffer(4)),0,0,20)}fs.fsyncSync(fd);fs.closeSync(fd);console.log(h.digest('hex'))"`, { timeoutMs: 120000 })
  let done = false
  void writer.then(() => { done = true })
  t.true(await until(async () => (await status()).blockRequests > 5, 20000), 'the write reached spd\'s block service')
  const before = await status()
  t.false(done, 'still writing when spd stops')
  await stopSpd(c.spd)
  await startSpd(c.spd)
  const w = await writer
  t.is(w.code, 0, w.stderr)
  const r = await sh(`sha256sum '${file}'`, { timeoutMs: 60000 })
  t.is(r.stdout.split(' ')[0], w.stdout.trim(), 'the data read back is the data written')
  const after = await status()
  t.true(after.blockGrants > before.blockGrants, `grants issued again: ${before.blockGrants} -> ${after.blockGrants}`)
  t.true(after.blockConnects > before.blockConnects, `a new block connection: ${before.blockConnects} -> ${after.blockConnects}`)
  t.true(after.blockBehindWrites > 0, 'writes went behind the writer')
  t.is(after.reads + after.writes, 0, 'the io hook served no data call')
})
