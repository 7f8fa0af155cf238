// Build step (`npm run compile`, after tsc): writes the standalone code of every JSON-schema validator to
// dist/lib/policy/generated/ (lib/policy/validator.ts explains why and how it is loaded).
import fs from 'node:fs'
import path from 'node:path'
import { POLICY_VALIDATOR } from '../lib/policy/schema'
import { CONFIG_VALIDATOR } from '../lib/server/config'
import { generatedCode, generatedPath } from '../lib/policy/validator'

for (const spec of [POLICY_VALIDATOR, CONFIG_VALIDATOR]) {
  const file = generatedPath(spec)
  fs.mkdirSync(path.dirname(file), { recursive: true })
  fs.writeFileSync(file, generatedCode(spec))
}
