// Encryption for data at rest (XChaCha20-Poly1305, random 24-byte nonce) and sealed boxes to a member's Ed25519 key
// (converted to X25519; libsodium crypto_box_seal). Layouts:
//   sealAtRest:  nonce(24) || ciphertext(n) || tag(16)                          = n + 40 bytes
//   sealTo:      ephemeral X25519 pk(32) || ciphertext(n) || tag(16)             = n + 48 bytes
import { PemError } from '../wire/errors'
import type { Identity } from './identity'
import { sodium } from './sodium'

export const AT_REST_KEY_BYTES = 32
export const AT_REST_NONCE_BYTES = 24
export const AT_REST_OVERHEAD = 24 + 16
export const SEALED_OVERHEAD = 48

function aadBuf (aad: Uint8Array | string | undefined): Buffer | null {
  if (aad === undefined) return null
  return typeof aad === 'string' ? Buffer.from(aad, 'utf8') : Buffer.from(aad.buffer, aad.byteOffset, aad.byteLength)
}

function toBuf (u: Uint8Array): Buffer { return Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength) }

function checkKey (key: Uint8Array): void {
  if (key?.length !== AT_REST_KEY_BYTES) throw new PemError('PEM_ERR_BAD_ARGUMENT', 'at-rest key must be 32 bytes')
}

/** A fresh random 32-byte key in a sodium_malloc buffer. */
export function newAtRestKey (): Buffer {
  const k = sodium.sodium_malloc(AT_REST_KEY_BYTES)
  sodium.randombytes_buf(k)
  return k
}

/** Encrypt and authenticate `plaintext`; `aad` (e.g. a context from contexts.ts plus a record name) is bound, not stored. */
export function sealAtRest (key: Uint8Array, plaintext: Uint8Array, aad?: Uint8Array | string): Buffer {
  checkKey(key)
  const out = Buffer.allocUnsafe(AT_REST_NONCE_BYTES + plaintext.length + 16)
  const nonce = out.subarray(0, AT_REST_NONCE_BYTES)
  sodium.randombytes_buf(nonce)
  sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(out.subarray(AT_REST_NONCE_BYTES), toBuf(plaintext), aadBuf(aad), null, nonce, toBuf(key))
  return out
}

/** Decrypt what sealAtRest produced; a wrong key, wrong aad, truncation or any flipped bit is PEM_ERR_STORE. */
export function openAtRest (key: Uint8Array, sealed: Uint8Array, aad?: Uint8Array | string): Buffer {
  checkKey(key)
  if (sealed.length < AT_REST_OVERHEAD) throw new PemError('PEM_ERR_STORE', 'sealed record is shorter than its nonce and tag')
  const s = toBuf(sealed)
  const out = Buffer.allocUnsafe(s.length - AT_REST_OVERHEAD)
  try {
    sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(out, null, s.subarray(AT_REST_NONCE_BYTES), aadBuf(aad), s.subarray(0, AT_REST_NONCE_BYTES), toBuf(key))
  } catch {
    throw new PemError('PEM_ERR_STORE', 'sealed record failed authentication')
  }
  return out
}

// Recipients' X25519 keys by their Ed25519 key (hex): the check and conversion cost ~200 µs, the box ~100 µs.
const RECIPIENTS_KEPT = 1024
const recipients = new Map<string, Buffer>()

function recipientOf (edPublicKey: Uint8Array): Buffer {
  const id = Buffer.from(edPublicKey.buffer, edPublicKey.byteOffset, edPublicKey.byteLength).toString('hex')
  let xpk = recipients.get(id)
  if (xpk === undefined) {
    xpk = Buffer.alloc(sodium.crypto_box_PUBLICKEYBYTES)
    try {
      if (!sodium.crypto_core_ed25519_is_valid_point(toBuf(edPublicKey))) throw new Error('small order or not on the curve')
      sodium.crypto_sign_ed25519_pk_to_curve25519(xpk, toBuf(edPublicKey))
    } catch (err) {
      throw new PemError('PEM_ERR_BAD_ARGUMENT', `recipient key is not a valid Ed25519 public key: ${(err as Error).message}`)
    }
    if (recipients.size >= RECIPIENTS_KEPT) recipients.delete(recipients.keys().next().value as string)
    recipients.set(id, xpk)
  }
  return xpk
}

/** Seal `data` so only the holder of the Ed25519 private key for `edPublicKey` (raw 32 bytes) can open it. */
export function sealTo (edPublicKey: Uint8Array, data: Uint8Array): Buffer {
  if (edPublicKey?.length !== 32) throw new PemError('PEM_ERR_BAD_ARGUMENT', 'recipient key must be 32 bytes')
  const xpk = recipientOf(edPublicKey)
  const out = Buffer.allocUnsafe(data.length + SEALED_OVERHEAD)
  sodium.crypto_box_seal(out, toBuf(data), xpk)
  return out
}

interface BoxKeys { pk: Buffer, sk: Buffer }
const boxKeys = new WeakMap<Identity, BoxKeys>()

function boxKeysOf (identity: Identity): BoxKeys {
  let k = boxKeys.get(identity)
  if (k === undefined) {
    const pk = Buffer.alloc(sodium.crypto_box_PUBLICKEYBYTES)
    const sk = sodium.sodium_malloc(sodium.crypto_box_SECRETKEYBYTES)
    sodium.crypto_sign_ed25519_pk_to_curve25519(pk, identity.publicKey)
    sodium.crypto_sign_ed25519_sk_to_curve25519(sk, identity.signKey)
    k = { pk, sk }
    boxKeys.set(identity, k)
  }
  return k
}

/**
 * Open a box sealed to `identity`; false when it was sealed to someone else or was altered (never throws). `out`
 * (exactly sealed.length - SEALED_OVERHEAD bytes, e.g. a sodium_malloc buffer for a secret) receives the plaintext.
 */
export function openSealed (identity: Identity, sealed: Uint8Array, out: Buffer = Buffer.allocUnsafe(Math.max(0, sealed.length - SEALED_OVERHEAD))): Buffer | false {
  if (sealed.length < SEALED_OVERHEAD || out.length !== sealed.length - SEALED_OVERHEAD) return false
  const { pk, sk } = boxKeysOf(identity)
  try {
    return sodium.crypto_box_seal_open(out, toBuf(sealed), pk, sk) ? out : false
  } catch {
    return false
  }
}
