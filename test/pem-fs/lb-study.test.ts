// The load-balancing study as a regression check: a short fixed-seed run of benchmarks/lb/sim.ts (40 hosts, 5 unequal
// servers, one slows to 25 % mid-run, 56 % of capacity offered) where pemfs's default must beat round robin.
import test from 'ava'
import { simulate, type SimConfig } from '../../benchmarks/lb/sim'

const SHORT: Partial<SimConfig> = { seed: 1, offered: 2800, durationMs: 12_000, slow: { server: 1, atMs: 4800, factor: 0.25 } }

test('default beats round robin on p99 latency and on rejections; the simulation is deterministic', t => {
  const rr = simulate('round-robin', SHORT)
  const def = simulate('default', SHORT)
  const rate = (r: typeof rr): number => r.rejected / r.attempts
  t.log(`round-robin: p99 ${rr.p99.toFixed(1)} ms, rejected ${(100 * rate(rr)).toFixed(2)} %, served ${rr.served}/${rr.requests}`)
  t.log(`default:     p99 ${def.p99.toFixed(1)} ms, rejected ${(100 * rate(def)).toFixed(2)} %, served ${def.served}/${def.requests}`)
  t.is(rr.requests, def.requests, 'both met the same arrivals')
  t.true(rr.requests > 20_000)
  t.true(def.p99 < rr.p99, 'p99')
  t.true(rate(def) < rate(rr), 'rejected attempts')
  t.true(def.served >= rr.served, 'requests served')
  t.deepEqual(simulate('default', SHORT).seconds, def.seconds, 'same seed, same run')
})
