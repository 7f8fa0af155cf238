// `pemfs encrypt` of a tree already there (issue 19) against `cp -a` of the same tree to the same disk in the same
// run (goal: conversion ≥ 0.8× cp's throughput), and an application's read latency through the mount while the
// conversion runs against the same reads with the mount idle. Tree: about 200 MiB of random (incompressible) data in
// mixed sizes (3 × 32 MiB, 300 × 256 KiB, 1000 × 0–20 KiB). cp -a (then sync) runs before and after the conversion;
// its baseline is the mean of both. The reader is its own process: it opens one of the small files at random, reads
// it whole, closes it, 200 times a second, and prints each open-to-close time.
import { spawn } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { percentile, type BenchContext } from '../harness'
import { cli, ROOT } from '../../scripts/procs'
import { isMounted, sh, tempDir } from '../../test/helpers/mounts'

const READER = `
const fs = require('node:fs')
const [dir, n, stopFile] = [process.argv[1], Number(process.argv[2]), process.argv[3]]
const out = []
const buf = Buffer.alloc(1 << 16)
const tick = () => {
  if (fs.existsSync(stopFile)) { process.stdout.write(JSON.stringify(out)); return }
  const f = dir + '/small/s' + Math.floor(Math.random() * n)
  const t0 = process.hrtime.bigint()
  const fd = fs.openSync(f, 'r')
  while (fs.readSync(fd, buf, 0, buf.length, null) > 0) {}
  fs.closeSync(fd)
  out.push(Number(process.hrtime.bigint() - t0) / 1e6)
  setTimeout(tick, 5)
}
tick()
`

/** Read latencies (ms) of the reader process over `dir` until `whileRunning` settles. */
async function readLatencies (dir: string, smallFiles: number, whileRunning: Promise<unknown>, stopFile: string): Promise<number[]> {
  fs.rmSync(stopFile, { force: true })
  const child = spawn(process.execPath, ['-e', READER, dir, String(smallFiles), stopFile], { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  child.stdout.on('data', (c: Buffer) => { out += c.toString() })
  const exited = new Promise<void>(resolve => child.on('exit', () => resolve()))
  try { await whileRunning } finally { fs.writeFileSync(stopFile, '') }
  await exited
  return (JSON.parse(out) as number[]).sort((a, b) => a - b)
}

function makeTree (dir: string, quick: boolean): { bytes: number, small: number } {
  const scale = quick ? 10 : 1
  let bytes = 0
  const put = (rel: string, n: number): void => {
    fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true })
    fs.writeFileSync(path.join(dir, rel), crypto.randomBytes(n))
    bytes += n
  }
  for (let i = 0; i < 3; i++) put(`large/l${i}`, (32 << 20) / scale)
  for (let i = 0; i < 300 / scale; i++) put(`medium/${i % 10}/m${i}`, 256 << 10)
  const small = 1000 / scale
  for (let i = 0; i < small; i++) put(`small/s${i}`, crypto.randomInt(0, 20 << 10))
  return { bytes, small }
}

async function timedCp (from: string, to: string): Promise<number> {
  const t0 = performance.now()
  const r = await sh(`cp -a '${from}' '${to}' && sync`, { timeoutMs: 300000 })
  if (r.code !== 0) throw new Error(`cp -a: ${r.stderr}`)
  return (performance.now() - t0) / 1000
}

export async function run (ctx: BenchContext): Promise<void> {
  const root = tempDir('convert-bench')
  const dir = path.join(root, 'data')
  const cfg = path.join(root, 'config')
  const stopFile = path.join(root, 'stop-reading')
  fs.mkdirSync(dir)
  try {
    const { bytes, small } = makeTree(dir, ctx.quick)
    await sh('sync', { timeoutMs: 120000 })
    const cpBefore = await timedCp(dir, path.join(root, 'copy1'))
    const policy = path.join(root, 'policy.yaml')
    fs.writeFileSync(policy, `format: 1\nkeys: [default]\nguards:\n  ${dir}:\n    rules:\n      - id: store-file\n        resources: { files: [/.pemfs-embedded, /.pemfs-embedded.tmp] }\n        effect: deny\n      - id: convert-as-root\n        actions: [convert]\n        users: { uids: [0] }\n        effect: permit\n      - id: sealed\n        effect: apply_key(default)\n        placement: host\n`)
    const m = await cli('pemfs', ['mount', dir, '--embedded', '--policy', policy, '--config-dir', cfg], {}, 30000)
    if (m.code !== 0) throw new Error(`pemfs mount: ${m.stderr}`)
    const idleBefore = await readLatencies(dir, small, new Promise(resolve => setTimeout(resolve, ctx.quick ? 1000 : 5000)), stopFile)

    const t0 = performance.now()
    const conversion = new Promise<string>((resolve, reject) => {
      const c = spawn(process.execPath, [path.join(ROOT, 'bin', 'pemfs.js'), 'encrypt', dir, '--config-dir', cfg, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] })
      let out = ''
      let err = ''
      c.stdout.on('data', (b: Buffer) => { out += b.toString() })
      c.stderr.on('data', (b: Buffer) => { err += b.toString() })
      c.on('exit', code => code === 0 ? resolve(out) : reject(new Error(`pemfs encrypt exited ${String(code)}: ${err}`)))
    })
    const during = await readLatencies(dir, small, conversion, stopFile)
    const convertS = (performance.now() - t0) / 1000
    const done = (await conversion).split('\n').filter(Boolean).map(l => JSON.parse(l) as Record<string, unknown>).find(e => e.event === 'done')
    if (done === undefined || done.failed !== 0 || done.skipped !== 0) throw new Error(`conversion incomplete: ${JSON.stringify(done)}`)
    const idleAfter = await readLatencies(dir, small, new Promise(resolve => setTimeout(resolve, ctx.quick ? 1000 : 5000)), stopFile)
    const cpAfter = await timedCp(path.join(root, 'copy1'), path.join(root, 'copy2'))

    const mib = bytes / 1048576
    const cpS = (cpBefore + cpAfter) / 2
    const mbps = (s: number): number => Math.round(bytes / 1e6 / s * 10) / 10
    const pct = (xs: number[], p: number): number => Math.round(percentile(xs, p) * 100) / 100
    const p99 = (xs: number[]): number => pct(xs, 99)
    ctx.log(`tree ${mib.toFixed(0)} MiB, ${String(done.converted)} files converted in ${convertS.toFixed(2)} s (run's own ${String(done.seconds)} s); cp -a + sync ${cpBefore.toFixed(2)} s before, ${cpAfter.toFixed(2)} s after`)
    const summary = (what: string, xs: number[]): string => `${what} p50 ${pct(xs, 50)} p99 ${p99(xs)} ms (${xs.length} reads)`
    ctx.log(`reads: ${summary('idle before (plaintext)', idleBefore)}; ${summary('during', during)}; ${summary('idle after (encrypted)', idleAfter)}`)
    ctx.report({ name: `pemfs encrypt of ${mib.toFixed(0)} MiB mixed tree (wall, goal ≥ 0.8×)`, value: mbps(convertS), unit: 'MB/s', baseline: 'cp -a + sync, same tree and disk (mean of before and after)', baseline_value: mbps(cpS) })
    ctx.report({ name: 'app read p99 (open, read whole small file, close) during pemfs encrypt', value: p99(during), unit: 'ms', baseline: 'same reads, mount idle after the conversion', baseline_value: p99(idleAfter), note: `idle before, files still plaintext: p99 ${p99(idleBefore)} ms` })
  } finally {
    fs.writeFileSync(stopFile, '')
    if (isMounted(dir)) await cli('pemfs', ['unmount', dir, '--lazy', '--config-dir', cfg], {}, 30000)
    if (isMounted(dir)) await sh(`umount -l '${dir}'`)
    if (!isMounted(dir)) fs.rmSync(root, { recursive: true, force: true })
  }
}
