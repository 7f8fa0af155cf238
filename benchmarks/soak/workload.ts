// Child process of benchmarks/soak/soak.bench.ts: for SECONDS, cycles through sequential 16 MiB write + fsync +
// read-back, 4 KiB random overwrites checked against a copy kept here, 200 small files created, stat'ed and removed,
// and appends to a log file, all in DIR; every byte read back is compared. Prints {"cycles", "bytes", "errors",
// "firstError"} at the end. Runs in its own process so the benchmark never touches the FUSE mount itself.
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'

const [dir, secondsArg] = process.argv.slice(2)
const until = Date.now() + Number(secondsArg) * 1000
const SEQ_BYTES = 16 * 1024 * 1024
const CHUNK = 128 * 1024
const BLOCK = 4096
let cycles = 0
let bytes = 0
let errors = 0
let firstError: string | null = null

function fail (what: string): void {
  errors++
  firstError ??= what
}

function sequential (file: string, seed: number): void {
  const chunk = crypto.createHash('sha512').update(String(seed)).digest()
  const data = Buffer.alloc(CHUNK)
  for (let i = 0; i < CHUNK; i += chunk.length) chunk.copy(data, i)
  const fd = fs.openSync(file, 'w')
  for (let off = 0; off < SEQ_BYTES; off += CHUNK) { data[0] = off / CHUNK & 0xff; fs.writeSync(fd, data, 0, CHUNK, off) }
  fs.fsyncSync(fd)
  fs.closeSync(fd)
  const back = Buffer.alloc(CHUNK)
  const rfd = fs.openSync(file, 'r')
  for (let off = 0; off < SEQ_BYTES; off += CHUNK) {
    const n = fs.readSync(rfd, back, 0, CHUNK, off)
    data[0] = off / CHUNK & 0xff
    if (n !== CHUNK || !back.equals(data)) fail(`sequential read-back differs at ${off}`)
  }
  fs.closeSync(rfd)
  bytes += 2 * SEQ_BYTES
}

function random (file: string, model: Buffer): void {
  const fd = fs.openSync(file, 'r+')
  const block = Buffer.alloc(BLOCK)
  for (let i = 0; i < 200; i++) {
    const at = crypto.randomInt(model.length / BLOCK) * BLOCK
    crypto.randomFillSync(block)
    fs.writeSync(fd, block, 0, BLOCK, at)
    block.copy(model, at)
  }
  const back = Buffer.alloc(model.length)
  if (fs.readSync(fd, back, 0, back.length, 0) !== back.length || !back.equals(model)) fail('random overwrites read back differently')
  fs.closeSync(fd)
  bytes += 200 * BLOCK + model.length
}

function smallFiles (sub: string): void {
  fs.mkdirSync(sub, { recursive: true })
  const data = Buffer.from(`small file of cycle ${cycles}\n`)
  for (let i = 0; i < 200; i++) fs.writeFileSync(path.join(sub, `f${i}`), data)
  for (let i = 0; i < 200; i++) if (fs.statSync(path.join(sub, `f${i}`)).size !== data.length) fail(`small file f${i} has the wrong size`)
  for (let i = 0; i < 200; i++) fs.unlinkSync(path.join(sub, `f${i}`))
}

const model = crypto.randomBytes(1024 * 1024)
fs.writeFileSync(path.join(dir, 'random.dat'), model)
const log = path.join(dir, 'append.log')
let logBytes = 0
while (Date.now() < until) {
  try {
    sequential(path.join(dir, 'seq.dat'), cycles)
    random(path.join(dir, 'random.dat'), model)
    smallFiles(path.join(dir, 'small'))
    const line = `cycle ${cycles} at ${new Date().toISOString()}\n`
    fs.appendFileSync(log, line)
    logBytes += line.length
    if (fs.statSync(log).size !== logBytes) fail('append log has the wrong size')
  } catch (err) {
    fail(`cycle ${cycles}: ${(err as Error).message}`)
  }
  cycles++
}
process.stdout.write(JSON.stringify({ cycles, bytes, errors, firstError }) + '\n')
