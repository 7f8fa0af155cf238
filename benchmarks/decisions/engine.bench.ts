// Micro-benchmark of the pure policy engine: decide() ops/s with 10 rules (baseline) vs 10,000 rules, and the linear walk.
// Run alone: `npx tsc -p . && node dist/benchmarks/decisions/engine.bench.js` (BENCH_QUICK=1 shortens it).
import { decide, decideLinear, parsePolicyOrThrow } from '../../lib/policy'
import type { CompiledPolicy, DecideInput } from '../../lib/policy'
import { type BenchContext, type BenchFn, machineFacts, opsPerSecond, ratio } from '../harness'

/** n rules filed under different attributes (uid, group, dir, exe, host id, CIDR); the last one matches `hit`. */
function policy (n: number): CompiledPolicy {
  const lines = ['format: 1', 'keys: [k]', 'guards:', '  /srv:', '    rules:']
  for (let i = 0; i < n - 1; i++) {
    switch (i % 6) {
      case 0: lines.push(`      - {id: u${i}, users: {uids: [${i + 10_000}]}, effect: permit}`); break
      case 1: lines.push(`      - {id: g${i}, users: {groups: [grp${i}]}, actions: readonly, effect: apply_key(k)}`); break
      case 2: lines.push(`      - {id: d${i}, resources: {dirs: [/dir${i}]}, effect: permit}`); break
      case 3: lines.push(`      - {id: e${i}, processes: {paths: [/opt/app${i}]}, effect: permit}`); break
      case 4: lines.push(`      - {id: h${i}, hosts: {ids: [host${i}]}, effect: deny}`); break
      default: lines.push(`      - {id: n${i}, hosts: {cidrs: [10.${(i >> 8) & 255}.${i & 255}.0/24]}, resources: {dirs: [/net]}, effect: permit}`)
    }
  }
  lines.push('      - {id: last, users: {uids: [4242]}, resources: {files: ["/finance/**/*.ods"]}, effect: apply_key(k), compression: zstd}')
  return parsePolicyOrThrow(lines.join('\n') + '\n')
}

const hit: DecideInput = {
  guard: '/srv',
  path: '/finance/2026/q1.ods',
  action: 'read',
  attrs: { uid: 4242, gids: [100, 101], user: 'ann', groups: ['staff', 'grp8'], pid: 1, sid: 1, exe: '/usr/bin/soffice', exeHash: 'ab'.repeat(32), auth: 1 },
  ctx: { host: 'host-x', ip: '10.0.5.9' }
}
const miss: DecideInput = { ...hit, attrs: { ...hit.attrs, uid: 4243 } }

async function measure (ms: number, p: CompiledPolicy, q: DecideInput, fn = decide): Promise<number> {
  const expect = fn(p, q).rule
  return await opsPerSecond(ms, () => {
    for (let i = 0; i < 1000; i++) if (fn(p, q).rule !== expect) throw new Error('decision changed')
    return 1000
  })
}

export const run: BenchFn = async (ctx: BenchContext) => {
  const ms = ctx.quick ? 300 : 3000
  const small = policy(10)
  const big = policy(10_000)
  for (const [name, q] of [['last rule matches', hit], ['no rule matches', miss]] as const) {
    // Alternate the two sizes in short rounds and keep each one's best round, so JIT and GC phases hit both alike.
    let base = 0
    let value = 0
    for (let round = 0; round < 6; round++) {
      base = Math.max(base, await measure(ms / 6, small, q))
      value = Math.max(value, await measure(ms / 6, big, q))
    }
    ctx.report({ name: `decide 10000 rules, ${name}`, value: Math.round(value), unit: 'ops/s', baseline: `decide 10 rules, ${name}`, baseline_value: Math.round(base), ratio: ratio(value, base) })
  }
  const linear = await measure(ctx.quick ? 100 : 500, big, hit, decideLinear)
  ctx.report({ name: 'linear walk 10000 rules, last rule matches', value: Math.round(linear), unit: 'ops/s', baseline: null, baseline_value: null, note: 'reference evaluator, no index' })
}

if (require.main === module) {
  const quick = process.env.BENCH_QUICK === '1'
  const ctx: BenchContext = {
    area: 'decisions',
    quick,
    report: m => { console.log(JSON.stringify({ area: 'decisions', ratio: null, ...m })) },
    log: line => { console.error(line) }
  }
  console.error(JSON.stringify(machineFacts()))
  run(ctx).catch(err => { console.error(err); process.exitCode = 1 })
}
