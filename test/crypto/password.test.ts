// Password and token tests: scrypt encoding, verify true/false, malformed stored hashes, token hashing.
import test from 'ava'
import { hashPassword, newToken, tokenHash, tokenMatches, verifyPassword } from '../../lib/crypto/password'

const FAST = { N: 1024, r: 8, p: 1 }

test('the default parameters hash in the documented format and verify', async t => {
  const h = await hashPassword('correct horse')
  t.regex(h, /^scrypt\$32768\$8\$1\$[A-Za-z0-9_-]{22}\$[A-Za-z0-9_-]{43}$/)
  t.true(await verifyPassword('correct horse', h))
  t.false(await verifyPassword('correct horsf', h))
})

test('verify is true only for the same password; salts differ', async t => {
  const a = await hashPassword('pässwörd', FAST)
  const b = await hashPassword('pässwörd', FAST)
  t.not(a, b)
  t.true(await verifyPassword('pässwörd', a))
  t.true(await verifyPassword(Buffer.from('pässwörd'), b))
  t.false(await verifyPassword('passwörd', a))
  t.false(await verifyPassword('', a))
  t.false(await verifyPassword('x'.repeat(2000), a))
  t.true(await verifyPassword('', await hashPassword('', FAST)))
})

test('a malformed stored hash is PEM_ERR_BAD_CONFIG', async t => {
  const good = await hashPassword('pw', FAST)
  const parts = good.split('$')
  const bad = [
    '', 'scrypt', good.replace('scrypt', 'argon2'), parts.slice(0, 5).join('$'), [...parts, 'x'].join('$'),
    [parts[0], '1000', ...parts.slice(2)].join('$'), [parts[0], String(2 ** 22), ...parts.slice(2)].join('$'),
    [parts[0], parts[1], '0', ...parts.slice(3)].join('$'), [...parts.slice(0, 4), 'AA', parts[5]].join('$'),
    [...parts.slice(0, 5), 'AAAA'].join('$'), [parts[0], '-1024', ...parts.slice(2)].join('$'),
    [parts[0], String(2 ** 20), '32', ...parts.slice(3)].join('$') // 4 GiB of memory: refused before scrypt runs
  ]
  for (const s of bad) await t.throwsAsync(verifyPassword('pw', s), { code: 'PEM_ERR_BAD_CONFIG' }, s)
  await t.throwsAsync(hashPassword('x'.repeat(2000), FAST), { code: 'PEM_ERR_BAD_ARGUMENT' })
})

test('tokens are 32 random bytes; only their hash is compared', t => {
  const a = newToken()
  t.regex(a, /^[A-Za-z0-9_-]{43}$/)
  t.not(newToken(), a)
  const h = tokenHash(a)
  t.regex(h, /^[0-9a-f]{64}$/)
  t.true(tokenMatches(a, h))
  t.false(tokenMatches(newToken(), h))
  t.false(tokenMatches(a, h.toUpperCase()))
  t.false(tokenMatches(a, 'zz'))
  t.false(tokenMatches(undefined as unknown as string, h))
})
