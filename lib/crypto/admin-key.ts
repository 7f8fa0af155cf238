// An admin's signing key, derived from the admin's password: seed = scrypt(password, "pem/v1 admin signing key" ‖ salt),
// an Ed25519 key pair from that seed. The configuration keeps only `ed25519-scrypt$N$r$p$<salt>$<public key>`
// (base64url fields); a member derives the secret half at login, from the password it was just given, and holds it in
// that admin session only. Member-list changes carry its signature (lib/server/cluster/changes.ts; docs/CLUSTER.md).
import crypto from 'node:crypto'
import { KDF_CTX_ADMIN_SIGN_KEY } from './contexts'
import { checkScryptParams, deriveKey, SCRYPT_DEFAULT, type ScryptParams } from './password'
import { sodium } from './sodium'

const PREFIX = 'ed25519-scrypt'
const SALT_BYTES = 16

export interface AdminKeyPair { publicKey: Buffer, signKey: Buffer }

/** The key pair of a 32-byte seed (libsodium's 64-byte secret key, as lib/crypto/sign.ts takes it). */
export function adminKeyPairFromSeed (seed: Buffer): AdminKeyPair {
  const publicKey = Buffer.alloc(sodium.crypto_sign_PUBLICKEYBYTES)
  const signKey = Buffer.alloc(sodium.crypto_sign_SECRETKEYBYTES)
  sodium.crypto_sign_seed_keypair(publicKey, signKey, seed)
  return { publicKey, signKey }
}

export function encodeAdminKey (params: ScryptParams, salt: Buffer, publicKey: Buffer): string {
  return `${PREFIX}$${params.N}$${params.r}$${params.p}$${salt.toString('base64url')}$${publicKey.toString('base64url')}`
}

/** The parts of a stored admin key, or null when it is malformed. */
export function parseAdminKey (encoded: unknown): { params: ScryptParams, salt: Buffer, publicKey: Buffer } | null {
  const parts = typeof encoded === 'string' ? encoded.split('$') : []
  if (parts.length !== 6 || parts[0] !== PREFIX) return null
  const [N, r, p] = parts.slice(1, 4).map(s => /^[0-9]{1,8}$/.test(s) ? Number(s) : NaN)
  const salt = Buffer.from(parts[4], 'base64url')
  const publicKey = Buffer.from(parts[5], 'base64url')
  if (!checkScryptParams({ N, r, p }) || salt.length < 8 || salt.length > 64 || publicKey.length !== sodium.crypto_sign_PUBLICKEYBYTES) return null
  return { params: { N, r, p }, salt, publicKey }
}

async function seedOf (password: string, params: ScryptParams, salt: Buffer): Promise<Buffer> {
  return await deriveKey(password, Buffer.concat([Buffer.from(KDF_CTX_ADMIN_SIGN_KEY, 'utf8'), salt]), params)
}

/** A new admin key for `password` (fresh salt): what `spd init` stores in the admin's record. */
export async function newAdminKey (password: string, params: ScryptParams = SCRYPT_DEFAULT): Promise<string> {
  const salt = crypto.randomBytes(SALT_BYTES)
  return encodeAdminKey(params, salt, adminKeyPairFromSeed(await seedOf(password, params, salt)).publicKey)
}

/** The secret half for `password`, or null when the record is malformed or the password does not derive its key. */
export async function openAdminKey (password: string, encoded: string): Promise<Buffer | null> {
  const parsed = parseAdminKey(encoded)
  if (parsed === null) return null
  let seed: Buffer
  try { seed = await seedOf(password, parsed.params, parsed.salt) } catch { return null } // a password over the length limit
  const pair = adminKeyPairFromSeed(seed)
  return pair.publicKey.equals(parsed.publicKey) ? pair.signKey : null
}
