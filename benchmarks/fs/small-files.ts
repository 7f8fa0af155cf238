// Child process of benchmarks/fs/fs.bench.ts: create (write 100 bytes), stat, then unlink N small files in DIR;
// prints {"ms": total elapsed}. Runs in its own process so the benchmark never touches a FUSE mount itself.
import fs from 'node:fs'
import path from 'node:path'

const [dir, nArg] = process.argv.slice(2)
const n = Number(nArg)
const sub = path.join(dir, `small-${process.pid}`)
fs.mkdirSync(sub)
const data = Buffer.alloc(100, 0x61)
const start = process.hrtime.bigint()
for (let i = 0; i < n; i++) fs.writeFileSync(path.join(sub, `f${i}`), data)
for (let i = 0; i < n; i++) fs.statSync(path.join(sub, `f${i}`))
for (let i = 0; i < n; i++) fs.unlinkSync(path.join(sub, `f${i}`))
const ms = Number(process.hrtime.bigint() - start) / 1e6
fs.rmdirSync(sub)
process.stdout.write(JSON.stringify({ ms }) + '\n')
