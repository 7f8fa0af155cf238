// Detached Ed25519 signatures with named contexts (lib/crypto/contexts.ts): sig = Ed25519(ctx || 0x00 || message).
// verify returns false on any failure and never throws (sodium-native style); the protocol layer maps false to
// PEM_ERR_BAD_SIGNATURE.
import { PemError } from '../wire/errors'
import { sodium } from './sodium'

export const SIGNATURE_BYTES = 64

function framed (ctx: string, message: Uint8Array): Buffer {
  const c = Buffer.from(ctx, 'utf8')
  const out = Buffer.allocUnsafe(c.length + 1 + message.length)
  c.copy(out, 0)
  out[c.length] = 0
  out.set(message, c.length + 1)
  return out
}

function checkCtx (ctx: string): void {
  if (typeof ctx !== 'string' || ctx.length === 0 || ctx.includes('\0')) throw new PemError('PEM_ERR_BAD_ARGUMENT', 'signature context must be a non-empty string without NUL')
}

/** Sign `message` under context `ctx` with a 64-byte libsodium secret key (Identity.signKey). */
export function sign (ctx: string, message: Uint8Array, signKey: Buffer): Buffer {
  checkCtx(ctx)
  if (!Buffer.isBuffer(signKey) || signKey.length !== sodium.crypto_sign_SECRETKEYBYTES) throw new PemError('PEM_ERR_BAD_ARGUMENT', 'signing key must be 64 bytes')
  const sig = Buffer.alloc(SIGNATURE_BYTES)
  sodium.crypto_sign_detached(sig, framed(ctx, message), signKey)
  return sig
}

/** True only when `sig` is a valid signature of `message` under `ctx` by the raw 32-byte `publicKey`. */
export function verify (ctx: string, message: Uint8Array, sig: Uint8Array, publicKey: Uint8Array): boolean {
  try {
    if (typeof ctx !== 'string' || ctx.length === 0 || ctx.includes('\0')) return false
    if (sig?.length !== SIGNATURE_BYTES || publicKey?.length !== sodium.crypto_sign_PUBLICKEYBYTES) return false
    return sodium.crypto_sign_verify_detached(asBuffer(sig), framed(ctx, message), asBuffer(publicKey))
  } catch {
    return false
  }
}

function asBuffer (u: Uint8Array): Buffer {
  return Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength)
}
