// Error table drift test: ids unique, errnos real, every code documented in FORMAT.md, wire round trip.
import test from 'ava'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { ERRORS, PemError, type ErrorCode } from '../../lib/wire/errors'

const FORMAT = fs.readFileSync(path.join(__dirname, '../../../lib/wire/FORMAT.md'), 'utf8')

test('error ids are unique', t => {
  const ids = Object.values(ERRORS).map(e => e.id)
  t.is(new Set(ids).size, ids.length)
})

for (const [code, e] of Object.entries(ERRORS)) {
  test(`${code} is documented with its id and maps to a real errno`, t => {
    t.regex(FORMAT, new RegExp(`\\| ${e.id} \\| ${code} \\| ${e.errno} \\|`))
    t.is(typeof (os.constants.errno as Record<string, number>)[e.errno], 'number')
  })
}

test('wire round trip keeps the code; an unknown id keeps its number', t => {
  const e = PemError.fromWire(...new PemError('PEM_ERR_STALE_POLICY', 'v4').toWire())
  t.is(e.code, 'PEM_ERR_STALE_POLICY'); t.is(e.message, 'v4')
  const u = PemError.fromWire(9999, 'from the future')
  t.is(u.code, 'PEM_ERR_UNKNOWN' as ErrorCode); t.is(u.wireId, 9999)
  t.is(PemError.fromWire('x', 5).code, 'PEM_ERR_UNKNOWN')
})
