// Precompiled schema validators: the build writes them with the right stamp, they judge documents exactly as ajv
// compiling the same schema does, and a stale stamp falls back to compiling.
import test from 'ava'
import fs from 'node:fs'
import path from 'node:path'
import { parse } from 'yaml'
import { POLICY_VALIDATOR } from '../../lib/policy/schema'
import { CONFIG_VALIDATOR } from '../../lib/server/config'
import { compileValidator, generatedPath, specDigest, validatorFor, type ValidatorSpec } from '../../lib/policy/validator'

const EXAMPLE = parse(fs.readFileSync(path.join(__dirname, '../../../test/fixtures/policy/example.yaml'), 'utf8')) as Record<string, unknown>

for (const spec of [POLICY_VALIDATOR, CONFIG_VALIDATOR]) {
  test(`the build wrote generated/${spec.name}.js from the current schema`, t => {
    const mod = require(generatedPath(spec)) as { digest?: string }
    t.is(typeof mod, 'function')
    t.is(mod.digest, specDigest(spec), 'stale: run `npm run compile`')
  })
}

test('the generated policy validator agrees with ajv compiling the schema, errors included', t => {
  const generated = validatorFor(POLICY_VALIDATOR)
  const compiled = compileValidator(POLICY_VALIDATOR)
  t.not(generated, compiled)
  const docs: unknown[] = [
    EXAMPLE,
    { ...EXAMPLE, format: 2 },
    { ...EXAMPLE, extra: true },
    { format: 1 },
    { format: 1, guards: { '/g': { rules: [{ id: 'a', effect: 'permit', weight: 101 }] } } },
    { format: 1, guards: { '/g': { rules: [{ id: '', effect: 7, compression: 'rar' }] } } },
    { format: 1, keys: [{ name: 'k', secret: 'x' }], guards: {} },
    null, [], 'format: 1'
  ]
  for (const doc of docs) {
    const a = generated(doc)
    const b = compiled(doc)
    t.is(a, b, JSON.stringify(doc))
    t.deepEqual((generated.errors ?? []).map(e => [e.instancePath, e.keyword]), (compiled.errors ?? []).map(e => [e.instancePath, e.keyword]))
  }
  t.true(generated(EXAMPLE))
})

test('a generated file made from another schema is not used', t => {
  const spec: ValidatorSpec = { ...POLICY_VALIDATOR, schema: { type: 'object', properties: { other: { type: 'integer' } }, required: ['other'] } }
  t.not(specDigest(spec), specDigest(POLICY_VALIDATOR))
  const v = validatorFor(spec) // same name, so it finds generated/policy.js, whose stamp does not match
  t.false(v(EXAMPLE))
  t.true(v({ other: 1 }))
})
