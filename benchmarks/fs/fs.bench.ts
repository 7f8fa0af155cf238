// fs benchmark: the jobs of the reference workload ../shared/bench/fs-bench.sh (its short run: SEQ_SIZE=512m
// RAND_SIZE=128m RUNTIME=15 NFILES=2000, plus TARBALL = a tar of this project's node_modules, ~7,000 entries), with
// the same fio options, so the ratios measured here and outside the project agree: sequential write of 128 KiB blocks
// with the final fsync counted, cold (caches dropped) and warm sequential read, 4 KiB random read and write at queue
// depth 1 buffered and O_DIRECT (a laid-out file, caches dropped before each, --randrepeat=0 --norandommap), the
// create(4 KiB)+stat+unlink loop, tar -x and rm -rf of the tree. fio runs with --fallocate=none as there: a FUSE
// file system without fallocate otherwise gets glibc's byte-per-block emulation (the old harness did not, one reason
// it showed gocryptfs at a third of the speed measured outside). Targets: a plain directory, a bare
// native-session passthrough (passthrough.ts: pemfs's FUSE session without policy or cluster), pemfs bypass
// (`pemfs mount --embedded --policy` with a permit-only policy), pemfs encrypted (`pemfs mount --embedded`, its
// default policy: apply_key, aes-256-gcm, its private spd on loopback; host placement), pemfs appliance (the same
// with `--placement appliance`: every block sealed and opened by the spd's native block service, docs/CHANNEL.md §8)
// and gocryptfs (Debian), in one run; baseline =
// gocryptfs. Every I/O runs in a child process (fio,
// tar, node meta-loop.js): the mounts are served by other processes, and this one only spawns and parses. The
// machine's speed drifts within minutes, so targets take turns test by test, each round starting one target later,
// and each row is the median of the rounds (two; one with --quick), with every round's value in the note.
import { spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { processMemory, type BenchContext } from '../harness'
import { cli, ROOT } from '../../scripts/procs'
import { isMounted, sh, tempDir } from '../../test/helpers/mounts'

interface Target { name: string, dir: string }
type Results = Record<string, Record<string, number>> // test -> target -> value

const META = path.join(ROOT, 'dist', 'benchmarks', 'fs', 'meta-loop.js')
const PASSTHROUGH = path.join(ROOT, 'dist', 'benchmarks', 'fs', 'passthrough.js')

/** Mounts the bare passthrough of `back` at `mnt` in its own process; resolves once it serves. */
async function startPassthrough (mnt: string, back: string): Promise<ChildProcess> {
  const proc = spawn(process.execPath, [PASSTHROUGH, mnt, back], { stdio: ['ignore', 'pipe', 'inherit'] })
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('passthrough did not mount in 20 s')), 20000)
    proc.stdout?.on('data', (c: Buffer) => { if (c.toString('utf8').includes('ready')) { clearTimeout(timer); resolve() } })
    proc.once('exit', code => { clearTimeout(timer); reject(new Error(`passthrough exited with ${String(code)}`)) })
  })
  return proc
}

/** The --policy file of the bypass mount: every caller permitted, data stored as it is. */
const bypassPolicy = (guard: string): string => `format: 1
guards:
  ${guard}:
    rules:
      - id: bypass
        effect: permit
`

/** `pemfs mount DIR --embedded [--policy FILE]`: the daemon's pid. */
async function mountEmbedded (dir: string, cfg: string, policyFile?: string, extra: string[] = []): Promise<number> {
  const r = await cli('pemfs', ['mount', dir, '--embedded', '--config-dir', cfg, '--json', ...(policyFile === undefined ? [] : ['--policy', policyFile]), ...extra], {}, 60000)
  if (r.code !== 0) throw new Error(`pemfs mount ${dir} --embedded: ${r.stderr}`)
  return Number(JSON.parse(r.stdout).pid)
}

interface FioSide { bw_bytes: number, iops: number, clat_ns?: { percentile?: Record<string, number> } }
async function fio (dir: string, file: string, args: string, timeoutMs: number): Promise<{ read: FioSide, write: FioSide }> {
  const r = await sh(`fio --output-format=json --ioengine=psync --numjobs=1 --fallocate=none --group_reporting --name=b --directory='${dir}' --filename=${file} ${args}`, { timeoutMs })
  if (r.code !== 0) throw new Error(`fio ${args} in ${dir}: exit ${r.code}: ${r.stderr.slice(0, 500)}`)
  const j = JSON.parse(r.stdout.slice(r.stdout.indexOf('{')))
  return j.jobs[0]
}

async function dropCaches (): Promise<void> {
  const r = await sh('sync && echo 3 > /proc/sys/vm/drop_caches', { timeoutMs: 60000 })
  if (r.code !== 0) throw new Error(`drop_caches: ${r.stderr}`)
}

/** One value per round, and the latencies beside it (fio's completion latency p50/p99, µs). */
interface Sample { value: number, p50?: number, p99?: number }
type Samples = Record<string, Record<string, Sample[]>> // row -> target -> one sample per round

/** The encrypted mount's daemon RSS, sampled every 100 ms: the highest since the last row ended, and per row. */
interface RssWatch { since: number, byTest: Record<string, number> }

/** Rows, their units, and whether a smaller value is better (none: every row is a rate). */
const UNITS: Record<string, string> = {
  seqwrite: 'MB/s', 'seqread-cold': 'MB/s', 'seqread-warm': 'MB/s', 'randread-buffered': 'IOPS', 'randwrite-buffered': 'IOPS',
  'randread-direct': 'IOPS', 'randwrite-direct': 'IOPS', meta: 'files/s', 'tar-x': 'MB/s', 'rm-rf': 'entries/s'
}

interface Sizes { seq: string, rand: string, runtime: number, files: number, tarball: string, tarBytes: number, tarEntries: number }

async function round (ctx: BenchContext, targets: Target[], samples: Samples, rss: RssWatch, z: Sizes): Promise<void> {
  ctx.log(`order: ${targets.map(t => t.name).join(', ')}`)
  const put = (row: string, t: Target, v: Sample): void => {
    ((samples[row] ??= {})[t.name] ??= []).push(v)
    ctx.log(`${t.name}: ${row} = ${v.value.toFixed(1)}${v.p50 === undefined ? '' : ` (p50 ${v.p50} µs, p99 ${v.p99 ?? '?'} µs)`}`)
    if (t.name === 'pemfs encrypted') rss.byTest[row] = Math.max(rss.byTest[row] ?? 0, rss.since)
    rss.since = 0
  }
  const lat = (s: FioSide, k: string): number | undefined => { const ns = s.clat_ns?.percentile?.[k]; return ns === undefined ? undefined : Math.round(ns / 100) / 10 }
  const sample = (s: FioSide, v: number): Sample => ({ value: v, p50: lat(s, '50.000000'), p99: lat(s, '99.000000') })
  const long = 600000
  for (const t of targets) { const r = (await fio(t.dir, 'seq.dat', `--rw=write --bs=128k --size=${z.seq} --end_fsync=1`, long)).write; put('seqwrite', t, sample(r, r.bw_bytes / 1e6)) }
  for (const t of targets) { await dropCaches(); const r = (await fio(t.dir, 'seq.dat', `--rw=read --bs=128k --size=${z.seq} --invalidate=1`, long)).read; put('seqread-cold', t, sample(r, r.bw_bytes / 1e6)) }
  for (const t of targets) { const r = (await fio(t.dir, 'seq.dat', `--rw=read --bs=128k --size=${z.seq} --invalidate=0`, long)).read; put('seqread-warm', t, sample(r, r.bw_bytes / 1e6)) }
  for (const t of targets) {
    await sh(`rm -f '${path.join(t.dir, 'seq.dat')}'`, { timeoutMs: 60000 })
    await fio(t.dir, 'rand.dat', `--rw=write --bs=1m --size=${z.rand} --end_fsync=1`, long) // laid out once, not timed
  }
  for (const [row, rw, direct] of [['randread-buffered', 'randread', 0], ['randwrite-buffered', 'randwrite', 0], ['randread-direct', 'randread', 1], ['randwrite-direct', 'randwrite', 1]] as const) {
    for (const t of targets) {
      await dropCaches()
      const j = await fio(t.dir, 'rand.dat', `--rw=${rw} --bs=4k --size=${z.rand} --time_based --runtime=${z.runtime} --direct=${direct} --randrepeat=0 --norandommap`, z.runtime * 1000 + 120000)
      const side = rw === 'randread' ? j.read : j.write
      put(row, t, sample(side, side.iops))
    }
  }
  for (const t of targets) await sh(`rm -f '${path.join(t.dir, 'rand.dat')}'`, { timeoutMs: 60000 })
  for (const t of targets) {
    const s = await sh(`node '${META}' '${t.dir}' ${z.files}`, { timeoutMs: long })
    if (s.code !== 0) throw new Error(`meta loop in ${t.dir}: ${s.stderr}`)
    const m = JSON.parse(s.stdout) as { s: number, create: number, stat: number, unlink: number }
    put('meta', t, { value: z.files / m.s })
    ctx.log(`${t.name}: meta create ${m.create.toFixed(0)}/s, stat ${m.stat.toFixed(0)}/s, unlink ${m.unlink.toFixed(0)}/s`)
  }
  for (const t of targets) {
    const into = path.join(t.dir, 'tarx')
    await dropCaches()
    const t0 = process.hrtime.bigint()
    const x = await sh(`mkdir '${into}' && tar -xf '${z.tarball}' -C '${into}'`, { timeoutMs: long })
    const secs = Number(process.hrtime.bigint() - t0) / 1e9
    if (x.code !== 0) throw new Error(`tar -x in ${t.dir}: ${x.stderr.slice(0, 500)}`)
    put('tar-x', t, { value: z.tarBytes / 1e6 / secs })
    const t1 = process.hrtime.bigint()
    const rm = await sh(`rm -rf '${into}'`, { timeoutMs: long })
    if (rm.code !== 0) throw new Error(`rm -rf in ${t.dir}: ${rm.stderr.slice(0, 500)}`)
    put('rm-rf', t, { value: z.tarEntries / (Number(process.hrtime.bigint() - t1) / 1e9) })
  }
}

export async function run (ctx: BenchContext): Promise<void> {
  const root = tempDir('fsbench')
  const plain = path.join(root, 'plain')
  const bypass = path.join(root, 'bypass')
  const crypt = path.join(root, 'crypt')
  const appliance = path.join(root, 'appliance')
  const gcCipher = path.join(root, 'gocryptfs-cipher')
  const gcPlain = path.join(root, 'gocryptfs')
  const passBack = path.join(root, 'passthrough-backing')
  const passMnt = path.join(root, 'passthrough')
  const cfg = path.join(root, 'pemfs-config')
  for (const d of [plain, bypass, crypt, appliance, gcCipher, gcPlain, passBack, passMnt]) fs.mkdirSync(d)
  let gcMounted = false
  let pass: ChildProcess | undefined
  const res: Results = {}
  try {
    const policyFile = path.join(root, 'bypass-policy.yaml')
    fs.writeFileSync(policyFile, bypassPolicy(bypass))
    const daemons: Array<{ name: string, pid: number, rssAtStart: number }> = []
    for (const [name, d, file, extra] of [['bypass', bypass, policyFile, []], ['encrypted', crypt, undefined, []], ['appliance', appliance, undefined, ['--placement', 'appliance']]] as const) {
      const pid = await mountEmbedded(d, cfg, file, [...extra])
      daemons.push({ name, pid, rssAtStart: processMemory(pid).rss })
    }
    pass = await startPassthrough(passMnt, passBack)
    const targets: Target[] = [{ name: 'plain', dir: plain }, { name: 'fuse passthrough', dir: passMnt }, { name: 'pemfs bypass', dir: bypass }, { name: 'pemfs encrypted', dir: crypt }, { name: 'pemfs appliance', dir: appliance }]
    let gcNote: string | undefined
    const have = await sh('command -v gocryptfs')
    if (have.code !== 0) gcNote = 'gocryptfs not installed'
    else {
      const pw = path.join(root, 'gc-pass')
      fs.writeFileSync(pw, 'bench password\n', { mode: 0o600 })
      const init = await sh(`gocryptfs -init -q -passfile '${pw}' '${gcCipher}'`, { timeoutMs: 60000 })
      const m = init.code === 0 ? await sh(`gocryptfs -q -passfile '${pw}' '${gcCipher}' '${gcPlain}'`, { timeoutMs: 60000 }) : init
      if (m.code !== 0) gcNote = `gocryptfs failed: ${m.stderr.trim()}`
      else { gcMounted = true; targets.push({ name: 'gocryptfs', dir: gcPlain }) }
      const v = await sh('gocryptfs -version')
      ctx.log(v.stdout.trim())
    }
    if (gcNote !== undefined) ctx.log(`MISSING baseline: ${gcNote}`)
    const rounds = ctx.quick ? 1 : 2
    // The tree for tar -x: this project's node_modules (~7,000 entries, ~100 MB), or lib/ with --quick.
    const tarball = path.join(root, 'tree.tar')
    const tree = ctx.quick ? 'lib' : 'node_modules'
    const treeDir = fs.realpathSync(path.join(ROOT, tree)) // a checkout may link its node_modules to another one's
    const tc = await sh(`tar -cf '${tarball}' -C '${path.dirname(treeDir)}' '${path.basename(treeDir)}' && tar -tf '${tarball}' | wc -l`, { timeoutMs: 120000 })
    if (tc.code !== 0) throw new Error(`tar -c ${tree}: ${tc.stderr}`)
    if (Number(tc.stdout.trim()) < 100) throw new Error(`tar -c ${tree}: ${tc.stdout.trim()} entries, not a tree to measure`)
    const sizes: Sizes = {
      seq: ctx.quick ? '32m' : '512m', rand: ctx.quick ? '16m' : '128m', runtime: ctx.quick ? 2 : 15, files: ctx.quick ? 200 : 2000,
      tarball, tarBytes: fs.statSync(tarball).size, tarEntries: Number(tc.stdout.trim())
    }
    ctx.log(`sizes: seq ${sizes.seq}, rand ${sizes.rand}, ${sizes.runtime} s per random row, ${sizes.files} files, tar of ${tree} (${sizes.tarEntries} entries, ${(sizes.tarBytes / 1e6).toFixed(0)} MB)`)
    const RSS_BUDGET_MIB = 120 // DESIGN §8: pemfs steady-state RSS through the whole filesystem benchmark
    const samples: Samples = {}
    const cryptPid = daemons.find(d => d.name === 'encrypted')?.pid ?? 0
    const rss: RssWatch = { since: 0, byTest: {} }
    const watch = setInterval(() => { rss.since = Math.max(rss.since, processMemory(cryptPid).rss) }, 100)
    try {
      for (let r = 1; r <= rounds; r++) {
        ctx.log(`round ${r} of ${rounds}`)
        await round(ctx, targets.map((_, i) => targets[(i + r - 1) % targets.length]), samples, rss, sizes)
      }
    } finally { clearInterval(watch) }
    // Each row: the median round's value, with its p50/p99, and every round's value in the note.
    const med = (xs: Sample[]): Sample => [...xs].sort((x, y) => x.value - y.value)[Math.floor((xs.length - 1) / 2)]
    const pick: Record<string, Record<string, Sample>> = {}
    for (const [row, byTarget] of Object.entries(samples)) {
      pick[row] = {}
      for (const [name, xs] of Object.entries(byTarget)) { pick[row][name] = med(xs); (res[row] ??= {})[name] = pick[row][name].value }
    }
    const lat = (x: Sample | undefined): string => x?.p50 === undefined ? '' : `p50 ${x.p50} / p99 ${x.p99 ?? '?'} µs`
    const note = (row: string, a: string, b: string): string => {
      const rs = (n: string): string => (samples[row]?.[n] ?? []).map(v => v.value.toPrecision(3)).join('/')
      const l = [lat(pick[row][a]), lat(pick[row][b])]
      return [rounds > 1 ? `rounds ${rs(a)} vs ${rs(b)}` : '', l[0] === '' ? '' : `${a} ${l[0]}, ${b} ${l[1]}`].filter(x => x !== '').join('; ')
    }
    for (const [row, byTarget] of Object.entries(res)) {
      const unit = UNITS[row]
      const base = byTarget.gocryptfs ?? null
      for (const t of targets) {
        if (t.name === 'gocryptfs') continue
        ctx.report({ name: `${row} ${t.name}`, value: byTarget[t.name], unit, baseline: base === null ? null : 'gocryptfs', baseline_value: base, note: gcNote ?? note(row, t.name, 'gocryptfs') })
      }
      if (base !== null) ctx.report({ name: `${row} gocryptfs`, value: base, unit, baseline: 'plain dir', baseline_value: byTarget.plain, note: note(row, 'gocryptfs', 'plain') })
      for (const t of ['pemfs bypass', 'pemfs encrypted', 'pemfs appliance']) {
        ctx.report({ name: `${row} ${t} vs passthrough`, value: byTarget[t], unit, baseline: 'fuse passthrough', baseline_value: byTarget['fuse passthrough'], note: note(row, t, 'fuse passthrough') })
      }
    }
    for (const [test, peak] of Object.entries(rss.byTest)) {
      ctx.report({ name: `pemfs daemon RSS peak during ${test} (encrypted mount, sampled every 100 ms)`, value: Math.round(peak), unit: 'MiB', baseline: 'budget (DESIGN §8)', baseline_value: RSS_BUDGET_MIB })
    }
    for (const dm of daemons) {
      const m = processMemory(dm.pid)
      ctx.report({ name: `pemfs daemon RSS after the benchmark (${dm.name} mount; ${dm.rssAtStart.toFixed(0)} MiB after mounting)`, value: Math.round(m.rss), unit: 'MiB', baseline: 'budget (DESIGN §8)', baseline_value: RSS_BUDGET_MIB })
      ctx.report({ name: `pemfs daemon peak RSS (VmHWM, ${dm.name} mount)`, value: Math.round(m.peak), unit: 'MiB', baseline: 'budget (DESIGN §8)', baseline_value: RSS_BUDGET_MIB })
    }
  } finally {
    if (pass !== undefined && pass.exitCode === null) {
      const exited = new Promise(resolve => pass?.once('exit', resolve))
      pass.kill('SIGTERM')
      await Promise.race([exited, new Promise(resolve => setTimeout(resolve, 10000))])
    }
    if (isMounted(passMnt)) await sh(`umount -l '${passMnt}'`, { timeoutMs: 5000 })
    for (const d of [bypass, crypt, appliance]) {
      if (isMounted(d)) await cli('pemfs', ['unmount', d, '--lazy', '--config-dir', cfg], {}, 30000)
      if (isMounted(d)) await sh(`umount -l '${d}'`, { timeoutMs: 5000 })
    }
    if (gcMounted || isMounted(gcPlain)) {
      const u = await sh(`fusermount -u '${gcPlain}'`, { timeoutMs: 10000 })
      if (u.code !== 0) await sh(`umount -l '${gcPlain}'`, { timeoutMs: 5000 })
    }
    if (![bypass, crypt, passMnt, gcPlain].some(isMounted)) fs.rmSync(root, { recursive: true, force: true })
  }
}
