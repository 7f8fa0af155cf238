// Cluster convergence with real spd processes on loopback: time from `spctl policy apply` (the CLI started) to the
// new version installed on every member, and the same from the admin API call (without the CLI's start-up), for 1
// (baseline: same path, no peers), 3, 5 and 10 members at the default 1 s heartbeat; and the idle CPU of one member
// as N grows (baseline: a member alone), read from /proc/<pid>/stat.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { admin, allInstalled, startCluster, type Member } from '../../scripts/cluster'
import { stopAll, stopSpd, writeFile } from '../../scripts/procs'
import { median, type BenchContext } from '../harness'

const INTERVAL_MS = 1000
const TICKS = 100 // USER_HZ: clock ticks per second in /proc/<pid>/stat on Linux

function cpuSeconds (pid: number): number {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
  return (Number(f[11]) + Number(f[12])) / TICKS // utime + stime
}


const policy = (i: number): string => `format: 1\nguards:\n  /srv/bench:\n    rules:\n      - id: r${i}\n        effect: permit\n`

/** `spctl policy apply` as an admin types it, until every member has installed the new version. */
async function applyWithCli (ms: Member[], on: Member, work: string, i: number): Promise<number> {
  const file = writeFile(work, `p${i}.yaml`, policy(i))
  const t0 = Date.now()
  const r = await on.spctl(['--json', 'policy', 'apply', file])
  if (r.code !== 0) throw new Error(`policy apply on ${on.name}: ${r.stderr}`)
  await allInstalled(ms, JSON.parse(r.stdout).version as number, 30000)
  return Date.now() - t0
}

/** The same through the admin API from this process: the protocol's share without the CLI's start-up. */
async function applyWithApi (ms: Member[], on: Member, i: number): Promise<number> {
  const t0 = Date.now()
  const r = await admin(on, 'PUT', '/v1/policy', { text: policy(1000 + i) }) as { version: number }
  await allInstalled(ms, r.version, 30000)
  return Date.now() - t0
}

export async function run (ctx: BenchContext): Promise<void> {
  const sizes = ctx.quick ? [1, 3] : [1, 3, 5, 10]
  const rounds = ctx.quick ? 2 : 5
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'pem-bench-cluster-'))
  const single = { cli: NaN, api: NaN, cpu: NaN }
  try {
    for (const n of sizes) {
      const ms = await startCluster(n, `b${n}-`, { load: { threshold: 1 }, cluster: { intervalMs: INTERVAL_MS } })
      try {
        const cli: number[] = []
        const api: number[] = []
        for (let i = 0; i < rounds; i++) cli.push(await applyWithCli(ms, ms[i % n], work, i))
        for (let i = 0; i < rounds; i++) api.push(await applyWithApi(ms, ms[i % n], i))
        const [c50, a50] = [median(cli), median(api)]
        if (n === 1) { single.cli = c50; single.api = a50 }
        ctx.log(`${n} members: spctl apply → installed on all ${cli.join(', ')} ms; admin API → all ${api.join(', ')} ms`)
        const base = (v: number): { baseline: string | null, baseline_value: number | null } => n === 1 ? { baseline: null, baseline_value: null } : { baseline: 'same on 1 member', baseline_value: v }
        ctx.report({ name: `spctl policy apply → all installed, ${n} processes`, value: c50, unit: 'ms', ...base(single.cli) })
        ctx.report({ name: `admin API apply → all installed, ${n} processes`, value: a50, unit: 'ms', ...base(single.api) })
        if (n > 1) ctx.report({ name: `spctl apply → all installed, ${n} processes (target ≤ 3 intervals)`, value: Math.round(c50 / INTERVAL_MS * 100) / 100, unit: 'intervals', baseline: 'target', baseline_value: 3 })
        const pid = ms[0].proc?.pid as number
        const c0 = cpuSeconds(pid)
        const t0 = Date.now()
        await new Promise(resolve => setTimeout(resolve, ctx.quick ? 3000 : 10000))
        const pct = Math.round((cpuSeconds(pid) - c0) / ((Date.now() - t0) / 1000) * 10000) / 100
        if (n === 1) single.cpu = pct
        ctx.report({ name: `idle member CPU, ${n} members`, value: pct, unit: '% core', ...(n === 1 ? { baseline: null, baseline_value: null } : { baseline: 'a member alone', baseline_value: single.cpu }) })
      } finally {
        for (const m of ms) await stopSpd(m)
      }
    }
  } finally {
    stopAll()
    fs.rmSync(work, { recursive: true, force: true })
  }
}
