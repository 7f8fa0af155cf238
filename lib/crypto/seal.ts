// Encryption for data at rest (XChaCha20-Poly1305, random 24-byte nonce), sealed boxes to a member's Ed25519 key
// (converted to X25519; libsodium crypto_box_seal), and pair boxes from a member to one host (the X25519 forms of
// both Ed25519 identities through libsodium crypto_kx, the member as server; the session key is kept, so a box
// costs one AEAD, not two scalar multiplications). Layouts:
//   sealAtRest:  nonce(24) || ciphertext(n) || tag(16)                          = n + 40 bytes
//   sealTo:      ephemeral X25519 pk(32) || ciphertext(n) || tag(16)             = n + 48 bytes
//   sealPair:    nonce(24) || ciphertext(n) || tag(16)                          = n + 40 bytes
import { PemError } from '../wire/errors'
import type { Identity } from './identity'
import { sodium } from './sodium'

export const AT_REST_KEY_BYTES = 32
export const AT_REST_NONCE_BYTES = 24
export const AT_REST_OVERHEAD = 24 + 16
export const SEALED_OVERHEAD = 48
export const PAIR_OVERHEAD = 24 + 16

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

/** The X25519 form of a peer's raw Ed25519 key, checked (cached). */
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

// Pair keys by (own Ed25519 key, role, peer Ed25519 key): the crypto_kx session key in the member-to-host direction.
const PAIRS_KEPT = 1024
const pairs = new Map<string, Buffer>()

/**
 * The key of boxes from a member to a host: crypto_kx with the member as server (its tx) and the host as client
 * (its rx), so both ends compute the same 32 bytes from their own secret key and the other's public key.
 */
function pairKeyOf (own: Identity, role: 'member' | 'host', peerEdKey: Uint8Array): Buffer {
  if (peerEdKey?.length !== 32) throw new PemError('PEM_ERR_BAD_ARGUMENT', 'peer key must be 32 bytes')
  const id = `${own.id}|${role}|${Buffer.from(peerEdKey.buffer, peerEdKey.byteOffset, 32).toString('hex')}`
  let key = pairs.get(id)
  if (key === undefined) {
    const peer = recipientOf(peerEdKey)
    const { pk, sk } = boxKeysOf(own)
    const rx = sodium.sodium_malloc(sodium.crypto_kx_SESSIONKEYBYTES)
    const tx = sodium.sodium_malloc(sodium.crypto_kx_SESSIONKEYBYTES)
    try {
      if (role === 'member') sodium.crypto_kx_server_session_keys(rx, tx, pk, sk, peer)
      else sodium.crypto_kx_client_session_keys(rx, tx, pk, sk, peer)
    } catch {
      throw new PemError('PEM_ERR_BAD_ARGUMENT', 'no shared key with this peer key (a low-order point)')
    }
    key = role === 'member' ? tx : rx
    sodium.sodium_memzero(role === 'member' ? rx : tx)
    if (pairs.size >= PAIRS_KEPT) {
      const [oldest, old] = pairs.entries().next().value as [string, Buffer]
      sodium.sodium_memzero(old)
      pairs.delete(oldest)
    }
    pairs.set(id, key)
  }
  return key
}

/** Seal `data` from the member `member` to the host whose raw Ed25519 key is `hostKey`; `aad` is bound, not stored. */
export function sealPair (member: Identity, hostKey: Uint8Array, data: Uint8Array, aad: string): Buffer {
  const key = pairKeyOf(member, 'member', hostKey)
  const out = Buffer.allocUnsafe(PAIR_OVERHEAD + data.length)
  const nonce = out.subarray(0, 24)
  sodium.randombytes_buf(nonce)
  sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(out.subarray(24), toBuf(data), Buffer.from(aad, 'utf8'), null, nonce, key)
  return out
}

/**
 * Open, as the host `host`, a box sealPair made by the member whose raw Ed25519 key is `memberKey`; false when another
 * member or for another host sealed it, or it was altered (never throws for a bad box). `out` (exactly
 * sealed.length - PAIR_OVERHEAD bytes) receives the plaintext.
 */
export function openPair (host: Identity, memberKey: Uint8Array, sealed: Uint8Array, out: Buffer, aad: string): Buffer | false {
  if (sealed.length < PAIR_OVERHEAD || out.length !== sealed.length - PAIR_OVERHEAD) return false
  const key = pairKeyOf(host, 'host', memberKey)
  const s = toBuf(sealed)
  try {
    sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(out, null, s.subarray(24), Buffer.from(aad, 'utf8'), s.subarray(0, 24), key)
    return out
  } catch {
    return false
  }
}
