// Child process for the encrypted-mount tests: drives a file on a pemfs mount with plain POSIX calls (pread/pwrite,
// O_APPEND, ftruncate, truncate, rename, link) and checks every result against an in-memory model. Never run inside
// the process that serves the mount. Usage: node dist/test/helpers/crypt-driver.js roundtrip|model|writer|fill ARGS (prints JSON).
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'

function rng (seed: number): (n: number) => number { // xorshift32: the same sequence on every run
  let x = seed >>> 0 || 1
  return (n: number) => { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; return x % n }
}
const sha = (b: Buffer): string => crypto.createHash('sha256').update(b).digest('hex')
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
  // model FILE SEED OPS: random pwrites across block boundaries, O_APPEND writes, ftruncate/truncate up and down,
  // rename and link, each followed by a full read and stat comparison
  model (file: string, seed: string, ops: string) {
    const r = rng(Number(seed))
    let model = Buffer.alloc(0)
    fs.writeFileSync(file, model)
    let name = file
    for (let i = 0; i < Number(ops); i++) {
      const op = r(6)
      if (op <= 1) {
        const off = r(model.length + 9000)
        const data = crypto.randomBytes(1 + r(op === 0 ? 300 : 20000))
        const fd = fs.openSync(name, 'r+')
        fs.writeSync(fd, data, 0, data.length, off)
        fs.closeSync(fd)
        const next = Buffer.alloc(Math.max(model.length, off + data.length))
        model.copy(next); data.copy(next, off); model = next
      } else if (op === 2) {
        const data = crypto.randomBytes(1 + r(6000))
        fs.appendFileSync(name, data)
        model = Buffer.concat([model, data])
      } else if (op === 3) {
        const size = r(model.length + 10000)
        const fd = fs.openSync(name, 'r+')
        fs.ftruncateSync(fd, size)
        fs.closeSync(fd)
        const next = Buffer.alloc(size); model.copy(next, 0, 0, Math.min(size, model.length)); model = next
      } else if (op === 4) {
        const size = r(model.length + 1) // down (or equal) by path
        fs.truncateSync(name, size)
        model = model.subarray(0, size)
      } else {
        const other = `${file}.${i}`
        if (r(2) === 0) { fs.renameSync(name, other) } else { fs.linkSync(name, other); fs.unlinkSync(name) }
        name = other
      }
      check(name, model, `op ${i} (${op})`)
    }
    return { ok: true, size: model.length, sha: sha(model), name }
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
} catch (err) { fail(`${String((err as NodeJS.ErrnoException).code ?? '')} ${(err as Error).message}`) }
