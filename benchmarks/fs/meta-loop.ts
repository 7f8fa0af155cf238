// Child process of benchmarks/fs/fs.bench.ts: the reference metadata loop (../shared/bench/fs-bench.sh, row "meta"):
// create N files of 4 KiB in DIR/meta-PID, then stat each, then unlink each; prints {"s": total seconds, "create":
// files/s, "stat": files/s, "unlink": files/s}. Its own process, so the benchmark never touches a FUSE mount itself.
import fs from 'node:fs'
import path from 'node:path'

const [dir, nArg] = process.argv.slice(2)
const n = Number(nArg)
const sub = path.join(dir, `meta-${process.pid}`)
fs.mkdirSync(sub)
const data = Buffer.alloc(4096, 0x61)
const now = (): number => Number(process.hrtime.bigint()) / 1e9
const name = (i: number): string => path.join(sub, `f${i}`)
let t0 = now()
for (let i = 0; i < n; i++) { const fd = fs.openSync(name(i), 'w'); fs.writeSync(fd, data); fs.closeSync(fd) }
const create = now() - t0; t0 = now()
for (let i = 0; i < n; i++) fs.statSync(name(i))
const stat = now() - t0; t0 = now()
for (let i = 0; i < n; i++) fs.unlinkSync(name(i))
const unlink = now() - t0
fs.rmdirSync(sub)
process.stdout.write(JSON.stringify({ s: create + stat + unlink, create: n / create, stat: n / stat, unlink: n / unlink }) + '\n')
