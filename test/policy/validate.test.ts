// Validation: every refusal names the file, line and field path; a bad policy is refused as a whole.
import test from 'ava'
import { formatPolicyError, parsePolicy, parsePolicyOrThrow, PolicyRejected } from '../../lib/policy'

const HEAD = `format: 1
keys: [finance]
sets:
  users:
    fin: {groups: [finance]}
guards:
  /srv/data:
    rules:
      - id: ok
        effect: permit
`
// HEAD is 10 lines; a rule appended below starts on line 11 and is guards["/srv/data"].rules[1].
const R = 'guards["/srv/data"].rules[1]'

/** `body` is the second rule (indented by 6); the error must be exactly `expected` (file:line: path: message). */
const refuses = test.macro({
  exec (t, body: string, expected: string | RegExp) {
    const r = parsePolicy(HEAD + body.split('\n').map(l => '      ' + l).join('\n') + '\n', 'policy.yaml')
    if (r.ok) { t.fail('policy was accepted'); return }
    const lines = r.errors.map(formatPolicyError)
    t.is(lines.length, 1, lines.join('\n'))
    if (typeof expected === 'string') t.is(lines[0], expected)
    else t.regex(lines[0], expected)
  },
  title: (provided = '') => `refused: ${provided}`
})

const rows: Array<[string, string, string | RegExp]> = [
  ['unknown key in apply_key', '- id: x\n  effect: apply_key(hr)',
    `policy.yaml:12: ${R}.effect: apply_key(hr) names an unknown key (declare it under keys:)`],
  ['unknown effect', '- id: x\n  effect: allow', `policy.yaml:12: ${R}.effect: unknown effect 'allow': permit, deny, audit or apply_key(KEY)`],
  ['duplicate rule id', '- id: ok\n  effect: deny', `policy.yaml:11: ${R}.id: duplicate rule id 'ok' (first at line 9)`],
  ['bad rule id', '- id: "no spaces"\n  effect: deny', /^policy\.yaml:11: .*\.id: bad rule id 'no spaces'/],
  ['unknown user set', '- id: x\n  effect: permit\n  users: [fin, hr]', `policy.yaml:13: ${R}.users[1]: unknown user set 'hr' (define it under sets.users)`],
  ['unknown process set', '- id: x\n  effect: permit\n  processes: office', `policy.yaml:13: ${R}.processes: unknown process set 'office' (define it under sets.processes)`],
  ['unknown action', '- id: x\n  effect: permit\n  actions: [read, reed]', /^policy\.yaml:13: .*\.actions\[1\]: unknown action 'reed'/],
  ['bad CIDR', '- id: x\n  effect: permit\n  hosts:\n    cidrs: [10.0.0.0/33]', `policy.yaml:14: ${R}.hosts.cidrs[0]: bad CIDR '10.0.0.0/33': prefix length '33' must be 0..32`],
  ['CIDR with host bits', '- id: x\n  effect: permit\n  hosts: {cidrs: [10.1.0.0/8]}', /:13: .*hosts\.cidrs\[0\]: bad CIDR '10\.1\.0\.0\/8': host bits are set; did you mean 10\.0\.0\.0\/8\?/],
  ['bad IPv6', '- id: x\n  effect: permit\n  hosts: {cidrs: ["2001:db8:::1/64"]}', /:13: .*is not an IPv4 or IPv6 address/],
  ['bad sha256', '- id: x\n  effect: permit\n  processes: {signatures: [sha256:1234]}', /:13: .*processes\.signatures\[0\]: bad signature 'sha256:1234': expected sha256:<64 hex digits>/],
  ['signature without sha256: prefix', `- id: x\n  effect: permit\n  processes: {signatures: [${'a'.repeat(64)}]}`, /:13: .*bad signature/],
  ['bad glob **', '- id: x\n  effect: permit\n  resources: {files: ["/a/b**"]}', /:13: .*resources\.files\[0\]: bad glob '\/a\/b\*\*': \*\* must be a whole path segment/],
  ['bad glob [', '- id: x\n  effect: permit\n  resources: {files: ["[ab"]}', /:13: .*bad glob '\[ab': has an unterminated \[/],
  ['bad glob empty segment', '- id: x\n  effect: permit\n  resources: {files: ["/a//b"]}', /:13: .*bad glob '\/a\/\/b': empty path segment/],
  ['relative dir', '- id: x\n  effect: permit\n  resources: {dirs: [fin]}', /:13: .*dirs\[0\]: bad directory: 'fin' must start with '\/'/],
  ['wildcard in dir', '- id: x\n  effect: permit\n  resources: {dirs: [/fin/*]}', /:13: .*dirs\[0\]: .*put wildcards in files:/],
  ['unknown guard in a resource set', '- id: x\n  effect: permit\n  resources: {guards: [/srv/other]}', /:13: .*guards\[0\]: unknown guard point '\/srv\/other'/],
  ['unknown placement', '- id: x\n  effect: apply_key(finance)\n  placement: laptop', `policy.yaml:13: ${R}.placement: rule 'x': unknown placement 'laptop': appliance or host`],
  ['placement without apply_key', '- id: x\n  effect: permit\n  placement: host', `policy.yaml:13: ${R}.placement: rule 'x': placement applies only to apply_key rules (it says where the file key is used)`],
  ['placement not a string', '- id: x\n  effect: apply_key(finance)\n  placement: [host]', `policy.yaml:13: ${R}.placement: must be string`],
  ['compression without apply_key', '- id: x\n  effect: permit\n  compression: zstd', `policy.yaml:13: ${R}.compression: compression applies only to apply_key rules (data that bypasses the cluster is not compressed)`],
  ['unknown compression', '- id: x\n  effect: apply_key(finance)\n  compression: brotli', `policy.yaml:13: ${R}.compression: must be one of none, zstd, lz4, zlib`],
  ['weight out of range', '- id: x\n  effect: permit\n  weight: 101', `policy.yaml:13: ${R}.weight: must be <= 100`],
  ['weight zero', '- id: x\n  effect: permit\n  weight: 0', `policy.yaml:13: ${R}.weight: must be >= 1`],
  ['bad ttl', '- id: x\n  effect: permit\n  ttl: 5 days', /:13: .*\.ttl: bad ttl '5 days'/],
  ['min_auth not an integer', '- id: x\n  effect: permit\n  min_auth: high', `policy.yaml:13: ${R}.min_auth: must be integer`],
  ['unknown rule field', '- id: x\n  effect: permit\n  user: fin', `policy.yaml:13: ${R}.user: unknown field (did you mean 'users'?)`],
  ['missing effect', '- id: x', `policy.yaml:11: ${R}.effect: is required`],
  ['empty inline set', '- id: x\n  effect: permit\n  users: {}', /:13: .*\.users: an empty user set would match everything/],
  ['empty action list', '- id: x\n  effect: permit\n  actions: []', `policy.yaml:13: ${R}.actions: must not be an empty list`]
]
for (const [name, body, expected] of rows) test(name, refuses, body, expected)

const whole = test.macro({
  exec (t, text: string, expected: string[]) {
    const r = parsePolicy(text, 'p.yaml')
    t.false(r.ok)
    if (!r.ok) t.deepEqual(r.errors.map(formatPolicyError), expected)
  },
  title: (provided = '') => `refused: ${provided}`
})

test('key material in a key entry', whole, 'format: 1\nkeys:\n  - name: finance\n    material: 3q2+7w==\nguards: {}\n',
  ['p.yaml:4: keys[0].material: a key entry may name a key and describe it, nothing else: key material is generated and kept by spd and must never be in the policy'])
test('key given as a map with a value', whole, 'format: 1\nkeys:\n  - finance: 3q2+7w==\nguards: {}\n', [
  'p.yaml:3: keys[0].name: is required',
  'p.yaml:3: keys[0].finance: a key entry may name a key and describe it, nothing else: key material is generated and kept by spd and must never be in the policy'
])
test('duplicate key name', whole, 'format: 1\nkeys: [a, b, a]\nguards: {}\n', ['p.yaml:2: keys[2]: duplicate key \'a\''])
test('YAML syntax: unclosed flow sequence', whole, 'format: 1\nguards:\n  /a:\n    rules: [\n',
  ['p.yaml:5: YAML syntax: Flow sequence in block collection must be sufficiently indented and end with a ]'])
test('YAML syntax: unclosed quote', whole, 'format: 1\nguards:\n  /a:\n    rules:\n      - id: x\n        effect: "permit\n  \n',
  ['p.yaml:8: YAML syntax: Missing closing "quote'])
test('YAML syntax: tab indentation', whole, 'format: 1\n\tguards: {}\n', ['p.yaml:2: YAML syntax: Tabs are not allowed as indentation'])
test('YAML syntax: duplicate map key', whole, 'format: 1\nguards: {}\nguards: {}\n', ['p.yaml:3: YAML syntax: Map keys must be unique'])
test('wrong format', whole, 'format: 2\nguards: {}\n', ['p.yaml:1: format: must be 1'])
test('missing guards', whole, 'format: 1\n', ['p.yaml:1: guards: is required'])
test('relative guard point', whole, 'format: 1\nguards:\n  data: {}\n', ['p.yaml:3: guards.data: guard point \'data\' must be an absolute path without \'.\' or \'..\''])
test('a document that is not a map', whole, '- a\n- b\n', ['p.yaml:1: must be object'])

test('YAML syntax: bad indentation names lines 4-5', t => {
  const r = parsePolicy('format: 1\nguards:\n  /a:\n    rules:\n   - id: x\n', 'p.yaml')
  t.false(r.ok)
  if (r.ok) return
  t.true(r.errors.length > 0)
  for (const e of r.errors) {
    t.true(e.line >= 4 && e.line <= 6, formatPolicyError(e))
    t.regex(e.message, /^YAML syntax: /)
  }
})

test('every problem is reported, sorted by line', t => {
  const r = parsePolicy(HEAD + '      - id: ok\n        effect: apply_key(x)\n        hosts: {cidrs: [1.2.3.4/40]}\n', 'p.yaml')
  t.false(r.ok)
  if (r.ok) return
  t.deepEqual(r.errors.map(e => e.line), [11, 12, 13])
})

test('parsePolicyOrThrow throws PEM_ERR_BAD_POLICY with the list attached', t => {
  const err = t.throws(() => parsePolicyOrThrow(HEAD + '      - id: x\n        effect: nope\n', 'policy.yaml'), { code: 'PEM_ERR_BAD_POLICY' })
  t.true(err instanceof PolicyRejected)
  t.is((err as PolicyRejected).errors.length, 1)
  t.regex(err?.message ?? '', /^policy\.yaml:12: /)
})

test('the head alone is valid', t => {
  t.true(parsePolicy(HEAD).ok)
})
