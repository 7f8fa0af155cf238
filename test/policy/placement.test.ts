// `placement: host | appliance` on apply_key rules: default, decisions, canonical form, describe and diff.
import test from 'ava'
import { decide, describePolicy, diffPolicies, parsePolicyOrThrow } from '../../lib/policy'
import type { DecideInput } from '../../lib/policy'

const policy = (placement: string): string => `format: 1
keys: [finance]
guards:
  /srv/data:
    rules:
      - id: fast
        resources: {dirs: [/fast]}
        effect: apply_key(finance)
${placement}
      - id: slow
        resources: {dirs: [/slow]}
        effect: apply_key(finance)
      - id: open
        effect: permit
`
const HOST = policy('        placement: host')
const attrs = { uid: 1, gids: [], pid: 1, sid: 1, exe: '/bin/sh', exeHash: '', auth: 0 }
const req = (path: string): DecideInput => ({ guard: '/srv/data', path, action: 'read', attrs, ctx: { host: 'h', ip: '127.0.0.1' } })

test('a host-placement rule decides with placement host; the default and other effects are appliance', t => {
  const p = parsePolicyOrThrow(HOST)
  t.like(decide(p, req('/fast/a')), { effect: 'permit', key: 'finance', placement: 'host' })
  t.like(decide(p, req('/slow/a')), { effect: 'permit', key: 'finance', placement: 'appliance' })
  t.like(decide(p, req('/other')), { effect: 'permit', bypass: true, placement: 'appliance' })
  t.is(p.rules[0].placement, 'host')
  t.is(parsePolicyOrThrow(policy('        placement: appliance')).rules[0].placement, 'appliance')
})

test('placement is part of the canonical form and the digest; describe counts host rules', t => {
  const host = parsePolicyOrThrow(HOST)
  const plain = parsePolicyOrThrow(policy(''))
  t.true(host.canonical.includes('"placement":"host"'))
  t.not(host.digest, plain.digest)
  t.is(describePolicy(host).hostPlacementRules, 1)
  t.is(describePolicy(plain).hostPlacementRules, 0)
})

test('diff shows a placement change on the rule', t => {
  const r = diffPolicies(policy(''), HOST)
  if (!r.ok) { t.fail(); return }
  t.is(r.text, '~ rule fast (guard /srv/data): placement: (unset) -> host')
  const back = diffPolicies(HOST, policy('        placement: appliance'))
  if (!back.ok) { t.fail(); return }
  t.is(back.text, '~ rule fast (guard /srv/data): placement: host -> appliance')
})
