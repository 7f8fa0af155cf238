// Decision semantics: first match wins, default deny, audit is non-terminal, apply_key/bypass/weight/ttl, shared rules.
import test from 'ava'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { decide, decideLinear, parsePolicyOrThrow } from '../../lib/policy'
import type { CompiledPolicy, Decision, DecideInput } from '../../lib/policy'
import type { AccessAttrs, Action } from '../../lib/wire/packets'

const OFFICE = '5f2b1c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9'
const example = parsePolicyOrThrow(readFileSync(path.join(__dirname, '../../../test/fixtures/policy/example.yaml'), 'utf8'), 'example.yaml')

const finance: AccessAttrs = { uid: 1001, gids: [500], user: 'ann', groups: ['finance'], pid: 1, sid: 1, exe: '/usr/lib/libreoffice/program/soffice.bin', exeHash: OFFICE, auth: 1 }
const other: AccessAttrs = { ...finance, uid: 1002, user: 'bob', groups: ['staff'], gids: [100] }
const root: AccessAttrs = { ...other, uid: 0, user: 'root' }
const lan = { host: 'h1', ip: '10.20.3.4' }

function req (guard: string, p: string, action: Action, attrs: AccessAttrs, ctx = lan): DecideInput {
  return { guard, path: p, action, attrs, ctx }
}

const decides = test.macro({
  exec (t, policy: CompiledPolicy, input: DecideInput, expected: Partial<Decision>) {
    const d = decide(policy, input)
    t.like(d, expected)
    t.deepEqual(decideLinear(policy, input), d, 'the index agrees with the linear walk')
  },
  title: (provided = '') => provided
})

const rows: Array<[string, DecideInput, Partial<Decision>]> = [
  ['apply_key: key, compression, no bypass, weight, audited by the audit rule before it',
    req('/srv/data', '/finance/q1.ods', 'read', finance),
    { effect: 'permit', rule: 'finance-read', key: 'finance', compression: 'zstd', bypass: false, weight: 70, ttlMs: 30_000, audit: ['audit-finance'] }],
  ['first match wins: finance-closed after finance-read stops everyone else',
    req('/srv/data', '/finance/q1.ods', 'read', other),
    { effect: 'deny', rule: 'finance-closed', key: null, bypass: false, audit: ['audit-finance'] }],
  ['wrong process falls through to the deny',
    req('/srv/data', '/finance/q1.ods', 'read', { ...finance, exeHash: '00'.repeat(32) }),
    { effect: 'deny', rule: 'finance-closed' }],
  ['host outside the CIDR falls through to the deny',
    req('/srv/data', '/finance/q1.ods', 'read', finance, { host: 'h1', ip: '192.168.1.1' }),
    { effect: 'deny', rule: 'finance-closed' }],
  ['an action outside the list falls through',
    req('/srv/data', '/finance/q1.ods', 'chmod', finance),
    { effect: 'deny', rule: 'finance-closed' }],
  ['public: bypass permit, its own ttl, no key',
    req('/srv/data', '/public/menu.pdf', 'read', other),
    { effect: 'permit', rule: 'public', key: null, compression: 'none', bypass: true, weight: null, ttlMs: 300_000, audit: [] }],
  ['public is read-only: a write falls to the default deny',
    req('/srv/data', '/public/menu.pdf', 'write', other),
    { effect: 'deny', rule: null, audit: [] }],
  ['a directory denied to everyone',
    req('/srv/data', '/secret/plans', 'getattr', root),
    { effect: 'deny', rule: 'secret-dir' }],
  ['guard rules come before shared rules',
    req('/srv/data', '/secret/core', 'read', other),
    { effect: 'deny', rule: 'secret-dir' }],
  ['shared rule applies when no guard rule matched',
    req('/srv/data', '/tmp/core', 'read', other),
    { effect: 'deny', rule: 'no-core-dumps' }],
  ['shared rule reaches the other guard point too',
    req('/srv/hr', '/x/app.core', 'read', other),
    { effect: 'deny', rule: 'no-core-dumps' }],
  ['shared metadata permit for uid 0',
    req('/srv/data', '/tmp/file', 'getattr', root),
    { effect: 'permit', rule: 'admins-metadata', bypass: true }],
  ['no rule matches: default deny with the policy ttl',
    req('/srv/data', '/tmp/file', 'read', other),
    { effect: 'deny', rule: null, key: null, weight: null, ttlMs: 30_000, audit: [] }],
  ['audit: true on a terminal rule is recorded',
    req('/srv/data', '/finance/x', 'read', finance, { host: 'host-7f3a', ip: '10.20.0.9' }),
    { effect: 'deny', rule: 'quarantined-hosts', audit: ['quarantined-hosts'] }]
]
for (const [name, input, expected] of rows) test(name, decides, example, input, expected)

test('hr guard: apply_key without compression is compression none', t => {
  t.like(decide(example, req('/srv/hr', '/people.csv', 'write', { ...other, groups: ['hr'] })),
    { effect: 'permit', rule: 'hr-all', key: 'hr', compression: 'none', bypass: false })
})

test('audit rules are non-terminal and collect in order, also before a default deny', t => {
  const p = parsePolicyOrThrow(`format: 1
guards:
  /g:
    rules:
      - {id: a1, effect: audit}
      - {id: a2, effect: audit, users: {uids: [1]}}
      - {id: a3, effect: audit, resources: {dirs: [/x]}}
rules:
  - {id: a4, effect: audit}
`)
  const d = decide(p, req('/g', '/x/y', 'read', other))
  t.deepEqual(d, { effect: 'deny', rule: null, key: null, compression: 'none', placement: 'appliance', bypass: false, weight: null, ttlMs: 30_000, audit: ['a1', 'a3', 'a4'], scope: null })
})

test('a shared rule limited to one guard point does not apply to another', t => {
  const p = parsePolicyOrThrow(`format: 1
guards:
  /a: {}
  /b: {}
rules:
  - {id: only-a, resources: {guards: [/a]}, effect: permit}
`)
  t.like(decide(p, req('/a', '/f', 'read', other)), { rule: 'only-a' })
  t.like(decide(p, req('/b', '/f', 'read', other)), { rule: null, effect: 'deny' })
})

test('default ttl and per-rule ttl in every unit', t => {
  const p = parsePolicyOrThrow(`format: 1
ttl: 2m
guards:
  /g:
    rules:
      - {id: ms, users: {uids: [1]}, effect: permit, ttl: 1500}
      - {id: msu, users: {uids: [2]}, effect: permit, ttl: 250ms}
      - {id: h, users: {uids: [3]}, effect: permit, ttl: 1h}
`)
  t.is(decide(p, req('/g', '/f', 'read', { ...other, uid: 1 })).ttlMs, 1500)
  t.is(decide(p, req('/g', '/f', 'read', { ...other, uid: 2 })).ttlMs, 250)
  t.is(decide(p, req('/g', '/f', 'read', { ...other, uid: 3 })).ttlMs, 3_600_000)
  t.is(decide(p, req('/g', '/f', 'read', { ...other, uid: 4 })).ttlMs, 120_000)
})

test('decision scope: the widest directory whose every path gets the same decision', t => {
  const p = parsePolicyOrThrow(`format: 1
keys: [k1]
sets:
  resources:
    fin: { dirs: [/data/fin] }
    docs: { files: ["/notes/*.md"] }
guards:
  /g:
    rules:
      - { id: fin, resources: fin, effect: deny }
      - { id: docs, resources: docs, effect: deny }
      - { id: rest, effect: apply_key(k1) }
  /open:
    rules:
      - { id: all, effect: permit }
  /audited:
    rules:
      - { id: seen, effect: permit, audit: true }
  /named:
    rules:
      - { id: txt, resources: { files: ["*.txt"] }, effect: deny }
      - { id: other, effect: permit }
`)
  const at = (guard: string, p2: string): string | null => decide(p, req(guard, p2, 'read', other)).scope
  t.is(at('/open', '/x'), '', 'no resource constraint: the whole guard point')
  t.is(at('/open', '/a/b/c'), '')
  t.is(at('/open', '/'), null, 'the guard root itself is not under any directory')
  t.is(at('/g', '/data/fin/q1'), '/data/fin', 'inside the denied directory: all of it')
  t.is(at('/g', '/data/fin/deep/q1'), '/data/fin')
  t.is(at('/g', '/data/pub/x'), '/data/pub', 'beside it: the sibling directory')
  t.is(at('/g', '/data/fin'), null, '/data/fin itself differs from its siblings')
  t.is(at('/g', '/notes/a.md'), null, 'under a glob\'s literal directory names decide')
  t.is(at('/g', '/notes'), null, 'above the glob: its siblings differ from it')
  t.is(at('/g', '/other/a.md'), '/other')
  t.is(at('/named', '/a/b.txt'), null, 'a basename glob tells every name apart')
  t.is(at('/audited', '/a/b'), null, 'audited decisions are never widened')
  t.is(decide(p, req('/nowhere', '/a/b', 'read', other)).scope, null, 'unknown guard point')
})
