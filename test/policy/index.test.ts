// The index is exact: on random policies (up to 10,000 rules) and random requests, decide() == decideLinear(); and a
// decision's scope is honest: every path strictly under it gets the same decision.
import test from 'ava'
import fc from 'fast-check'
import { stringify } from 'yaml'
import { decide, decideLinear, parsePolicyOrThrow } from '../../lib/policy'
import type { CompiledPolicy, DecideInput } from '../../lib/policy'
import { ACTIONS, type Action } from '../../lib/wire/packets'

const H1 = '11'.repeat(32)
const H2 = '22'.repeat(32)
const pick = <T>(xs: readonly T[]): fc.Arbitrary<T[]> => fc.uniqueArray(fc.constantFrom(...xs), { minLength: 1, maxLength: 2 })
const opt = <T>(a: fc.Arbitrary<T>): fc.Arbitrary<T | undefined> => fc.option(a, { nil: undefined, freq: 2 })
const compact = (o: Record<string, unknown>): Record<string, unknown> => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined))
const nonEmpty = (o: Record<string, unknown>): boolean => Object.keys(o).length > 0

const userSet = fc.record({ uids: opt(pick([0, 1, 2, 3])), users: opt(pick(['a', 'b', 'c'])), gids: opt(pick([10, 11, 12])), groups: opt(pick(['g1', 'g2', 'g3'])), domains: opt(pick(['D1', 'd2'])) }).map(compact).filter(nonEmpty)
const processSet = fc.record({ paths: opt(pick(['/bin/a', '/bin/b', '/bin/*', '/opt/**'])), signatures: opt(pick([`sha256:${H1}`, `sha256:${H2}`])) }).map(compact).filter(nonEmpty)
const hostSet = fc.record({
  ids: opt(pick(['h1', 'h2', 'h3'])),
  cidrs: opt(pick(['10.0.0.0/8', '10.1.0.0/16', '10.1.2.3', '192.168.0.0/16', '0.0.0.0/0', '2001:db8::/32', '2001:db8:1::/48', '::/0']))
}).map(compact).filter(nonEmpty)
const resourceSet = fc.record({
  guards: opt(pick(['/g1', '/g2'])),
  dirs: opt(pick(['/a', '/a/b', '/c', '/'])),
  files: opt(pick(['*.txt', '/a/**', '/a/*/x', '?', '/c/[ab]*', '/a/b/f.txt', '**']))
}).map(compact).filter(nonEmpty)
const refs = (inline: fc.Arbitrary<Record<string, unknown>>, names: string[]): fc.Arbitrary<unknown> =>
  fc.oneof(fc.constantFrom(...names), inline, fc.array(fc.oneof(fc.constantFrom(...names), inline), { minLength: 1, maxLength: 2 }))

const rule = fc.record({
  users: opt(refs(userSet, ['u1', 'u2'])),
  processes: opt(refs(processSet, ['p1'])),
  hosts: opt(refs(hostSet, ['n1'])),
  resources: opt(refs(resourceSet, ['r1'])),
  min_auth: opt(fc.integer({ min: 0, max: 2 })),
  actions: opt(fc.oneof(fc.constantFrom('all', 'readonly', 'modify', 'metadata'), pick(['read', 'write', 'getattr', 'readonly']))),
  effect: fc.constantFrom('permit', 'deny', 'audit', 'apply_key(k1)', 'apply_key(k2)'),
  audit: opt(fc.boolean())
}).map(compact)

function policyText (rules: Array<Record<string, unknown>>, where: number[]): string {
  const guards: Record<string, { rules: unknown[] }> = { '/g1': { rules: [] }, '/g2': { rules: [] } }
  const shared: unknown[] = []
  rules.forEach((r, i) => {
    const body = { id: `r${i}`, ...r }
    if (where[i] === 0) guards['/g1'].rules.push(body)
    else if (where[i] === 1) guards['/g2'].rules.push(body)
    else shared.push(body)
  })
  return stringify({
    format: 1,
    keys: ['k1', 'k2'],
    sets: {
      users: { u1: { groups: ['g1'] }, u2: { uids: [1], domains: ['d1'] } },
      processes: { p1: { signatures: [`sha256:${H1}`] } },
      hosts: { n1: { cidrs: ['10.1.0.0/16', '2001:db8::/32'] } },
      resources: { r1: { dirs: ['/a'], files: ['*.txt'] } }
    },
    guards,
    rules: shared
  })
}

const request: fc.Arbitrary<DecideInput> = fc.record({
  guard: fc.constantFrom('/g1', '/g2', '/g3', '/g1/'),
  path: fc.constantFrom('/', '/a', '/a/b', '/a/b/f.txt', '/a/z/x', '/ab/f.txt', '/c/bq', '/c', '/x.txt', '/q', '/a/../c'),
  action: fc.constantFrom(...(ACTIONS as readonly Action[])),
  attrs: fc.record({
    uid: fc.constantFrom(0, 1, 2, 3, 4),
    gids: fc.uniqueArray(fc.constantFrom(10, 11, 12, 13), { maxLength: 3 }),
    user: opt(fc.constantFrom('a', 'b', 'c', 'd')),
    groups: opt(fc.uniqueArray(fc.constantFrom('g1', 'g2', 'g3', 'g4'), { maxLength: 3 })),
    domain: opt(fc.constantFrom('D1', 'd1', 'D2')),
    pid: fc.constant(1),
    sid: fc.constant(1),
    exe: fc.constantFrom('/bin/a', '/bin/b', '/bin/c', '/opt/x/y'),
    exeHash: fc.constantFrom(H1, H2.toUpperCase(), ''),
    auth: fc.integer({ min: 0, max: 3 })
  }).map(a => compact(a) as unknown as DecideInput['attrs']),
  ctx: fc.record({
    host: fc.constantFrom('h1', 'h2', 'h4'),
    ip: fc.constantFrom('10.1.2.3', '10.9.9.9', '192.168.4.4', '172.16.0.1', '2001:db8:1::7', '2001:db8:2::7', '::ffff:10.1.2.3', 'fe80::1', 'bad')
  })
})

/** Runs `check` on random small policies (up to 40 rules) and random requests; a failing case throws with its data. */
function onRandomPolicies (numRuns: number, seed: number, check: (p: CompiledPolicy, q: DecideInput) => void): void {
  fc.assert(fc.property(
    fc.array(fc.tuple(rule, fc.integer({ min: 0, max: 2 })), { minLength: 0, maxLength: 40 }),
    fc.array(request, { minLength: 1, maxLength: 20 }),
    (rs, reqs) => {
      const p = parsePolicyOrThrow(policyText(rs.map(x => x[0]), rs.map(x => x[1])))
      for (const q of reqs) check(p, q)
    }
  ), { numRuns, seed })
}

test('property: indexed decide equals the linear walk on random small policies', t => {
  onRandomPolicies(100, 20260127, (p, q) => {
    const a = decide(p, q); const b = decideLinear(p, q)
    if (JSON.stringify(a) !== JSON.stringify(b)) throw new Error(`${JSON.stringify(q)}\nindexed ${JSON.stringify(a)}\nlinear  ${JSON.stringify(b)}`)
  })
  t.pass()
})

test('property: indexed decide equals the linear walk on a random 10,000-rule policy', t => {
  const rs = fc.sample(fc.tuple(rule, fc.integer({ min: 0, max: 2 })), { numRuns: 10_000, seed: 42 })
  const p = parsePolicyOrThrow(policyText(rs.map(x => x[0]), rs.map(x => x[1])))
  t.is(p.rules.length, 10_000)
  let permits = 0
  fc.assert(fc.property(request, q => {
    const a = decide(p, q)
    if (a.effect === 'permit') permits++
    t.deepEqual(a, decideLinear(p, q))
  }), { numRuns: 400, seed: 7 })
  t.true(permits > 0, 'the sample exercises permits, not only denials')
})

/** 10,000 rules keyed on different attributes; only the last one matches the request. */
function bigPolicy (n: number): string {
  const lines = ['format: 1', 'keys: [k]', 'guards:', '  /srv:', '    rules:']
  for (let i = 0; i < n - 1; i++) {
    switch (i % 6) {
      case 0: lines.push(`      - {id: u${i}, users: {uids: [${i + 10_000}]}, effect: permit}`); break
      case 1: lines.push(`      - {id: g${i}, users: {groups: [grp${i}]}, effect: deny}`); break
      case 2: lines.push(`      - {id: d${i}, resources: {dirs: [/dir${i}]}, effect: permit}`); break
      case 3: lines.push(`      - {id: e${i}, processes: {paths: [/opt/app${i}]}, effect: permit}`); break
      case 4: lines.push(`      - {id: h${i}, hosts: {ids: [host${i}]}, effect: deny}`); break
      default: lines.push(`      - {id: n${i}, hosts: {cidrs: [10.${(i >> 8) & 255}.${i & 255}.0/24]}, resources: {dirs: [/net]}, effect: permit}`)
    }
  }
  lines.push('      - {id: last, users: {uids: [4242]}, resources: {files: ["/finance/**/*.ods"]}, effect: apply_key(k), compression: lz4}')
  return lines.join('\n') + '\n'
}

test('10,000 rules, only the last matches: the decision names it', t => {
  const p = parsePolicyOrThrow(bigPolicy(10_000))
  t.is(p.rules.length, 10_000)
  const q: DecideInput = {
    guard: '/srv',
    path: '/finance/2026/q1.ods',
    action: 'write',
    // near misses: grp8, host11 and /opt/app10 name no rule; 10.0.5.9 is in n5's CIDR but n5 also wants /net
    attrs: { uid: 4242, gids: [1], groups: ['grp8'], pid: 1, sid: 1, exe: '/opt/app10', exeHash: '', auth: 0 },
    ctx: { host: 'host11', ip: '10.0.5.9' }
  }
  t.like(decide(p, q), { effect: 'permit', rule: 'last', key: 'k', compression: 'lz4', bypass: false })
  t.deepEqual(decide(p, q), decideLinear(p, q))
  t.like(decide(p, { ...q, attrs: { ...q.attrs, uid: 4243 } }), { effect: 'deny', rule: null })
  t.like(decide(p, { ...q, attrs: { ...q.attrs, uid: 10_006 } }), { effect: 'permit', rule: 'u6' })
  t.like(decide(p, { ...q, path: '/dir8/x' }), { effect: 'permit', rule: 'd8' })
  t.like(decide(p, { ...q, path: '/net/x' }), { effect: 'permit', rule: 'n5' })
  t.like(decide(p, { ...q, attrs: { ...q.attrs, groups: ['grp7'] } }), { effect: 'deny', rule: 'g7' })
  t.like(decide(p, { ...q, ctx: { ...q.ctx, host: 'host10' } }), { effect: 'deny', rule: 'h10' })
})

/** Paths below a scope, chosen to hit the generators' dirs and globs: every one must get the scope's decision. */
const BELOW = ['/a', '/b', '/c', '/a/b', '/a/b/f.txt', '/a/z/x', '/x.txt', '/f.txt', '/bq', '/c/bq', '/q/r/s', '/b/x']

test('property: every path under a decision\'s scope gets the same decision (random small policies)', t => {
  let widened = 0
  onRandomPolicies(150, 20261127, (p, q) => {
    const d = decide(p, q)
    if (d.scope === null) return
    widened++
    const same = JSON.stringify({ ...d, scope: null })
    for (const below of BELOW) {
      const e = decideLinear(p, { ...q, path: d.scope + below })
      if (JSON.stringify({ ...e, scope: null }) !== same) {
        throw new Error(`${JSON.stringify(q)} scope '${d.scope}'\nat ${q.path}: ${same}\nat ${d.scope + below}: ${JSON.stringify(e)}`)
      }
    }
  })
  t.true(widened > 100, `only ${widened} decisions had a scope: the property was hardly tried`)
})
