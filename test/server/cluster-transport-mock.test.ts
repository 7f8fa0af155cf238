// The in-memory cluster network itself: deterministic per seed, each fault knob does what it says, partitions are
// directional, and the virtual clock runs events in (time, insertion) order.
import test from 'ava'
import { MockNetwork, VirtualClock } from '../../lib/server/cluster/transport-mock'
import type { Packet } from '../../lib/server/cluster/transport'

function traffic (net: MockNetwork, n = 200): Array<[string, string]> {
  const got: Array<[string, string]> = []
  net.attach('b', p => got.push([p.from, p.bytes.toString('hex')]))
  const a = net.transport('a')
  for (let i = 0; i < n; i++) a.send({ kind: 'msg', from: 'ignored', to: 'b', bytes: Buffer.from([i & 255, i >> 8]) })
  net.clock.runFor(10_000)
  return got
}

test('same seed and knobs give the same deliveries in the same order; another seed differs', t => {
  const knobs = { drop: 0.2, duplicate: 0.2, reorder: 0.5, reorderMs: 300, corrupt: 0.1, jitterMs: 50 }
  t.deepEqual(traffic(new MockNetwork(5, knobs)), traffic(new MockNetwork(5, knobs)))
  t.notDeepEqual(traffic(new MockNetwork(5, knobs)), traffic(new MockNetwork(6, knobs)))
})

test('the sender address is set by the network, never by the packet', t => {
  const got = traffic(new MockNetwork(1), 1)
  t.is(got[0][0], 'a')
})

test('drop, duplicate and corrupt knobs', t => {
  const dropAll = new MockNetwork(1, { drop: 1 }); t.is(traffic(dropAll).length, 0); t.is(dropAll.stats.dropped, 200)
  const dup = new MockNetwork(1, { duplicate: 1 }); t.is(traffic(dup).length, 400)
  const cor = new MockNetwork(1, { corrupt: 1 })
  const got = traffic(cor, 50)
  got.forEach(([, hex], i) => {
    const x = Buffer.from(hex, 'hex'); const orig = Buffer.from([i & 255, i >> 8])
    let bits = 0; for (let k = 0; k < 2; k++) { let d = x[k] ^ orig[k]; while (d !== 0) { bits += d & 1; d >>= 1 } }
    t.is(bits, 1, 'exactly one bit flipped')
  })
})

test('reorder knob changes the order; without it one link stays in order', t => {
  const inOrder = traffic(new MockNetwork(1, { jitterMs: 0 }), 50).map(([, h]) => h)
  t.deepEqual(inOrder, [...inOrder].sort((x, y) => Buffer.from(x, 'hex').readUInt16LE(0) - Buffer.from(y, 'hex').readUInt16LE(0)))
  const shuffled = traffic(new MockNetwork(1, { reorder: 1, reorderMs: 500 }), 50).map(([, h]) => h)
  t.notDeepEqual(shuffled, inOrder)
  t.deepEqual([...shuffled].sort(), [...inOrder].sort(), 'nothing lost or invented')
})

test('partitions are directional; a cut made while a packet is in flight stops it; heal restores', t => {
  const net = new MockNetwork(1, { delayMs: 100 })
  const seen: string[] = []
  for (const x of ['a', 'b']) net.attach(x, (p: Packet) => seen.push(`${p.from}>${p.to}`))
  const send = (from: string, to: string): void => net.transport(from).send({ kind: 'msg', from, to, bytes: Buffer.from([1]) })
  net.partition('a', 'b', false)
  send('a', 'b'); send('b', 'a'); net.clock.runFor(200)
  t.deepEqual(seen, ['b>a'])
  net.heal(); send('a', 'b'); net.clock.runFor(50); net.partition('b', 'a'); net.clock.runFor(200)
  t.deepEqual(seen, ['b>a'], 'cut both ways while in flight')
  net.heal(); send('a', 'b'); net.clock.runFor(200)
  t.deepEqual(seen, ['b>a', 'a>b'])
})

test('virtual clock: time order, ties in insertion order, events scheduled in the past run now', t => {
  const c = new VirtualClock(); const order: string[] = []
  c.at(30, () => order.push('c')); c.at(10, () => order.push('a1')); c.at(10, () => order.push('a2'))
  c.at(20, () => { order.push('b'); c.at(5, () => order.push('late')) })
  c.runUntil(100)
  t.deepEqual(order, ['a1', 'a2', 'b', 'late', 'c'])
  t.is(c.now(), 100)
})
