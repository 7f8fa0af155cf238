// Property test over random fault schedules (fast-check, fixed seed): whatever the network and the admins do,
// no two members ever install different content under one version; after the faults end, the cluster converges.
// CLUSTER_PROPERTY_SEED / CLUSTER_PROPERTY_RUNS widen the search; counterexamples replay with runSchedule().
import test from 'ava'
import fc from 'fast-check'
import { runSchedule, type Step } from '../helpers/cluster-schedule'

const step = (n: number): fc.Arbitrary<Step> => {
  const ms = fc.integer({ min: 200, max: 6000 })
  const who = fc.integer({ min: 0, max: n - 1 })
  return fc.oneof(
    fc.record({ kind: fc.constant('change' as const), who, ms }),
    fc.record({ kind: fc.constant('split' as const), mask: fc.integer({ min: 1, max: (1 << n) - 2 }), ms }),
    fc.record({ kind: fc.constant('oneway' as const), a: who, b: who, ms }),
    fc.record({ kind: fc.constant('heal' as const), ms }),
    fc.record({ kind: fc.constant('restart' as const), who, ms })
  )
}

const schedule = fc.record({
  n: fc.constantFrom(3, 5),
  seed: fc.integer({ min: 1, max: 1 << 30 }),
  drop: fc.double({ min: 0, max: 0.4, noNaN: true }),
  duplicate: fc.double({ min: 0, max: 0.2, noNaN: true }),
  reorder: fc.double({ min: 0, max: 0.3, noNaN: true }),
  corrupt: fc.double({ min: 0, max: 0.05, noNaN: true })
}).chain(c => fc.record({ c: fc.constant(c), steps: fc.array(step(c.n), { minLength: 3, maxLength: 14 }) }))

test('safety under random partitions, loss, duplication, reordering, corruption, restarts and concurrent changes; liveness after heal', t => {
  fc.assert(fc.property(schedule, ({ c, steps }) => { runSchedule(c, steps) }), {
    seed: Number(process.env.CLUSTER_PROPERTY_SEED ?? 20261127),
    numRuns: Number(process.env.CLUSTER_PROPERTY_RUNS ?? 30),
    endOnFailure: true
  })
  t.pass()
})
