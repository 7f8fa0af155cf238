// Admin passwords (scrypt, encoded `scrypt$N$r$p$salt$hash`, base64url fields), keys derived from a secret (the
// embedded store's recovery key) and bearer tokens (random 32 bytes, stored only as their SHA-256). Comparisons are
// constant-time.
import crypto from 'node:crypto'
import { promisify } from 'node:util'
import { PemError } from '../wire/errors'

const scrypt = promisify(crypto.scrypt) as (pw: crypto.BinaryLike, salt: crypto.BinaryLike, len: number, opts: crypto.ScryptOptions) => Promise<Buffer>

export interface ScryptParams { N: number, r: number, p: number }
/** 2^15 / 8 / 1: about 32 MiB and ~50-100 ms per hash on a server core. */
export const SCRYPT_DEFAULT: ScryptParams = { N: 2 ** 15, r: 8, p: 1 }
const SALT_BYTES = 16
const HASH_BYTES = 32
const MAX_PASSWORD_BYTES = 1024

function maxmem (p: ScryptParams): number { return 128 * p.N * p.r + 16 * 1024 * 1024 }

function pwBytes (password: string | Buffer): Buffer {
  const b = typeof password === 'string' ? Buffer.from(password, 'utf8') : password
  if (b.length > MAX_PASSWORD_BYTES) throw new PemError('PEM_ERR_BAD_ARGUMENT', `password is longer than ${MAX_PASSWORD_BYTES} bytes`)
  return b
}

export async function hashPassword (password: string | Buffer, params: ScryptParams = SCRYPT_DEFAULT): Promise<string> {
  const salt = crypto.randomBytes(SALT_BYTES)
  const hash = await scrypt(pwBytes(password), salt, HASH_BYTES, { N: params.N, r: params.r, p: params.p, maxmem: maxmem(params) })
  return `scrypt$${params.N}$${params.r}$${params.p}$${salt.toString('base64url')}$${hash.toString('base64url')}`
}

/** Checks scrypt parameters read from a file: at most 256 MiB of memory, whatever the file says. */
export function checkScryptParams (p: ScryptParams): boolean {
  return Number.isInteger(p.N) && p.N >= 2 && p.N <= 2 ** 20 && (p.N & (p.N - 1)) === 0 && Number.isInteger(p.r) && p.r >= 1 && p.r <= 32 &&
    Number.isInteger(p.p) && p.p >= 1 && p.p <= 16 && p.N * p.r <= 2 ** 21
}

/** A 32-byte key from `secret` and `salt` (scrypt with `params`, checked by checkScryptParams). */
export async function deriveKey (secret: string | Buffer, salt: Buffer, params: ScryptParams = SCRYPT_DEFAULT): Promise<Buffer> {
  if (!checkScryptParams(params)) throw new PemError('PEM_ERR_BAD_ARGUMENT', 'scrypt parameters out of range')
  return await scrypt(pwBytes(secret), salt, HASH_BYTES, { N: params.N, r: params.r, p: params.p, maxmem: maxmem(params) })
}

/** The parameters, salt and hash bytes of a stored `scrypt$…` hash; PEM_ERR_BAD_CONFIG when it is malformed. */
export function parsePasswordHash (encoded: string): { params: ScryptParams, salt: Buffer, hash: Buffer } {
  const parts = typeof encoded === 'string' ? encoded.split('$') : []
  const badHash = (): never => { throw new PemError('PEM_ERR_BAD_CONFIG', 'stored password hash is malformed') }
  if (parts.length !== 6 || parts[0] !== 'scrypt') badHash()
  const [N, r, p] = parts.slice(1, 4).map(s => /^[0-9]{1,8}$/.test(s) ? Number(s) : NaN)
  if (!checkScryptParams({ N, r, p })) badHash()
  const salt = Buffer.from(parts[4], 'base64url')
  const hash = Buffer.from(parts[5], 'base64url')
  if (salt.length < 8 || salt.length > 64 || hash.length < 16 || hash.length > 64) badHash()
  return { params: { N, r, p }, salt, hash }
}

/** scrypt(password, salt) of `bytes` bytes: what a stored hash with these parameters holds for `password`. */
export async function hashWith (password: string | Buffer, params: ScryptParams, salt: Buffer, bytes: number): Promise<Buffer> {
  if (!checkScryptParams(params) || !Number.isInteger(bytes) || bytes < 16 || bytes > 64) throw new PemError('PEM_ERR_BAD_ARGUMENT', 'scrypt parameters out of range')
  return await scrypt(pwBytes(password), salt, bytes, { N: params.N, r: params.r, p: params.p, maxmem: maxmem(params) })
}

/** True when `password` matches; a malformed stored hash is PEM_ERR_BAD_CONFIG (it is our own data, not input). */
export async function verifyPassword (password: string | Buffer, encoded: string): Promise<boolean> {
  const { params, salt, hash } = parsePasswordHash(encoded)
  const pw = typeof password === 'string' ? Buffer.from(password, 'utf8') : password
  if (pw.length > MAX_PASSWORD_BYTES) return false
  const got = await scrypt(pw, salt, hash.length, { N: params.N, r: params.r, p: params.p, maxmem: maxmem(params) })
  return crypto.timingSafeEqual(got, hash)
}

/** A new bearer token: 32 random bytes, base64url (43 characters). Hand it out once; store tokenHash(token). */
export function newToken (): string { return crypto.randomBytes(32).toString('base64url') }

/** Hex SHA-256 of a token, the only form that is stored. */
export function tokenHash (token: string): string { return crypto.createHash('sha256').update(token, 'utf8').digest('hex') }

/** Constant-time check of a presented token against a stored tokenHash. */
export function tokenMatches (token: string, storedHash: string): boolean {
  if (typeof token !== 'string' || typeof storedHash !== 'string' || !/^[0-9a-f]{64}$/.test(storedHash)) return false
  return crypto.timingSafeEqual(Buffer.from(tokenHash(token), 'hex'), Buffer.from(storedHash, 'hex'))
}
