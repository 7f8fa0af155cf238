// trimHeap() and tuneHeap(): freed C-heap pages go back to the kernel (children with --expose-gc; RSS from /proc).
import test from 'ava'
import { execFileSync } from 'node:child_process'
import path from 'node:path'

const CHILD = `
const { trimHeap } = require(${JSON.stringify(path.join(__dirname, '../../lib/native/memory.js'))})
const rss = () => Number(/VmRSS:\\s+(\\d+)/.exec(require('fs').readFileSync('/proc/self/status', 'utf8'))[1]) / 1024
// 40 MiB below the mmap threshold, each buffer followed by a small one that stays: free() alone cannot shrink the
// heap (a single small buffer after them could land in an older hole, and the freed top was then trimmed at once)
const pins = []
let big = Array.from({ length: 400 }, () => { const b = Buffer.allocUnsafeSlow(100 * 1024).fill(1); pins.push(Buffer.allocUnsafeSlow(16384).fill(2)); return b })
big = null; global.gc(); global.gc()
const freed = rss()
const trimmed = trimHeap()
console.log(JSON.stringify({ freed, trimmed, after: rss(), pins: pins.length }))
`

test('trimHeap gives 40 MiB of freed buffers back that free() kept', t => {
  const r = JSON.parse(execFileSync(process.execPath, ['--expose-gc', '-e', CHILD], { encoding: 'utf8' })) as { freed: number, trimmed: boolean, after: number }
  t.true(r.trimmed)
  t.true(r.freed - r.after > 25, `RSS ${r.freed.toFixed(1)} -> ${r.after.toFixed(1)} MiB`)
})

// 30 MiB of 1.5 MiB buffers after a 4 MiB one was freed (glibc then raises its mmap threshold to 4 MiB), each
// followed by a small buffer that stays, freed again: how much RSS goes back without a trim.
const TUNE_CHILD = (tune: boolean): string => `
const memory = require(${JSON.stringify(path.join(__dirname, '../../lib/native/memory.js'))})
const { raw } = require(${JSON.stringify(path.join(__dirname, '../../lib/native/binding.js'))})
const rss = () => Number(/VmRSS:\\s+(\\d+)/.exec(require('fs').readFileSync('/proc/self/status', 'utf8'))[1]) / 1024
const tuned = ${tune ? 'raw.tuneHeap(memory.HEAP_TUNING.arenas, memory.HEAP_TUNING.mmapThresholdBytes)' : 'false'}
let first = Buffer.allocUnsafeSlow(4 << 20).fill(1); first = null; global.gc(); global.gc()
const pins = []
let big = Array.from({ length: 20 }, () => { const b = Buffer.allocUnsafeSlow(1536 * 1024).fill(1); pins.push(Buffer.allocUnsafeSlow(16384).fill(2)); return b })
const held = rss()
big = null; global.gc(); global.gc()
console.log(JSON.stringify({ tuned, back: held - rss(), pins: pins.length }))
`

test('with HEAP_TUNING, freed 1.5 MiB buffers go back to the kernel at once; without it they stay until a trim', t => {
  const run = (tune: boolean): { tuned: boolean, back: number } => JSON.parse(execFileSync(process.execPath, ['--expose-gc', '-e', TUNE_CHILD(tune)], { encoding: 'utf8' }))
  const tuned = run(true)
  const plain = run(false)
  t.true(tuned.tuned)
  t.true(tuned.back > 25, `tuned: ${tuned.back.toFixed(1)} MiB back`)
  t.true(plain.back < 10, `untuned: ${plain.back.toFixed(1)} MiB back`)
})
