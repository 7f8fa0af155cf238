// Decoder time per input (the fuzz targets of scripts/fuzz.ts: frames and the frame stream, cluster messages, policy
// sets, file headers and slots, the store): the slowest single call and the median rate over mutated inputs, against
// the 250 ms bound at which `npm run fuzz` calls an input a hang (SLOW_MS). The tests check the outcomes only.
import { FUZZ_TARGETS, SLOW_MS, fuzzTarget } from '../../scripts/fuzz'
import type { BenchFn } from '../harness'

const SEED = 20261207

export const run: BenchFn = async ctx => {
  const budgetMs = ctx.quick ? 200 : 3000
  for (const target of FUZZ_TARGETS) {
    const t0 = performance.now()
    const r = fuzzTarget(target, { ms: budgetMs }, SEED)
    const seconds = (performance.now() - t0) / 1000
    if (r.failure !== undefined) ctx.log(`${target.name}: FAILED: ${r.failure.error.split('\n')[0]}`)
    ctx.report({ name: `fuzz ${target.name} slowest call (bound ${SLOW_MS} ms)`, value: Math.round(r.slowestMs * 100) / 100, unit: 'ms', baseline: 'hang bound', baseline_value: SLOW_MS, note: `${r.runs} inputs in ${budgetMs} ms` })
    ctx.report({ name: `fuzz ${target.name} inputs`, value: Math.round(r.runs / seconds), unit: 'inputs/s', baseline: null, baseline_value: null })
    await new Promise(resolve => setImmediate(resolve))
  }
}
