// BufferPool: size classes, reuse, the retained-bytes cap, foreign buffers and double returns.
import test from 'ava'
import { BufferPool, sizeClass } from '../../lib/channel/buffer-pool'

test('size classes: four per doubling, never below the request, at most a fifth wasted', t => {
  t.is(sizeClass(1), 4096)
  t.is(sizeClass(4096), 4096)
  t.is(sizeClass(4097), 5120)
  t.is(sizeClass(4136), 5120)
  t.is(sizeClass(131072), 131072)
  t.is(sizeClass(132352), 163840) // a FUSE request's 32 slots of 4,136 bytes
  t.is(sizeClass(529408), 655360) // a readahead chunk's 128 slots
  for (let n = 1; n < 3_000_000; n = Math.ceil(n * 1.013) + 1) {
    const c = sizeClass(n)
    t.true(c >= n, `${n} → ${c}`)
    if (n > 4096) t.true(c <= n * 1.25 + 1, `${n} → ${c}`)
    t.is(sizeClass(c), c) // a class is its own class
  }
})

test('a returned buffer is handed out again for any size of its class', t => {
  const pool = new BufferPool()
  const a = pool.take(5000)
  t.is(a.length, 5000)
  t.is(a.buffer.byteLength, 5120)
  a[0] = 7
  pool.give(a.subarray(10, 20)) // any view of it
  t.is(pool.retained, 5120)
  const b = pool.take(4200)
  t.is(b.buffer, a.buffer)
  t.is(b.length, 4200)
  t.is(pool.retained, 0)
  t.not(pool.take(4200).buffer, a.buffer) // the free list is empty again
})

test('the free lists keep at most maxBytes', t => {
  const pool = new BufferPool({ maxBytes: 3 * 8192 })
  const bufs = Array.from({ length: 5 }, () => pool.take(8192))
  for (const b of bufs) pool.give(b)
  t.is(pool.retained, 3 * 8192)
})

test('foreign buffers are not kept; a second return throws', t => {
  const pool = new BufferPool()
  pool.give(Buffer.allocUnsafe(100)) // a view of Node's shared 8 KiB slab: never pooled
  pool.give(Buffer.allocUnsafeSlow(8192))
  t.is(pool.retained, 0)
  const b = pool.take(8192)
  pool.give(b)
  t.throws(() => pool.give(b), { message: /twice/ })
  t.is(pool.retained, 8192)
})
