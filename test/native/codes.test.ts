// Drift test: every error code string in native/*.{cc,h} and native/fuse/*.{cc,h} exists in the one table, lib/wire/errors.ts.
import test from 'ava'
import fs from 'node:fs'
import path from 'node:path'
import { ERRORS } from '../../lib/wire/errors'
import { root } from './node-aead'

const NATIVE = path.join(root(), 'native')
const files = [...fs.readdirSync(NATIVE), ...fs.readdirSync(path.join(NATIVE, 'fuse')).map(f => path.join('fuse', f))]
  .filter(f => /\.(cc|h)$/.test(f))

test('native sources are found', t => {
  t.true(files.includes('errors.h'))
  t.true(files.includes('load_regs.cc'))
  t.true(files.includes(path.join('fuse', 'js.cc')))
})

test('every ENGINE_ERR_/PEM_ERR_ code used in native code is in lib/wire/errors.ts', t => {
  const used = new Set<string>()
  for (const f of files) {
    for (const m of fs.readFileSync(path.join(NATIVE, f), 'utf8').matchAll(/\b(?:ENGINE|PEM)_ERR_[A-Z0-9_]+\b/g)) used.add(m[0])
  }
  t.true(used.size >= 7, `only ${used.size} codes found`)
  const missing = [...used].filter(c => !Object.prototype.hasOwnProperty.call(ERRORS, c))
  t.deepEqual(missing, [])
})
