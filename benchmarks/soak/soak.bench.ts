// Soak (DESIGN §8: neither pemfs nor spd grows over a 10-minute soak; report RSS at start and end): one spd on
// loopback, one encrypted pemfs mount, and a child process (workload.ts) cycling sequential, random, small-file and
// append work through it for 10 minutes (20 s with --quick), every byte read back and compared. Both daemons' RSS is
// sampled every 5 s; "start" is the sample after the first tenth of the run (buffers, pools and JIT warmed up),
// "end" the one 3 s after the workload stopped; the peak (VmHWM) covers every moment. The run stops by itself.
import path from 'node:path'
import fs from 'node:fs'
import { processMemory, type BenchContext } from '../harness'
import { ROOT } from '../../scripts/procs'
import { clusterWithHost, mount, sh, tearDown, tempDir, type Cluster } from '../../test/helpers/mounts'

const WORKLOAD = path.join(ROOT, 'dist', 'benchmarks', 'soak', 'workload.js')
const BUDGET_MIB = { pemfs: 120, spd: 200 } // DESIGN §8
const SAMPLE_MS = 5000
const SETTLE_MS = 3000

const policy = (dir: string): string => `format: 1
keys: [k1]
guards:
  ${dir}:
    rules:
      - id: encrypt
        effect: apply_key(k1)
        compression: none
`

export async function run (ctx: BenchContext): Promise<void> {
  const seconds = ctx.quick ? 20 : 600
  const root = tempDir('soak')
  const dir = path.join(root, 'data')
  fs.mkdirSync(dir)
  let c: Cluster | undefined
  try {
    c = await clusterWithHost('soak', () => policy(dir))
    const m = await mount(c, dir)
    if (m.code !== 0) throw new Error(`pemfs mount ${dir}: ${m.stderr}`)
    const pids = { pemfs: Number(JSON.parse(m.stdout).pid), spd: c.spd.proc?.pid ?? 0 }
    const samples: Array<{ at: number, pemfs: number, spd: number }> = []
    const t0 = Date.now()
    const sample = (): void => { samples.push({ at: Date.now() - t0, pemfs: processMemory(pids.pemfs).rss, spd: processMemory(pids.spd).rss }) }
    sample()
    const timer = setInterval(sample, SAMPLE_MS)
    const r = await sh(`'${process.execPath}' '${WORKLOAD}' '${dir}' ${seconds}`, { timeoutMs: (seconds + 180) * 1000 })
    clearInterval(timer)
    await new Promise(resolve => setTimeout(resolve, SETTLE_MS)) // "end": idle again, as a daemon sits between bursts
    sample()
    if (r.code !== 0) throw new Error(`soak workload exited with ${r.code}: ${r.stderr.slice(0, 500)}`)
    const w = JSON.parse(r.stdout) as { cycles: number, bytes: number, errors: number, firstError: string | null }
    ctx.log(`${w.cycles} cycles, ${(w.bytes / 2 ** 30).toFixed(1)} GiB through the mount in ${seconds} s; ${w.errors} errors${w.firstError === null ? '' : ` (first: ${w.firstError})`}`)
    ctx.log(`RSS samples (s: pemfs/spd MiB): ${samples.filter((_, i) => i % 12 === 0 || i === samples.length - 1).map(s => `${Math.round(s.at / 1000)}: ${s.pemfs.toFixed(0)}/${s.spd.toFixed(0)}`).join(', ')}`)
    ctx.report({ name: `soak workload errors (${w.cycles} cycles, every byte compared)`, value: w.errors, unit: 'errors', baseline: null, baseline_value: null })
    const start = samples.find(s => s.at >= seconds * 100) ?? samples[0]
    const end = samples[samples.length - 1]
    for (const who of ['pemfs', 'spd'] as const) {
      const peak = processMemory(pids[who]).peak
      const budget = BUDGET_MIB[who]
      ctx.report({ name: `${who} RSS at ${Math.round(start.at / 1000)} s of the soak`, value: Math.round(start[who]), unit: 'MiB', baseline: 'budget (DESIGN §8)', baseline_value: budget })
      ctx.report({ name: `${who} RSS at the end (${seconds} s)`, value: Math.round(end[who]), unit: 'MiB', baseline: 'budget (DESIGN §8)', baseline_value: budget })
      ctx.report({ name: `${who} peak RSS (VmHWM) over the soak`, value: Math.round(peak), unit: 'MiB', baseline: 'budget (DESIGN §8)', baseline_value: budget })
      ctx.report({ name: `${who} RSS end vs start (growth ${(end[who] - start[who]).toFixed(1)} MiB)`, value: Math.round(end[who] * 10) / 10, unit: 'MiB', baseline: 'RSS at start', baseline_value: Math.round(start[who] * 10) / 10 })
    }
  } finally {
    await tearDown(c)
    fs.rmSync(root, { recursive: true, force: true })
  }
}
