// An admin's signing key, derived from the admin's password: seed = scrypt(password, "pem/v1 admin signing key" ‖ salt),
// an Ed25519 key pair from that seed. The configuration keeps only `ed25519-scrypt$N$r$p$<salt>$<public key>`
// (base64url fields). Only spctl derives the secret half: it answers a member's login challenge with a signature
// (loginInput) and signs member-list changes itself (lib/server/cluster/changes.ts), so the password never leaves the
// admin's machine (docs/ADMIN.md, "Logging in"; docs/CLUSTER.md, "The admin's signature and its limit").
import crypto from 'node:crypto'
import { pack } from '../wire/frame'
import { KDF_CTX_ADMIN_SIGN_KEY, MAC_CTX_ADMIN_KEY_UPGRADE } from './contexts'
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

/** The key pair `password` derives with these parameters and salt (what a login challenge hands out). */
export async function deriveAdminKeyPair (password: string, params: ScryptParams, salt: Buffer): Promise<AdminKeyPair> {
  return adminKeyPairFromSeed(await seedOf(password, params, salt))
}

/** A new admin key for `password` (fresh salt): `encoded` is what the admin's record stores, `signKey` its secret half. */
export async function newAdminKey (password: string, params: ScryptParams = SCRYPT_DEFAULT): Promise<{ encoded: string, signKey: Buffer }> {
  const salt = crypto.randomBytes(SALT_BYTES)
  const pair = await deriveAdminKeyPair(password, params, salt)
  return { encoded: encodeAdminKey(params, salt, pair.publicKey), signKey: pair.signKey }
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

/**
 * What an admin signs to log in (SIG_CTX_ADMIN_LOGIN): msgpack [member id, user, challenge]. The member id is the key
 * spctl pinned, so a member that relays another member's challenge gets an answer that member refuses.
 */
export function loginInput (memberId: string, user: string, challenge: Buffer): Buffer {
  return pack([memberId, user, challenge])
}

/**
 * The proof that upgrades an admin record without `signKey`: HMAC-SHA256 keyed with the stored password hash's bytes
 * (which spctl recomputes from the password) over ctx ‖ 0x00 ‖ msgpack [member id, user, challenge, new signKey].
 */
export function upgradeProof (passwordHash: Buffer, memberId: string, user: string, challenge: Buffer, encodedKey: string): Buffer {
  return crypto.createHmac('sha256', passwordHash).update(MAC_CTX_ADMIN_KEY_UPGRADE + '\0').update(pack([memberId, user, challenge, encodedKey])).digest()
}

/**
 * What an admin signs for a member-list change: cluster id ‖ u64 version ‖ msgpack [op, member id, origin id]. Bound
 * to the version and the proposing member, so a record copied from the log authorises nothing at any other version.
 */
export function adminRecordInput (clusterId: Buffer, version: number, op: 'add' | 'remove', id: string, origin: string): Buffer {
  const v = Buffer.alloc(8)
  v.writeBigUInt64BE(BigInt(version))
  return Buffer.concat([clusterId, v, pack([op, id, origin])])
}

/**
 * What an admin signs, with the key of the old password, to change it (SIG_CTX_ADMIN_PASSWD): cluster id ‖ u64
 * version ‖ msgpack [user, new password hash, new signKey, origin id]. Bound to the version and the proposing member
 * like adminRecordInput; every member checks it against the key the record had before (changes.ts).
 */
export function adminPasswdInput (clusterId: Buffer, version: number, user: string, record: { hash: string, signKey: string }, origin: string): Buffer {
  const v = Buffer.alloc(8)
  v.writeBigUInt64BE(BigInt(version))
  return Buffer.concat([clusterId, v, pack([user, record.hash, record.signKey, origin])])
}
