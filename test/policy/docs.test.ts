// docs/POLICY.md stays true: every complete policy in it parses, the first one is the fixture, shorthands match.
import test from 'ava'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { ACTION_SHORTHANDS, defaultPolicy, parsePolicy, policyDigest } from '../../lib/policy'

const root = path.join(__dirname, '../../..')
const doc = readFileSync(path.join(root, 'docs/POLICY.md'), 'utf8')
const blocks = [...doc.matchAll(/```yaml\n([\s\S]*?)```/g)].map(m => m[1]).filter(b => b.startsWith('format: 1'))

test('docs/POLICY.md has complete policies, and each one parses', t => {
  t.true(blocks.length >= 2)
  for (const b of blocks) {
    const r = parsePolicy(b, 'POLICY.md')
    t.true(r.ok, r.ok ? '' : JSON.stringify(r.errors))
  }
})

test('the first example is test/fixtures/policy/example.yaml (same canonical form)', t => {
  const fixture = policyDigest(readFileSync(path.join(root, 'test/fixtures/policy/example.yaml'), 'utf8'))
  const first = policyDigest(blocks[0])
  t.true(fixture.ok && first.ok)
  if (fixture.ok && first.ok) t.is(first.digest, fixture.digest)
})

test('the default policy shown is defaultPolicy({guards: ["/data"]})', t => {
  const shown = policyDigest(blocks[blocks.length - 1])
  const made = policyDigest(defaultPolicy({ guards: ['/data'] }))
  t.true(shown.ok && made.ok)
  if (shown.ok && made.ok) t.is(shown.digest, made.digest)
})

test('the shorthand table lists what the engine expands', t => {
  for (const [name, actions] of Object.entries(ACTION_SHORTHANDS)) {
    if (name === 'all') continue
    t.true(doc.includes(`| \`${name}\` | \`${actions.join(' ')}\` |`), name)
  }
})
