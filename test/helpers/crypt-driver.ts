// Child process for the encrypted-mount tests: drives a file on a pemfs mount with plain POSIX calls (pread/pwrite,
// O_APPEND, ftruncate, truncate, rename, link) and checks every result against an in-memory model. Never run inside
// the process that serves the mount. Usage: node dist/test/helpers/crypt-driver.js roundtrip|model|writer|fill ARGS (prints JSON).
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import fc from 'fast-check'

function rng (seed: number): (n: number) => number { // xorshift32: the same sequence on every run
  let x = seed >>> 0 || 1
  return (n: number) => { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; return x % n }
}
function fail (msg: string): never { process.stdout.write(JSON.stringify({ ok: false, error: msg }) + '\n'); process.exit(1) }

function check (file: string, model: Buffer, what: string): void {
  const got = fs.readFileSync(file)
  if (got.length !== model.length) fail(`${what}: read ${got.length} bytes, expected ${model.length}`)
  if (!got.equals(model)) fail(`${what}: content differs (first at ${got.findIndex((x, i) => x !== model[i])})`)
  const fd = fs.openSync(file, 'r')
  const sizes = [fs.statSync(file).size, fs.lstatSync(file).size, fs.fstatSync(fd).size]
  fs.closeSync(fd)
  if (sizes.some(s => s !== model.length)) fail(`${what}: stat/lstat/fstat sizes ${sizes} != ${model.length}`)
}

interface Model { data: Buffer }
interface Real { name: string, old: number, n: number }
type Cmd = fc.Command<Model, Real>

/** Deterministic bytes (fast-check replays a failure from its seed). */
function bytes (len: number, seed: number): Buffer {
  const r = rng(seed)
  const b = Buffer.alloc(len)
  for (let i = 0; i < len; i++) b[i] = r(256)
  return b
}
function sizes (m: Model, r: Real): void {
  const fd = fs.openSync(r.name, 'r')
  const got = [fs.statSync(r.name).size, fs.lstatSync(r.name).size, fs.fstatSync(fd).size, fs.fstatSync(r.old).size]
  fs.closeSync(fd)
  if (got.some(x => x !== m.data.length)) throw new Error(`stat/lstat/fstat/old fstat ${got.join('/')} != ${m.data.length}`)
}
function put (m: Model, off: number, data: Buffer): void {
  const next = Buffer.alloc(Math.max(m.data.length, off + data.length))
  m.data.copy(next); data.copy(next, off); m.data = next
}
function resize (m: Model, size: number): void {
  const next = Buffer.alloc(size); m.data.copy(next, 0, 0, Math.min(size, m.data.length)); m.data = next
}
const step = (label: string, run: (m: Model, r: Real) => void): Cmd => ({
  check: () => true,
  run: (m, r) => { run(m, r); sizes(m, r) },
  toString: () => label
})
const OFF = fc.integer({ min: 0, max: 140_000 })
const LEN = fc.integer({ min: 1, max: 20_000 })
const SEED = fc.integer({ min: 1, max: 0x7fffffff })
const COMMANDS = [
  fc.tuple(OFF, LEN, SEED, fc.boolean()).map(([off, len, seed, old]) => step(`pwrite(${off}, ${len}${old ? ', old fd' : ''})`, (m, r) => {
    const data = bytes(len, seed)
    const fd = old ? r.old : fs.openSync(r.name, 'r+')
    fs.writeSync(fd, data, 0, len, off)
    if (!old) fs.closeSync(fd)
    put(m, off, data)
  })),
  fc.tuple(LEN, SEED).map(([len, seed]) => step(`append(${len})`, (m, r) => {
    const data = bytes(len, seed)
    fs.appendFileSync(r.name, data)
    put(m, m.data.length, data)
  })),
  fc.tuple(OFF, fc.boolean()).map(([size, viaFd]) => step(`${viaFd ? 'ftruncate' : 'truncate'}(${size})`, (m, r) => {
    if (viaFd) fs.ftruncateSync(r.old, size); else fs.truncateSync(r.name, size)
    resize(m, size)
  })),
  fc.boolean().map(link => step(link ? 'link+unlink' : 'rename', (_m, r) => {
    const next = `${r.name.replace(/\.\d+$/, '')}.${++r.n}`
    if (link) { fs.linkSync(r.name, next); fs.unlinkSync(r.name) } else fs.renameSync(r.name, next)
    r.name = next
  })),
  fc.tuple(OFF, LEN).map(([off, len]) => step(`read(${off}, ${len})`, (m, r) => {
    const fd = fs.openSync(r.name, 'r')
    const got = Buffer.alloc(len)
    const n = fs.readSync(fd, got, 0, len, off)
    fs.closeSync(fd)
    const want = m.data.subarray(Math.min(off, m.data.length), Math.min(off + len, m.data.length))
    if (!got.subarray(0, n).equals(want)) throw new Error(`read(${off}, ${len}): ${n} bytes differ from the model's ${want.length}`)
  })),
  fc.constant(step('read all', (m, r) => {
    if (!fs.readFileSync(r.name).equals(m.data)) throw new Error('whole file differs from the model')
  }))
]

const cmds: Record<string, (...a: string[]) => Record<string, unknown>> = {
  // roundtrip DIR SIZES: write each size in one go and in odd chunks, read it back whole and in odd pieces
  roundtrip (dir: string, sizes: string) {
    for (const size of sizes.split(',').map(Number)) {
      const data = crypto.randomBytes(size)
      const a = path.join(dir, `rt-${size}`)
      fs.writeFileSync(a, data)
      check(a, data, `whole ${size}`)
      const b = path.join(dir, `rt-${size}-chunked`)
      const fd = fs.openSync(b, 'w+')
      for (let off = 0; off < size; off += 3001) fs.writeSync(fd, data, off, Math.min(3001, size - off), off)
      const back = Buffer.alloc(size)
      for (let off = 0; off < size; off += 5003) fs.readSync(fd, back, off, Math.min(5003, size - off), off)
      fs.closeSync(fd)
      if (!back.equals(data)) fail(`chunked ${size}: content differs`)
      check(b, data, `chunked ${size}`)
    }
    return { ok: true }
  },
  // model DIR SEED RUNS: fsx-style fast-check command sequences (pwrite through a fresh fd or through an fd opened
  // before everything else, O_APPEND, truncate, ftruncate, rename, link+unlink, reads) against an in-memory model;
  // after every command stat, lstat, fstat of a fresh fd and fstat of the old fd must give the model's size
  model (dir: string, seed: string, runs: string) {
    let run = 0
    fc.assert(fc.property(fc.commands(COMMANDS, { maxCommands: 40 }), cmds => {
      const name = path.join(dir, `model-${seed}-${run++}`)
      fs.writeFileSync(name, '')
      const real: Real = { name, old: fs.openSync(name, 'r+'), n: 0 }
      try { fc.modelRun(() => ({ model: { data: Buffer.alloc(0) }, real }), cmds) } finally { fs.closeSync(real.old) }
    }), { seed: Number(seed), numRuns: Number(runs) })
    return { ok: true, runs: run }
  },
  // writer FILE PART PARTS CHUNK ROUNDS: writes chunk-sized pieces i*PARTS+PART (interleaved, unaligned to blocks)
  writer (file: string, part: string, parts: string, chunk: string, rounds: string) {
    const fd = fs.openSync(file, 'r+')
    for (let i = 0; i < Number(rounds); i++) {
      const k = i * Number(parts) + Number(part)
      fs.writeSync(fd, Buffer.alloc(Number(chunk), 65 + Number(part)), 0, Number(chunk), k * Number(chunk))
    }
    fs.closeSync(fd)
    return { ok: true }
  },
  // slow FILE CHUNKS MS: one handle writes and reads back a chunk every MS ms (outliving the decision's grant)
  slow (file: string, chunks: string, ms: string) {
    const fd = fs.openSync(file, 'w+')
    const model = crypto.randomBytes(Number(chunks) * 5000)
    for (let i = 0; i < Number(chunks); i++) {
      fs.writeSync(fd, model, i * 5000, 5000, i * 5000)
      const back = Buffer.alloc(5000)
      fs.readSync(fd, back, 0, 5000, i * 5000)
      if (!back.equals(model.subarray(i * 5000, (i + 1) * 5000))) fail(`chunk ${i} read back differs`)
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, Number(ms))
    }
    fs.closeSync(fd)
    check(file, model, 'slow')
    return { ok: true }
  },
  // fill FILE TEXT COUNT: a file of TEXT repeated, then fsync
  fill (file: string, text: string, count: string) {
    const fd = fs.openSync(file, 'w')
    fs.writeSync(fd, Buffer.from(text.repeat(Number(count))))
    fs.fsyncSync(fd)
    fs.fdatasyncSync(fd)
    fs.closeSync(fd)
    return { ok: true }
  }
}

const [cmd, ...args] = process.argv.slice(2)
try {
  process.stdout.write(JSON.stringify(cmds[cmd](...args)) + '\n')
} catch (err) {
  const cause = (err as { cause?: unknown }).cause
  fail(`${String((err as NodeJS.ErrnoException).code ?? '')} ${(err as Error).message}${cause instanceof Error ? ` — ${cause.message}` : ''}`)
}
