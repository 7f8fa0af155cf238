// trimHeap(): freed C-heap pages go back to the kernel (measured in a child with --expose-gc; RSS from /proc).
import test from 'ava'
import { execFileSync } from 'node:child_process'
import path from 'node:path'

const CHILD = `
const { trimHeap } = require(${JSON.stringify(path.join(__dirname, '../../lib/native/memory.js'))})
const rss = () => Number(/VmRSS:\\s+(\\d+)/.exec(require('fs').readFileSync('/proc/self/status', 'utf8'))[1]) / 1024
let big = Array.from({ length: 400 }, () => Buffer.allocUnsafeSlow(100 * 1024).fill(1)) // 40 MiB below the mmap threshold
const pin = Buffer.allocUnsafeSlow(1000).fill(2) // allocated after them: free() alone cannot shrink the heap
big = null; global.gc(); global.gc()
const freed = rss()
const trimmed = trimHeap()
console.log(JSON.stringify({ freed, trimmed, after: rss(), pin: pin.length }))
`

test('trimHeap gives 40 MiB of freed buffers back that free() kept', t => {
  const r = JSON.parse(execFileSync(process.execPath, ['--expose-gc', '-e', CHILD], { encoding: 'utf8' })) as { freed: number, trimmed: boolean, after: number }
  t.true(r.trimmed)
  t.true(r.freed - r.after > 25, `RSS ${r.freed.toFixed(1)} -> ${r.after.toFixed(1)} MiB`)
})
