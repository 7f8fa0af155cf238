// spctl's side of admin authentication: the challenge-response login (the admin's key is derived from the password
// here and signs the member's challenge; the password never leaves this process), the one-time upgrade of an admin
// record made before admins had keys, and the admin's signatures over a member-list change and over a new password's
// record. docs/ADMIN.md, "Logging in" and "Changing a password".
import { adminPasswdInput, adminRecordInput, deriveAdminKeyPair, encodeAdminKey, loginInput, newAdminKey, openAdminKey, upgradeProof } from '../crypto/admin-key'
import { SIG_CTX_ADMIN_LOGIN, SIG_CTX_ADMIN_MEMBER_CHANGE, SIG_CTX_ADMIN_PASSWD } from '../crypto/contexts'
import { hashPassword, hashWith, type ScryptParams } from '../crypto/password'
import { sign } from '../crypto/sign'
import { PemError } from '../wire/errors'
import { adminCall, type AdminTarget } from './admin-client'

interface Kdf extends ScryptParams { salt: string }
interface Challenge { challenge: string, kdf?: Kdf, upgrade?: Kdf & { bytes: number } }

/**
 * `adminKey`: the admin's public key record as this login proved it (parameters, salt and public half; no secret),
 * kept with the session so a member-list change can check the password here before signing. `upgraded`: this login
 * gave the admin record its first signing key.
 */
export interface LoginResult { token: string, expires: string, user: string, serverId: string, adminKey: string, upgraded: boolean }

function kdfParams (k: Kdf): { params: ScryptParams, salt: Buffer } {
  return { params: { N: k.N, r: k.r, p: k.p }, salt: Buffer.from(String(k.salt), 'base64url') }
}

/** Logs in to the member at `target`: a challenge, answered with a signature by the password-derived key. */
export async function adminLogin (target: AdminTarget, user: string, password: string): Promise<LoginResult> {
  const asked = await adminCall(target, 'POST', '/v1/login/challenge', { user })
  const serverId = asked.serverId
  const c = asked.value as Challenge
  const challenge = Buffer.from(String(c.challenge), 'base64url')
  const input = loginInput(serverId, user, challenge)
  let body: Record<string, unknown>
  let adminKey: string
  if (c.kdf !== undefined) {
    const { params, salt } = kdfParams(c.kdf)
    const pair = await deriveAdminKeyPair(password, params, salt)
    body = { user, challenge: c.challenge, signature: sign(SIG_CTX_ADMIN_LOGIN, input, pair.signKey).toString('base64url') }
    adminKey = encodeAdminKey(params, salt, pair.publicKey)
  } else if (c.upgrade !== undefined) {
    // A record without a key: a new one (fresh salt), and the proof that this password is the record's.
    const { params, salt } = kdfParams(c.upgrade)
    const [hash, key] = await Promise.all([hashWith(password, params, salt, c.upgrade.bytes), newAdminKey(password)])
    body = {
      user,
      challenge: c.challenge,
      signature: sign(SIG_CTX_ADMIN_LOGIN, input, key.signKey).toString('base64url'),
      upgrade: { signKey: key.encoded, proof: upgradeProof(hash, serverId, user, challenge, key.encoded).toString('base64url') }
    }
    adminKey = key.encoded
  } else {
    throw new PemError('PEM_ERR_BAD_FRAME', 'the member answered the login challenge without key parameters')
  }
  const v = (await adminCall({ ...target, pin: serverId }, 'POST', '/v1/login', body)).value as { token: string, expires: string, user: string, upgraded?: boolean }
  return { token: v.token, expires: v.expires, user: v.user, serverId, adminKey, upgraded: v.upgraded === true }
}

/** The admin's secret key from `password`, checked against the session's `adminKey`; PEM_ERR_AUTH when it does not derive it. */
export async function adminSignKey (password: string, adminKey: string | undefined, user: string): Promise<Buffer> {
  if (adminKey === undefined) throw new PemError('PEM_ERR_AUTH', 'this session has no admin key on record: run spctl login again')
  const key = await openAdminKey(password, adminKey)
  if (key === null) throw new PemError('PEM_ERR_AUTH', `wrong password for admin ${user}`)
  return key
}

/** The admin's signature over adding or removing member `id` at `version` through member `origin` (changes.ts checks it). */
export function memberChangeSig (signKey: Buffer, clusterId: string, version: number, op: 'add' | 'remove', id: string, origin: string): { version: number, sig: string } {
  return { version, sig: sign(SIG_CTX_ADMIN_MEMBER_CHANGE, adminRecordInput(Buffer.from(clusterId, 'hex'), version, op, id, origin), signKey).toString('base64url') }
}

/** A new password's admin record: its hash, and the signing key it derives (`encoded` public record, `signKey` secret). */
export async function newAdminRecord (password: string): Promise<{ record: { hash: string, signKey: string }, signKey: Buffer }> {
  const [hash, key] = await Promise.all([hashPassword(password), newAdminKey(password)])
  return { record: { hash, signKey: key.encoded }, signKey: key.signKey }
}

/** The old password's signature over the admin's new record at `version` through member `origin` (changes.ts checks it). */
export function passwdChangeSig (oldSignKey: Buffer, clusterId: string, version: number, user: string, record: { hash: string, signKey: string }, origin: string): { version: number, sig: string } {
  return { version, sig: sign(SIG_CTX_ADMIN_PASSWD, adminPasswdInput(Buffer.from(clusterId, 'hex'), version, user, record, origin), oldSignKey).toString('base64url') }
}
