// Sealing tests: at-rest AEAD binds key, nonce and aad; sealed boxes open only for their recipient.
import test from 'ava'
import { AAD_CTX_CONFIG_STORE, AAD_CTX_KEYRING } from '../../lib/crypto/contexts'
import { generateIdentity } from '../../lib/crypto/identity'
import { AT_REST_OVERHEAD, SEALED_OVERHEAD, newAtRestKey, openAtRest, openSealed, sealAtRest, sealTo } from '../../lib/crypto/seal'

test('sealAtRest round trips for sizes 0..300 and every output differs (random nonce)', t => {
  const key = newAtRestKey()
  for (let n = 0; n <= 300; n += 7) {
    const pt = Buffer.alloc(n, n & 0xff)
    const a = sealAtRest(key, pt, AAD_CTX_CONFIG_STORE)
    const b = sealAtRest(key, pt, AAD_CTX_CONFIG_STORE)
    t.is(a.length, n + AT_REST_OVERHEAD)
    t.notDeepEqual(a, b)
    t.deepEqual(openAtRest(key, a, AAD_CTX_CONFIG_STORE), pt)
  }
})

test('a wrong key, wrong aad, flipped bit or truncation is PEM_ERR_STORE', t => {
  const key = newAtRestKey()
  const sealed = sealAtRest(key, Buffer.from('data key material'), AAD_CTX_KEYRING)
  t.throws(() => openAtRest(newAtRestKey(), sealed, AAD_CTX_KEYRING), { code: 'PEM_ERR_STORE' })
  t.throws(() => openAtRest(key, sealed, AAD_CTX_CONFIG_STORE), { code: 'PEM_ERR_STORE' })
  t.throws(() => openAtRest(key, sealed), { code: 'PEM_ERR_STORE' })
  for (let i = 0; i < sealed.length; i++) {
    const bad = Buffer.from(sealed); bad[i] ^= 0x10
    t.throws(() => openAtRest(key, bad, AAD_CTX_KEYRING), { code: 'PEM_ERR_STORE' })
  }
  t.throws(() => openAtRest(key, sealed.subarray(0, sealed.length - 1), AAD_CTX_KEYRING), { code: 'PEM_ERR_STORE' })
  t.throws(() => openAtRest(key, sealed.subarray(0, 39), AAD_CTX_KEYRING), { code: 'PEM_ERR_STORE' })
  t.throws(() => sealAtRest(Buffer.alloc(16), Buffer.alloc(1)), { code: 'PEM_ERR_BAD_ARGUMENT' })
})

test('sealTo / openSealed round trip; another recipient or a flipped bit gets false', t => {
  const alice = generateIdentity()
  const bob = generateIdentity()
  const data = Buffer.from('wrapped data key for policy version 7')
  const box = sealTo(alice.publicKey, data)
  t.is(box.length, data.length + SEALED_OVERHEAD)
  t.deepEqual(openSealed(alice, box), data)
  t.false(openSealed(bob, box))
  for (let i = 0; i < box.length; i += 5) {
    const bad = Buffer.from(box); bad[i] ^= 1
    t.false(openSealed(alice, bad))
  }
  t.false(openSealed(alice, box.subarray(0, 47)))
  t.deepEqual(openSealed(alice, sealTo(alice.publicKey, Buffer.alloc(0))), Buffer.alloc(0))
})

test('sealTo refuses a malformed recipient key by code', t => {
  t.throws(() => sealTo(Buffer.alloc(31), Buffer.from('x')), { code: 'PEM_ERR_BAD_ARGUMENT' })
  t.throws(() => sealTo(Buffer.alloc(32), Buffer.from('x')), { code: 'PEM_ERR_BAD_ARGUMENT' })
  t.throws(() => sealTo(Buffer.from('01'.padEnd(64, '0'), 'hex'), Buffer.from('x')), { code: 'PEM_ERR_BAD_ARGUMENT' }, 'the identity point has small order')
})
