// Signature tests: contexts separate purposes, any flipped bit fails, failures return false, and OpenSSL agrees.
import test from 'ava'
import crypto from 'node:crypto'
import { SIG_CONTEXTS, SIG_CTX_CLUSTER_MSG, SIG_CTX_POLICY_SET } from '../../lib/crypto/contexts'
import { generateIdentity } from '../../lib/crypto/identity'
import { sign, verify } from '../../lib/crypto/sign'

const me = generateIdentity()
const msg = Buffer.from('heartbeat #42 from member a')

test('a signature verifies under its context and key, and node:crypto (OpenSSL) agrees', t => {
  const sig = sign(SIG_CTX_CLUSTER_MSG, msg, me.signKey)
  t.is(sig.length, 64)
  t.true(verify(SIG_CTX_CLUSTER_MSG, msg, sig, me.publicKey))
  const framed = Buffer.concat([Buffer.from(SIG_CTX_CLUSTER_MSG), Buffer.from([0]), msg])
  t.true(crypto.verify(null, framed, me.publicKeyObject, sig))
  t.deepEqual(crypto.sign(null, framed, me.keyObject), sig, 'Ed25519 is deterministic: both libraries give the same bytes')
})

test('another context, key or message fails', t => {
  const sig = sign(SIG_CTX_CLUSTER_MSG, msg, me.signKey)
  t.false(verify(SIG_CTX_POLICY_SET, msg, sig, me.publicKey))
  t.false(verify(SIG_CTX_CLUSTER_MSG, msg, sig, generateIdentity().publicKey))
  t.false(verify(SIG_CTX_CLUSTER_MSG, Buffer.concat([msg, Buffer.from([0])]), sig, me.publicKey))
  t.false(verify(SIG_CTX_CLUSTER_MSG, Buffer.alloc(0), sig, me.publicKey))
})

test('every flipped bit of message, signature or key returns false', t => {
  const sig = sign(SIG_CTX_CLUSTER_MSG, msg, me.signKey)
  let checked = 0
  for (const [name, buf] of [['message', msg], ['signature', sig], ['key', me.publicKey]] as const) {
    for (let bit = 0; bit < buf.length * 8; bit++) {
      const m = Buffer.from(msg); const s = Buffer.from(sig); const k = Buffer.from(me.publicKey)
      const target = name === 'message' ? m : name === 'signature' ? s : k
      target[bit >> 3] ^= 1 << (bit & 7)
      if (verify(SIG_CTX_CLUSTER_MSG, m, s, k)) t.fail(`${name} bit ${bit} flipped still verifies`)
      checked++
    }
  }
  t.is(checked, (msg.length + 64 + 32) * 8)
})

test('bad arguments make verify return false, never throw', t => {
  const sig = sign(SIG_CTX_CLUSTER_MSG, msg, me.signKey)
  t.false(verify(SIG_CTX_CLUSTER_MSG, msg, sig.subarray(0, 63), me.publicKey))
  t.false(verify(SIG_CTX_CLUSTER_MSG, msg, sig, me.publicKey.subarray(0, 31)))
  t.false(verify('', msg, sig, me.publicKey))
  t.false(verify('a\0b', msg, sig, me.publicKey))
  t.false(verify(SIG_CTX_CLUSTER_MSG, msg, null as unknown as Buffer, me.publicKey))
  t.false(verify(SIG_CTX_CLUSTER_MSG, msg, sig, undefined as unknown as Buffer))
  t.false(verify(SIG_CTX_CLUSTER_MSG, msg, Buffer.alloc(64), Buffer.alloc(32)))
  t.true(verify(SIG_CTX_CLUSTER_MSG, new Uint8Array(msg), new Uint8Array(sig), new Uint8Array(me.publicKey)))
})

test('sign refuses a context with NUL or a wrong-size key by code', t => {
  t.throws(() => sign('a\0b', msg, me.signKey), { code: 'PEM_ERR_BAD_ARGUMENT' })
  t.throws(() => sign('', msg, me.signKey), { code: 'PEM_ERR_BAD_ARGUMENT' })
  t.throws(() => sign(SIG_CTX_CLUSTER_MSG, msg, Buffer.alloc(32)), { code: 'PEM_ERR_BAD_ARGUMENT' })
})

test('signature contexts are distinct, versioned and NUL-free', t => {
  t.is(new Set(SIG_CONTEXTS).size, SIG_CONTEXTS.length)
  for (const c of SIG_CONTEXTS) t.regex(c, /^pem\/v1 [a-z ]+$/)
})
