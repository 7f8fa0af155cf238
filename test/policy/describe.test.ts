// Digest, canonical form, describePolicy/keyNames/guardPoints, the default policy, and diffPolicies output.
import test from 'ava'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { decide, defaultPolicy, describePolicy, diffPolicies, guardPoints, keyNames, parsePolicy, parsePolicyOrThrow, policyDigest } from '../../lib/policy'

const EXAMPLE = readFileSync(path.join(__dirname, '../../../test/fixtures/policy/example.yaml'), 'utf8')

test('digest ignores comments, layout and map key order, not list order', t => {
  const a = 'format: 1\nguards:\n  /g:\n    rules:\n      - {id: a, effect: permit}\n      - {id: b, effect: deny}\n'
  const b = '# comment\nguards:\n  /g:\n    rules:\n    - effect: permit\n      id: a\n    - id: b\n      effect: deny\nformat: 1\n'
  const c = 'format: 1\nguards:\n  /g:\n    rules:\n      - {id: b, effect: deny}\n      - {id: a, effect: permit}\n'
  const da = policyDigest(a); const db = policyDigest(b); const dc = policyDigest(c)
  if (!da.ok || !db.ok || !dc.ok) { t.fail(); return }
  t.is(da.digest, db.digest)
  t.not(da.digest, dc.digest)
  t.is(parsePolicyOrThrow(a).digest, da.digest)
  t.regex(da.digest, /^[0-9a-f]{64}$/)
  t.false(policyDigest('a: [').ok)
})

test('describePolicy, keyNames, guardPoints of the example', t => {
  const p = parsePolicyOrThrow(EXAMPLE)
  t.deepEqual(keyNames(p), ['finance', 'hr'])
  t.deepEqual(guardPoints(p), ['/srv/data', '/srv/hr'])
  t.deepEqual(describePolicy(p), {
    format: 1,
    digest: p.digest,
    description: 'ACME file servers',
    ttlMs: 30_000,
    keys: ['finance', 'hr'],
    guards: [{ path: '/srv/data', rules: 6, applicable: 9 }, { path: '/srv/hr', rules: 1, applicable: 4 }],
    sharedRules: 3,
    rules: 10,
    hostPlacementRules: 0,
    sets: { users: 2, processes: 1, hosts: 2, resources: 1 }
  })
})

test('default policy: one key, every guard point encrypted, every user permitted', t => {
  const p = parsePolicyOrThrow(defaultPolicy({ guards: ['/data', '/home/shared'] }))
  t.deepEqual(keyNames(p), ['default'])
  t.deepEqual(guardPoints(p), ['/data', '/home/shared'])
  for (const [guard, uid] of [['/data', 0], ['/home/shared', 1234]] as const) {
    t.like(decide(p, {
      guard, path: '/any/file', action: 'write',
      attrs: { uid, gids: [], pid: 1, sid: 1, exe: '/bin/sh', exeHash: '', auth: 0 },
      ctx: { host: 'local', ip: '127.0.0.1' }
    }), { effect: 'permit', rule: 'default-encrypt', key: 'default', bypass: false, compression: 'none' })
  }
  const convert = (u: number): unknown => decide(p, { guard: '/data', path: '/', action: 'convert', attrs: { uid: u, gids: [], pid: 1, sid: 1, exe: '/bin/sh', exeHash: '', auth: 0 }, ctx: { host: 'local', ip: '127.0.0.1' } })
  t.like(convert(0), { effect: 'permit', rule: 'convert-as-root' }, 'root may start a conversion')
  t.like(convert(1000), { effect: 'deny' }, 'nobody else: `all` does not cover the admin-level convert')
  t.like(describePolicy(parsePolicyOrThrow(defaultPolicy({ guards: ['/d'], compression: 'zstd' }))), { rules: 2, keys: ['default'] })
})

const OLD = `format: 1
ttl: 30s
keys: [finance, legacy]
sets:
  users:
    fin: {groups: [finance]}
    ops: {uids: [0]}
guards:
  /srv/data:
    rules:
      - {id: a, users: fin, effect: permit}
      - {id: b, effect: audit}
      - {id: c, effect: deny}
      - {id: d, effect: permit, resources: {dirs: [/pub]}}
rules:
  - {id: s, effect: deny}
`
const NEW = `format: 1
ttl: 1m
keys: [finance, hr]
sets:
  users:
    fin: {groups: [finance, audit]}
    hr: {groups: [hr]}
guards:
  /srv/data:
    rules:
      - {id: b, effect: audit}
      - {id: a, users: fin, effect: apply_key(finance), compression: zstd}
      - {id: c, effect: deny}
  /srv/hr:
    rules:
      - {id: d, effect: permit, resources: {dirs: [/pub]}}
      - {id: e, users: hr, effect: apply_key(hr)}
rules:
  - {id: s, effect: deny}
`

test('diff: settings, keys, sets, guards and rules, one readable line each', t => {
  const r = diffPolicies(OLD, NEW)
  if (!r.ok) { t.fail(JSON.stringify(r.errors)); return }
  t.deepEqual(r.text.split('\n'), [
    '~ ttl: 30s -> 1m',
    '- key legacy',
    '+ key hr',
    '~ set users.fin: {"groups":["finance"]} -> {"groups":["finance","audit"]}',
    '- set users.ops',
    '+ set users.hr: {"groups":["hr"]}',
    '+ guard /srv/hr',
    '~ rule a (guard /srv/data): compression: (unset) -> zstd; effect: permit -> apply_key(finance)',
    '> rule d: guard /srv/data #4 -> guard /srv/hr #1',
    '+ rule e (guard /srv/hr #2): {"effect":"apply_key(hr)","id":"e","users":"hr"}',
    '> rule b (guard /srv/data): #2 -> #1'
  ])
  t.deepEqual(r.changes.map(c => c.what), ['setting', 'key', 'key', 'set', 'set', 'set', 'guard', 'rule', 'rule', 'rule', 'rule'])
})

test('diff of a policy with itself is empty; a removed rule is listed', t => {
  const same = diffPolicies(OLD, OLD)
  t.true(same.ok && same.text === '' && same.changes.length === 0)
  const r = diffPolicies(OLD, OLD.replace('      - {id: c, effect: deny}\n', ''))
  t.true(r.ok)
  if (r.ok) t.is(r.text, '- rule c (guard /srv/data #3): deny')
})

test('diff refuses an invalid side with located errors', t => {
  const r = diffPolicies(OLD, 'format: 1\nguards: {}\nrules:\n  - {id: x, effect: nope}\n', ['cur.yaml', 'new.yaml'])
  t.false(r.ok)
  if (!r.ok) t.deepEqual(r.errors.map(e => `${e.file}:${e.line}`), ['new.yaml:4'])
})

test('canonical JSON (what spd stores) parses to the same policy, through the fast path', t => {
  const p = parsePolicyOrThrow(EXAMPLE)
  const again = parsePolicyOrThrow(p.canonical)
  t.is(again.digest, p.digest)
  t.deepEqual(describePolicy(again), describePolicy(p))
  const q = { guard: '/srv/data', path: '/public/x', action: 'read' as const, attrs: { uid: 5, gids: [], pid: 1, sid: 1, exe: '/bin/cat', exeHash: '', auth: 0 }, ctx: { host: 'h', ip: '10.0.0.1' } }
  t.deepEqual(decide(again, q), decide(p, q))
})

test('JSON input with an error still gets a line; duplicate keys fall back to the strict YAML path', t => {
  const bad = JSON.stringify({ format: 1, guards: { '/g': { rules: [{ effect: 'apply_key(nope)', id: 'x' }] } } })
  const r = parsePolicy(bad, 'p.json')
  t.false(r.ok)
  if (!r.ok) t.deepEqual(r.errors.map(e => `${e.line} ${e.path}`), ['1 guards["/g"].rules[0].effect'])
  const dup = '{"format":1,"guards":{},"guards":{}}'
  const d = parsePolicy(dup, 'p.json')
  t.false(d.ok)
  if (!d.ok) t.regex(d.errors[0].message, /Map keys must be unique/)
})

test('a 10,000-rule policy in canonical JSON parses fast (the YAML path needs seconds)', t => {
  const lines = ['format: 1', 'guards:', '  /srv:', '    rules:']
  for (let i = 0; i < 10_000; i++) lines.push(`      - {id: u${i}, users: {uids: [${i}]}, resources: {dirs: [/d${i}]}, effect: permit}`)
  const canonical = parsePolicyOrThrow(lines.join('\n') + '\n').canonical
  const start = process.hrtime.bigint()
  const p = parsePolicyOrThrow(canonical)
  const ms = Number(process.hrtime.bigint() - start) / 1e6
  t.is(p.rules.length, 10_000)
  t.true(ms < 2000, `${ms} ms`)
})

test('spd\'s stored canonical text compiles to the same policy without the canonical check', t => {
  const checked = parsePolicyOrThrow(EXAMPLE)
  const stored = parsePolicyOrThrow(checked.canonical, 'stored policy', { stored: true })
  t.is(stored.digest, checked.digest)
  t.is(stored.canonical, checked.canonical)
  t.deepEqual([...stored.guards.keys()], [...checked.guards.keys()])
  t.is(stored.rules.length, checked.rules.length)
  // A stored text that is not JSON is still parsed (and checked) as YAML: corruption shows up as an error.
  t.false(parsePolicy('{a: [', 'stored policy', { stored: true }).ok)
})
