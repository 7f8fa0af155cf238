// fs benchmark (issue 4, Proof): fio sequential write/read (128 KiB), 4 KiB direct random read/write IOPS,
// and create+stat+unlink of small files, on a plain directory, a bare fuse-native passthrough (passthrough.ts: the
// cost of FUSE in Node without pemfs), pemfs bypass (permit), pemfs encrypted (apply_key, aes-256-gcm, no
// compression; spd on loopback) and gocryptfs — all in one run; baseline = gocryptfs, and pemfs is also compared
// with the passthrough. Every I/O runs in a child process (fio, node small-files.js): the mounts are served by other
// processes (passthrough.js, the pemfs daemon, gocryptfs), and this process only spawns and parses.
// Deviations from the sizes (session budget): 256 MiB sequential (not 1 GiB), 2,000 small files (not 10,000);
// the tar extract is not measured here (test/pem-fs/workloads.test.ts runs tar and fio --verify for correctness).
// This machine's speed drifts by up to 2x within minutes, and its disk slows down after a burst of writes, so the
// targets take turns: each round measures every target once, test by test, starting one target later than the round
// before (no target is always the one after four others' writes), and the median of three rounds is reported (one
// with --quick). Sequential writes end without fsync: with end_fsync=1 every target's figure was the disk's (plain
// directory 225-1,490 MB/s, gocryptfs 52-205 MB/s in one run), not the file system's.
import { spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { median, processMemory, type BenchContext } from '../harness'
import { ROOT, stopAll, stopSpd } from '../../scripts/procs'
import { clusterWithHost, isMounted, mount, sh, tempDir, unmountAll, type Cluster } from '../../test/helpers/mounts'

interface Target { name: string, dir: string }
type Results = Record<string, Record<string, number>> // test -> target -> value

const SMALL = path.join(ROOT, 'dist', 'benchmarks', 'fs', 'small-files.js')
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

const policy = (bypass: string, crypt: string): string => `format: 1
keys: [k1]
guards:
  ${bypass}:
    rules:
      - id: bypass
        effect: permit
  ${crypt}:
    rules:
      - id: encrypt
        effect: apply_key(k1)
        compression: none
`

async function fio (dir: string, args: string, timeoutMs: number): Promise<{ read: { bw_bytes: number, iops: number }, write: { bw_bytes: number, iops: number } }> {
  const r = await sh(`fio --output-format=json --name=b --filename='${path.join(dir, 'fio.dat')}' --numjobs=1 --ioengine=psync ${args}`, { timeoutMs })
  if (r.code !== 0) throw new Error(`fio ${args} in ${dir}: exit ${r.code}: ${r.stderr.slice(0, 500)}`)
  const j = JSON.parse(r.stdout.slice(r.stdout.indexOf('{')))
  return j.jobs[0]
}

async function dropCaches (): Promise<void> {
  const r = await sh('sync && echo 3 > /proc/sys/vm/drop_caches', { timeoutMs: 60000 })
  if (r.code !== 0) throw new Error(`drop_caches: ${r.stderr}`)
}

type Samples = Record<string, Record<string, number[]>> // test -> target -> one value per round

/** One round: every test on every target, targets in turn within each test. */
/** The encrypted mount's daemon RSS, sampled every 100 ms: the highest since the last test ended, and per test. */
interface RssWatch { since: number, byTest: Record<string, number> }

async function round (ctx: BenchContext, targets: Target[], samples: Samples, rss: RssWatch): Promise<void> {
  ctx.log(`order: ${targets.map(t => t.name).join(', ')}`)
  const size = ctx.quick ? '16M' : '256M'
  const secs = ctx.quick ? 2 : 5
  const files = ctx.quick ? 200 : 2000
  const put = (test: string, t: Target, v: number): void => {
    ((samples[test] ??= {})[t.name] ??= []).push(v)
    ctx.log(`${t.name}: ${test} = ${v.toFixed(1)}`)
    if (t.name === 'pemfs encrypted') rss.byTest[test] = Math.max(rss.byTest[test] ?? 0, rss.since)
    rss.since = 0
  }
  for (const t of targets) put('seq write 128k', t, (await fio(t.dir, `--rw=write --bs=128k --size=${size}`, 600000)).write.bw_bytes / 1e6)
  for (const t of targets) {
    await dropCaches()
    put('seq read 128k', t, (await fio(t.dir, `--rw=read --bs=128k --size=${size}`, 600000)).read.bw_bytes / 1e6)
  }
  for (const t of targets) {
    await dropCaches()
    put('randread 4k direct', t, (await fio(t.dir, `--rw=randread --bs=4k --size=${size} --direct=1 --time_based --runtime=${secs}`, secs * 1000 + 120000)).read.iops)
  }
  for (const t of targets) put('randwrite 4k direct', t, (await fio(t.dir, `--rw=randwrite --bs=4k --size=${size} --direct=1 --time_based --runtime=${secs}`, secs * 1000 + 120000)).write.iops)
  for (const t of targets) await sh(`rm -f '${path.join(t.dir, 'fio.dat')}'`, { timeoutMs: 60000 })
  for (const t of targets) {
    const s = await sh(`node '${SMALL}' '${t.dir}' ${files}`, { timeoutMs: 600000 })
    if (s.code !== 0) throw new Error(`small files in ${t.dir}: ${s.stderr}`)
    put(`create+stat+unlink ${files} files`, t, files / (JSON.parse(s.stdout).ms / 1000))
  }
}

const UNITS: Record<string, string> = { 'seq write 128k': 'MB/s', 'seq read 128k': 'MB/s', 'randread 4k direct': 'IOPS', 'randwrite 4k direct': 'IOPS' }

export async function run (ctx: BenchContext): Promise<void> {
  const root = tempDir('fsbench')
  const plain = path.join(root, 'plain')
  const bypass = path.join(root, 'bypass')
  const crypt = path.join(root, 'crypt')
  const gcCipher = path.join(root, 'gocryptfs-cipher')
  const gcPlain = path.join(root, 'gocryptfs')
  const passBack = path.join(root, 'passthrough-backing')
  const passMnt = path.join(root, 'passthrough')
  for (const d of [plain, bypass, crypt, gcCipher, gcPlain, passBack, passMnt]) fs.mkdirSync(d)
  let c: Cluster | undefined
  let gcMounted = false
  let pass: ChildProcess | undefined
  const res: Results = {}
  try {
    c = await clusterWithHost('fsbench', () => policy(bypass, crypt))
    const daemons: Array<{ name: string, pid: number, rssAtStart: number }> = []
    for (const [name, d] of [['bypass', bypass], ['encrypted', crypt]]) {
      const r = await mount(c, d)
      if (r.code !== 0) throw new Error(`pemfs mount ${d}: ${r.stderr}`)
      const pid = Number(JSON.parse(r.stdout).pid)
      daemons.push({ name, pid, rssAtStart: processMemory(pid).rss })
    }
    pass = await startPassthrough(passMnt, passBack)
    const targets: Target[] = [{ name: 'plain', dir: plain }, { name: 'fuse passthrough', dir: passMnt }, { name: 'pemfs bypass', dir: bypass }, { name: 'pemfs encrypted', dir: crypt }]
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
    const rounds = ctx.quick ? 1 : 3
    const RSS_BUDGET_MIB = 120 // DESIGN §8: pemfs steady-state RSS through the whole filesystem benchmark
    const samples: Samples = {}
    const cryptPid = daemons.find(d => d.name === 'encrypted')?.pid ?? 0
    const rss: RssWatch = { since: 0, byTest: {} }
    const watch = setInterval(() => { rss.since = Math.max(rss.since, processMemory(cryptPid).rss) }, 100)
    try {
      for (let r = 1; r <= rounds; r++) {
        ctx.log(`round ${r} of ${rounds}`)
        await round(ctx, targets.map((_, i) => targets[(i + r - 1) % targets.length]), samples, rss)
      }
    } finally { clearInterval(watch) }
    for (const [test, byTarget] of Object.entries(samples)) {
      res[test] = {}
      for (const [name, xs] of Object.entries(byTarget)) res[test][name] = median(xs)
    }
    const spread = (test: string, name: string): string => (samples[test]?.[name] ?? []).map(v => v.toPrecision(3)).join('/')
    const roundsNote = (test: string, a: string, b: string): string | undefined => rounds > 1 ? `rounds ${spread(test, a)} vs ${spread(test, b)}` : undefined
    for (const [test, byTarget] of Object.entries(res)) {
      const unit = UNITS[test] ?? 'files/s'
      const base = byTarget.gocryptfs ?? null
      for (const t of targets) {
        if (t.name === 'gocryptfs') continue
        ctx.report({ name: `${test} ${t.name}`, value: byTarget[t.name], unit, baseline: base === null ? null : 'gocryptfs', baseline_value: base, note: gcNote ?? roundsNote(test, t.name, 'gocryptfs') })
      }
      if (base !== null) ctx.report({ name: `${test} gocryptfs`, value: base, unit, baseline: 'plain dir', baseline_value: byTarget.plain })
      for (const t of ['pemfs bypass', 'pemfs encrypted']) {
        ctx.report({ name: `${test} ${t} vs passthrough`, value: byTarget[t], unit, baseline: 'fuse passthrough', baseline_value: byTarget['fuse passthrough'], note: roundsNote(test, t, 'fuse passthrough') })
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
    await unmountAll(c)
    if (gcMounted || isMounted(gcPlain)) {
      const u = await sh(`fusermount -u '${gcPlain}'`, { timeoutMs: 10000 })
      if (u.code !== 0) await sh(`umount -l '${gcPlain}'`, { timeoutMs: 5000 })
    }
    if (c !== undefined) await stopSpd(c.spd)
    stopAll()
    for (const d of [root, c?.work, c === undefined ? undefined : path.dirname(c.spd.dir)]) {
      if (d !== undefined && !isMounted(d)) fs.rmSync(d, { recursive: true, force: true })
    }
  }
}
