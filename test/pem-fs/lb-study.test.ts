// The load-balancing study as a regression check: short fixed-seed runs of benchmarks/lb/sim.ts (40 hosts, 5 unequal
// servers, one slows to 25 % mid-run; 56 % and 72 % of capacity offered) where pemfs's default must beat round robin.
import test from 'ava'
import { simulate, type SimConfig, type SimResult } from '../../benchmarks/lb/sim'

const SHORT: Partial<SimConfig> = { seed: 1, durationMs: 12_000, slow: { server: 1, atMs: 4800, factor: 0.25 } }
const rate = (r: SimResult): number => r.rejected / r.attempts

for (const [label, offered] of [['busy (56 %)', 2800], ['heavy (72 %)', 3600]] as const) {
  test(`${label}: default beats round robin on p99 latency and on rejections, serves at least as many`, t => {
    const cfg = { ...SHORT, offered }
    const rr = simulate('round-robin', cfg)
    const def = simulate('default', cfg)
    t.log(`round-robin: p99 ${rr.p99.toFixed(1)} ms, rejected ${(100 * rate(rr)).toFixed(2)} %, served ${rr.served}/${rr.requests}`)
    t.log(`default:     p99 ${def.p99.toFixed(1)} ms, rejected ${(100 * rate(def)).toFixed(2)} %, served ${def.served}/${def.requests}`)
    t.is(rr.requests, def.requests, 'both met the same arrivals')
    t.true(rr.requests > offered * 9, 'a real load was offered')
    t.true(def.p99 < rr.p99, 'p99')
    t.true(rate(def) < rate(rr), 'rejected attempts')
    t.true(def.served >= rr.served, 'requests served')
    t.true(def.served >= 0.95 * def.requests, 'the fleet has the capacity: at most 5 % not served')
  })
}

test('the simulation is deterministic: same seed, same run', t => {
  const cfg = { ...SHORT, offered: 2800, durationMs: 6000, slow: { server: 1, atMs: 2400, factor: 0.25 } }
  t.deepEqual(simulate('default', cfg).seconds, simulate('default', cfg).seconds)
})
