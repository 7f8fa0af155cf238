// Enrollment tokens inside the spending change (issue 15): a token that expired while its enrollment waited behind other
// changes enrolls nothing, and every change that spends or creates a token drops the expired ones.
import test from 'ava'
import { dropExpiredTokens, spendToken } from '../../lib/server/handlers/enroll'
import { emptyState, type ConfigState } from '../../lib/server/state'

const NOW = Date.parse('2026-01-01T12:00:00Z')
const at = (ms: number): string => new Date(NOW + ms).toISOString()

function withTokens (): ConfigState {
  const s = emptyState()
  s.tokens = {
    live: { name: 'h1', expires: at(60_000), createdBy: 'admin' },
    stale: { name: 'h2', expires: at(-1), createdBy: 'admin' },
    broken: { name: 'h3', expires: 'not a time', createdBy: 'admin' }
  }
  return s
}

test('a live token is spent once and the expired ones go with it', t => {
  const d = withTokens()
  t.is(spendToken(d, 'live', NOW), 'enrolled')
  t.deepEqual(Object.keys(d.tokens), [])
  t.throws(() => spendToken(d, 'live', NOW), { code: 'PEM_ERR_BAD_TOKEN' }, 'a spent token enrolls nothing')
})

test('a token that expired while its enrollment waited is removed and enrolls nothing', t => {
  const d = withTokens()
  // It was valid when the host presented it; the change runs a minute and a millisecond later.
  t.is(spendToken(d, 'live', NOW + 60_001), 'expired')
  t.deepEqual(d.tokens, {})
})

test('creating a token drops expired ones and keeps the live ones', t => {
  const d = withTokens()
  dropExpiredTokens(d, NOW)
  t.deepEqual(Object.keys(d.tokens), ['live'])
})
