// The engine pool's lifecycle (native/job_pool.cc): in-flight batches keep a process alive, an idle pool does not,
// and exiting or terminating a worker with batches queued is clean.
import test from 'ava'
import { spawnSync } from 'node:child_process'
import path from 'node:path'
import { Worker } from 'node:worker_threads'
import { OVERHEAD_BYTES, createEngine, generateKey, sealedLength } from '../../lib/native/crypto-engine'

const ENGINE = JSON.stringify(path.join(__dirname, '../../lib/native/crypto-engine.js'))

// A prelude for child scripts: an engine that sends every batch to the pool, and `big()` making a 4 MiB batch.
const PRELUDE = `
const c = require(${ENGINE})
const e = c.createEngine({ threads: 1, syncBelowBytes: 0 }); const k = c.generateKey()
const big = () => { const lens = new Uint32Array(64).fill(65536); return { lens, pt: Buffer.alloc(64 * 65536, 7), out: Buffer.alloc(c.sealedLength(lens)) } }
`

function node (script: string): { status: number | null, signal: string | null, stdout: string, stderr: string } {
  const r = spawnSync(process.execPath, ['-e', PRELUDE + script], { encoding: 'utf8', timeout: 30000 })
  return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr }
}

test('a batch in flight keeps the process alive until it settles; then the idle pool lets it exit', t => {
  const r = node(`const b = big(); e.sealBatch(k, b.pt, b.lens, null, 0, b.out).then(n => console.log('sealed', n))`)
  t.is(r.signal, null, 'exited by itself (a timeout would kill it)')
  t.is(r.status, 0, r.stderr)
  t.is(r.stdout.trim(), `sealed ${64 * (65536 + OVERHEAD_BYTES)}`)
})

test('process.exit with batches queued exits cleanly, with its own code', t => {
  const r = node(`for (let i = 0; i < 16; i++) { const b = big(); void e.sealBatch(k, b.pt, b.lens, null, 0, b.out) }
process.exit(3)`)
  t.is(r.signal, null)
  t.is(r.status, 3, r.stderr)
})

test('terminating a worker with batches queued leaves the main thread\'s engine working', async t => {
  for (let round = 0; round < 3; round++) {
    const w = new Worker(`${PRELUDE}
const { parentPort } = require('node:worker_threads')
for (let i = 0; i < 16; i++) { const b = big(); void e.sealBatch(k, b.pt, b.lens, null, 0, b.out) }
setInterval(() => {}, 1000) // only terminate() ends it
parentPort.postMessage('queued')`, { eval: true })
    await new Promise<void>((resolve, reject) => { w.once('message', () => resolve()); w.once('error', reject) })
    t.is(await w.terminate(), 1)
  }
  const engine = createEngine({ threads: 2, syncBelowBytes: 0 })
  const key = generateKey()
  const lens = new Uint32Array(32).fill(65536)
  const pt = Buffer.alloc(32 * 65536, 9)
  const sealed = Buffer.alloc(sealedLength(lens))
  const back = Buffer.alloc(pt.length)
  await engine.sealBatch(key, pt, lens, null, 0, sealed)
  await engine.openBatch(key, sealed, lens.map(l => l + OVERHEAD_BYTES), null, 0, back)
  t.true(back.equals(pt))
})

test('more batches in flight than pool threads all settle with their own results', async t => {
  const engine = createEngine({ threads: 1, syncBelowBytes: 0 })
  const key = generateKey()
  const jobs = Array.from({ length: 40 }, (_, i) => {
    const lens = Uint32Array.from({ length: 1 + (i % 7) }, (_, j) => 1000 * (i + 1) + j)
    const pt = Buffer.alloc(lens.reduce((a, b) => a + b, 0), i)
    return { lens, pt, out: Buffer.alloc(sealedLength(lens)), back: Buffer.alloc(pt.length) }
  })
  const sealedBytes = await Promise.all(jobs.map(async j => await engine.sealBatch(key, j.pt, j.lens, null, 0, j.out)))
  t.deepEqual(sealedBytes, jobs.map(j => j.out.length))
  await Promise.all(jobs.map(async j => await engine.openBatch(key, j.out, j.lens.map(l => l + OVERHEAD_BYTES), null, 0, j.back)))
  for (const j of jobs) t.true(j.back.equals(j.pt))
})

test('the pool starts one thread per core of the affinity mask, on the first async batch', t => {
  const script = (cores: string): string => `
const fs = require('node:fs')
const pool = () => fs.readdirSync('/proc/self/task').filter(t => fs.readFileSync('/proc/self/task/' + t + '/comm', 'utf8').trim() === 'pem-crypto').length
const before = pool()
const b = big()
e.sealBatch(k, b.pt, b.lens, null, 0, b.out).then(() => {
  console.log(JSON.stringify({ cores: ${cores}, crypto: c.CRYPTO_THREADS, before, started: pool() }))
})`
  const all = node(script('require("node:os").availableParallelism()'))
  t.is(all.status, 0, all.stderr)
  const a = JSON.parse(all.stdout) as { cores: number, crypto: number, before: number, started: number }
  t.is(a.crypto, Math.min(a.cores, 64))
  t.is(a.before, 0, 'no pool before the first async batch')
  t.is(a.started, a.crypto, 'the first async batch started exactly the pool (threads named pem-crypto)')
  const r = spawnSync('taskset', ['-c', '0', process.execPath, '-e', PRELUDE + script('1')], { encoding: 'utf8', timeout: 30000 })
  t.is(r.status, 0, r.stderr)
  t.deepEqual(JSON.parse(r.stdout), { cores: 1, crypto: 1, before: 0, started: 1 }, 'pinned to one core: one pool thread')
})
