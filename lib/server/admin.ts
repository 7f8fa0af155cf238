// Admin API: JSON over HTTPS (TLS 1.3, the member's own Ed25519 certificate, pinned by spctl) on its own listener.
// Logins are challenge-response: the member hands out a single-use challenge and the salt of the admin's
// password-derived key, spctl answers with a signature made with that key (lib/crypto/admin-key.ts), and the member
// checks it against the record's public half: the password never reaches the member. A record made before admins had
// keys gains one at its first login, proved with the stored password hash. Sessions are expiring bearer tokens, swept
// out when they expire; every change is audited. Routes: docs/ADMIN.md.
// GET /metrics (Prometheus text) is the one route without a session: counts and states only, no names or secrets.
// Before a session is checked only a login body (a few KiB) is read; failed logins are throttled per source address.
import crypto from 'node:crypto'
import https from 'node:https'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { loginInput, parseAdminKey, upgradeProof } from '../crypto/admin-key'
import { MAC_CTX_UNKNOWN_ADMIN_SALT, SIG_CTX_ADMIN_LOGIN, SIG_CTX_ADMIN_MEMBER_CHANGE } from '../crypto/contexts'
import type { Identity } from '../crypto/identity'
import { parsePasswordHash, SCRYPT_DEFAULT } from '../crypto/password'
import { verify } from '../crypto/sign'
import { ERRORS, PemError, type ErrorCode } from '../wire/errors'
import type { AdminAuthority } from './cluster/changes'
import type { AdminRecord } from './state'

/**
 * `hash`: the admin record's password hash when the session was made; a session whose admin has set a new password
 * since (on any member) is ended at its next request, except the one that set it (docs/ADMIN.md, "Changing a password").
 */
export interface AdminSession { user: string, expires: number, hash: string }

/**
 * The session as the authority of a change (changes.ts): it expires with the session. `adminSig`, for a member-list
 * change or a password change: the admin's signature (made by spctl) under `ctx` (default the member-change context)
 * and the admin's public key; the change's record takes it when it is over the version the change is drafted at, and
 * fails with PEM_ERR_CHANGE_REBASED otherwise (spctl signs again).
 */
export function authorityOf (session: AdminSession, adminSig?: { sig: Buffer, publicKey: Buffer, ctx?: string }): AdminAuthority {
  const sign = adminSig === undefined
    ? null
    : (message: Buffer): Buffer => {
        if (verify(adminSig.ctx ?? SIG_CTX_ADMIN_MEMBER_CHANGE, message, adminSig.sig, adminSig.publicKey)) return adminSig.sig
        throw new PemError('PEM_ERR_CHANGE_REBASED', 'the change is now drafted at another version than the one the admin signed: sign again')
      }
  return { user: session.user, expires: session.expires, sign }
}
export interface AdminRequest { session: AdminSession, body: Record<string, unknown>, params: Record<string, string>, query: URLSearchParams }
type Handler = (req: AdminRequest) => Promise<unknown> | unknown
interface Route { method: string, pattern: RegExp, keys: string[], handler: Handler }

/** Largest body read before a session is checked (a login), and with a valid session (a policy text). */
export const PREAUTH_BODY_BYTES = 4 * 1024
export const MAX_BODY_BYTES = 4 * 1024 * 1024
/** Login answers checked at once, from all sources together (an upgrade among them waits for a cluster change). */
const MAX_LOGINS_VERIFYING = 2
/** A login challenge is answered within this long, once; at most this many are outstanding, per source and overall. */
const CHALLENGE_TTL_MS = 30_000
const CHALLENGES_PER_SOURCE = 8
const MAX_CHALLENGES = 1024
/** Live sessions kept; a login beyond it ends the oldest (audited). Expired ones are swept every minute (or ttl). */
export const MAX_SESSIONS = 4096
const CHALLENGE_BYTES = 32
const USER = /^[A-Za-z0-9._-]{1,64}$/
/** A source's failed logins are forgotten this long after its last one; until then each reply waits 100 ms more. */
const FAILURE_MEMORY_MS = 15 * 60 * 1000
const MAX_FAILURE_DELAY_MS = 2000
/** Sources remembered before those whose failures are forgotten are swept out. */
const SWEEP_SOURCES_ABOVE = 1024
const STATUS: Partial<Record<ErrorCode, number>> = {
  PEM_ERR_AUTH: 401, PEM_ERR_NOT_FOUND: 404, PEM_ERR_BAD_POLICY: 422, PEM_ERR_BAD_ARGUMENT: 400, PEM_ERR_BAD_BODY: 400, PEM_ERR_BUSY: 409,
  PEM_ERR_CHANGE_PENDING: 503, PEM_ERR_RATE_LIMITED: 429
}

interface LoginSource { failures: number, lastFailure: number, busy: boolean }

/**
 * Logins per source address: one at a time (a parallel attempt is refused before its password is checked), each
 * failure holds the next replies back longer, and only MAX_LOGINS_VERIFYING passwords are checked at once overall.
 */
class LoginThrottle {
  private readonly sources = new Map<string, LoginSource>()
  private verifying = 0

  /** Claim the source's one login slot, or throw PEM_ERR_RATE_LIMITED. */
  begin (address: string): LoginSource {
    const now = Date.now()
    let s = this.sources.get(address)
    if (s !== undefined && !s.busy && now - s.lastFailure > FAILURE_MEMORY_MS) { this.sources.delete(address); s = undefined }
    if (s?.busy === true) throw new PemError('PEM_ERR_RATE_LIMITED', 'a login from this address is already in progress')
    if (this.verifying >= MAX_LOGINS_VERIFYING) throw new PemError('PEM_ERR_RATE_LIMITED', 'too many logins in progress')
    if (s === undefined) {
      if (this.sources.size >= SWEEP_SOURCES_ABOVE) this.sweep(now)
      s = { failures: 0, lastFailure: 0, busy: false }
      this.sources.set(address, s)
    }
    s.busy = true
    this.verifying++
    return s
  }

  /** The password check is done; on failure, how long to hold the reply (the slot stays taken until end()). */
  checked (s: LoginSource, ok: boolean): number {
    this.verifying--
    if (ok) { s.failures = 0; return 0 }
    s.failures++
    s.lastFailure = Date.now()
    return Math.min(MAX_FAILURE_DELAY_MS, 100 * s.failures)
  }

  end (s: LoginSource): void { s.busy = false }

  sweep (now: number): void {
    for (const [k, s] of this.sources) if (!s.busy && now - s.lastFailure > FAILURE_MEMORY_MS) this.sources.delete(k)
  }
}

export interface MetricsSource { contentType: string, render: () => Promise<string> }

export class AdminApi {
  private readonly routes: Route[] = []
  private readonly sessions = new Map<string, AdminSession>() // by SHA-256 of the token, oldest first
  private readonly challenges = new Map<string, { user: string, source: string, expires: number }>() // by the challenge (base64url)
  private server: https.Server | null = null
  private sweeper: NodeJS.Timeout | null = null
  private readonly logins = new LoginThrottle()
  /** Key of the stand-in salts handed out for users that do not exist (stable across restarts, secret). */
  private readonly unknownSaltKey: Buffer
  metrics: MetricsSource | null = null

  /** `upgradeAdmin`: the cluster change that gives a key-less admin record its signing key (resolves once installed). */
  constructor (
    private readonly identity: Identity,
    private readonly tokenTtlS: number,
    private readonly lookupAdmin: (user: string) => AdminRecord | undefined,
    private readonly audit: (event: Record<string, unknown>) => void,
    private readonly upgradeAdmin: (user: string, signKey: string) => Promise<void>
  ) {
    this.unknownSaltKey = crypto.createHmac('sha256', identity.signKey.subarray(0, 32)).update(MAC_CTX_UNKNOWN_ADMIN_SALT).digest()
  }

  /** Live sessions and outstanding login challenges (/metrics). */
  get counts (): { sessions: number, challenges: number } { return { sessions: this.sessions.size, challenges: this.challenges.size } }

  route (method: string, path: string, handler: Handler): this {
    const keys: string[] = []
    const pattern = new RegExp('^' + path.replace(/:([a-z]+)/g, (_m, k: string) => { keys.push(k); return '([^/]+)' }) + '$')
    this.routes.push({ method, pattern, keys, handler })
    return this
  }

  async listen (host: string, port: number): Promise<{ host: string, port: number }> {
    this.server = https.createServer({ key: this.identity.keyPem, cert: this.identity.certPem, minVersion: 'TLSv1.3' }, (req, res) => { void this.serve(req, res) })
    await new Promise<void>((resolve, reject) => { this.server?.once('error', reject); this.server?.listen(port, host, () => resolve()) })
    this.sweeper = setInterval(() => this.sweep(), Math.min(60_000, this.tokenTtlS * 1000))
    this.sweeper.unref()
    const a = this.server.address()
    return typeof a === 'object' && a !== null ? { host: a.address, port: a.port } : { host, port }
  }

  async close (): Promise<void> {
    const s = this.server
    if (s === null) return
    this.server = null
    if (this.sweeper !== null) clearInterval(this.sweeper)
    s.closeAllConnections()
    await new Promise<void>(resolve => s.close(() => resolve()))
  }

  /** Expired sessions, challenges and forgotten login failures out (on a timer, so a flood of logins stays bounded). */
  sweep (): void {
    const now = Date.now()
    for (const [k, v] of this.sessions) if (v.expires < now) this.sessions.delete(k)
    for (const [k, v] of this.challenges) if (v.expires < now) this.challenges.delete(k)
    this.logins.sweep(now)
  }

  /**
   * A single-use login challenge for `user`, with the parameters and salt spctl derives the admin's key with. A user
   * that does not exist gets a stand-in salt (the same each time), so the answer does not tell which users exist; a
   * record without a signing key gets the parameters and salt of its password hash instead (`upgrade`).
   */
  private challenge (body: Record<string, unknown>, address: string): Record<string, unknown> {
    const user = body.user
    if (typeof user !== 'string' || !USER.test(user)) throw new PemError('PEM_ERR_BAD_ARGUMENT', 'user must be 1-64 characters of A-Z a-z 0-9 . _ -')
    const now = Date.now()
    if (this.challenges.size >= MAX_CHALLENGES) this.sweep()
    let fromSource = 0
    for (const c of this.challenges.values()) if (c.source === address) fromSource++
    if (fromSource >= CHALLENGES_PER_SOURCE || this.challenges.size >= MAX_CHALLENGES) throw new PemError('PEM_ERR_RATE_LIMITED', 'too many login challenges outstanding')
    const challenge = crypto.randomBytes(CHALLENGE_BYTES).toString('base64url')
    this.challenges.set(challenge, { user, source: address, expires: now + CHALLENGE_TTL_MS })
    const record = this.lookupAdmin(user)
    const key = parseAdminKey(record?.signKey)
    if (key !== null) return { challenge, kdf: { ...key.params, salt: key.salt.toString('base64url') } }
    if (record !== undefined && record.signKey === undefined) {
      const h = parsePasswordHash(record.hash)
      return { challenge, upgrade: { ...h.params, salt: h.salt.toString('base64url'), bytes: h.hash.length } }
    }
    const salt = crypto.createHmac('sha256', this.unknownSaltKey).update(user).digest().subarray(0, 16)
    return { challenge, kdf: { ...SCRYPT_DEFAULT, salt: salt.toString('base64url') } }
  }

  /**
   * The answer to a challenge: `signature` over loginInput(this member, user, challenge) with the admin's key; for a
   * record without a key, also `upgrade: {signKey, proof}` (the new key, and upgradeProof keyed with the password
   * hash), which installs that key in the cluster before the session is made. The challenge is spent either way.
   */
  private async login (body: Record<string, unknown>, address: string): Promise<{ token: string, expires: string, user: string, upgraded: boolean }> {
    const user = typeof body.user === 'string' ? body.user : ''
    const challenge = typeof body.challenge === 'string' ? body.challenge : ''
    const signature = Buffer.from(typeof body.signature === 'string' ? body.signature : '', 'base64url')
    const upgrade = body.upgrade as { signKey?: unknown, proof?: unknown } | undefined
    const slot = this.logins.begin(address)
    let newKey: string | null = null
    try {
      let ok = false
      try {
        const c = this.challenges.get(challenge)
        this.challenges.delete(challenge)
        const record = this.lookupAdmin(user)
        if (c !== undefined && c.user === user && c.expires >= Date.now() && record !== undefined) {
          const input = loginInput(this.identity.id, user, Buffer.from(challenge, 'base64url'))
          const key = parseAdminKey(record.signKey)
          if (key !== null) {
            ok = verify(SIG_CTX_ADMIN_LOGIN, input, signature, key.publicKey)
          } else if (record.signKey === undefined && typeof upgrade === 'object' && upgrade !== null && typeof upgrade.signKey === 'string' && typeof upgrade.proof === 'string') {
            const offered = parseAdminKey(upgrade.signKey)
            const expected = upgradeProof(parsePasswordHash(record.hash).hash, this.identity.id, user, Buffer.from(challenge, 'base64url'), upgrade.signKey)
            const proof = Buffer.from(upgrade.proof, 'base64url')
            ok = offered !== null && proof.length === expected.length && crypto.timingSafeEqual(proof, expected) && verify(SIG_CTX_ADMIN_LOGIN, input, signature, offered.publicKey)
            if (ok) newKey = upgrade.signKey
          }
        }
      } finally {
        const delayMs = this.logins.checked(slot, ok)
        if (!ok) {
          this.audit({ kind: 'security', event: 'admin_login_failed', user, ip: address })
          await new Promise(resolve => setTimeout(resolve, delayMs))
        }
      }
      if (!ok) throw new PemError('PEM_ERR_AUTH', 'wrong user or password (or a used or expired challenge)')
      if (newKey !== null) {
        await this.upgradeAdmin(user, newKey)
        this.audit({ kind: 'admin', event: 'admin_key_added', user })
      }
    } finally {
      this.logins.end(slot)
    }
    const token = crypto.randomBytes(32).toString('base64url')
    const expires = Date.now() + this.tokenTtlS * 1000
    if (this.sessions.size >= MAX_SESSIONS) this.sweep()
    for (const [k, v] of this.sessions) {
      if (this.sessions.size < MAX_SESSIONS) break
      this.sessions.delete(k)
      this.audit({ kind: 'security', event: 'admin_session_evicted', user: v.user })
    }
    this.sessions.set(sha256(token), { user, expires, hash: this.lookupAdmin(user)?.hash ?? '' })
    this.audit({ kind: 'admin', event: 'login', user })
    return { token, expires: new Date(expires).toISOString(), user, upgraded: newKey !== null }
  }

  private session (req: IncomingMessage): AdminSession {
    const m = /^Bearer ([A-Za-z0-9_-]{16,128})$/.exec(req.headers.authorization ?? '')
    const s = m === null ? undefined : this.sessions.get(sha256(m[1]))
    if (s === undefined) throw new PemError('PEM_ERR_AUTH', 'not logged in: run spctl login')
    if (s.expires < Date.now()) {
      if (m !== null) this.sessions.delete(sha256(m[1]))
      throw new PemError('PEM_ERR_AUTH', 'session expired: run spctl login again')
    }
    if (this.lookupAdmin(s.user)?.hash !== s.hash) {
      if (m !== null) this.sessions.delete(sha256(m[1]))
      this.audit({ kind: 'security', event: 'admin_session_ended', user: s.user, reason: 'password changed' })
      throw new PemError('PEM_ERR_AUTH', `the password of admin ${s.user} was changed since this session began: run spctl login again`)
    }
    return s
  }

  private async serve (req: IncomingMessage, res: ServerResponse): Promise<void> {
    let bodyRead = false
    const body = async (maxBytes: number): Promise<Record<string, unknown>> => { const v = await readJson(req, maxBytes); bodyRead = true; return v }
    try {
      const url = new URL(req.url ?? '/', 'https://admin')
      if (req.method === 'GET' && url.pathname === '/metrics' && this.metrics !== null) {
        const text = await this.metrics.render()
        res.writeHead(200, { 'content-type': this.metrics.contentType, 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' })
        res.end(text)
        return
      }
      if (req.method === 'POST' && url.pathname === '/v1/login/challenge') return send(res, 200, this.challenge(await body(PREAUTH_BODY_BYTES), req.socket.remoteAddress ?? ''))
      if (req.method === 'POST' && url.pathname === '/v1/login') return send(res, 200, await this.login(await body(PREAUTH_BODY_BYTES), req.socket.remoteAddress ?? ''))
      for (const r of this.routes) {
        if (r.method !== req.method) continue
        const m = r.pattern.exec(url.pathname)
        if (m === null) continue
        const session = this.session(req) // before a byte of the body is read
        const parsed = await body(MAX_BODY_BYTES)
        const params: Record<string, string> = {}
        r.keys.forEach((k, i) => { params[k] = decodeURIComponent(m[i + 1]) })
        return send(res, 200, await r.handler({ session, body: parsed, params, query: url.searchParams }))
      }
      throw new PemError('PEM_ERR_NOT_FOUND', `no route ${req.method ?? ''} ${url.pathname}`)
    } catch (err) {
      const e = PemError.from(err)
      const details = (err as { details?: unknown }).details
      // A body left unread (refused before or while reading it) is not drained: the connection closes after the reply.
      if (!bodyRead && declaresBody(req)) res.setHeader('connection', 'close')
      send(res, STATUS[e.code] ?? (e.code === 'PEM_ERR_UNKNOWN' ? 500 : 400), { error: { code: e.code, id: ERRORS[e.code].id, message: e.message, details } })
    }
  }
}

function sha256 (s: string): string { return crypto.createHash('sha256').update(s).digest('hex') }

function send (res: ServerResponse, status: number, value: unknown): void {
  const text = JSON.stringify(value ?? null)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' })
  res.end(text)
}

function declaresBody (req: IncomingMessage): boolean {
  return req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0
}

/** The request's JSON object body ({} when empty); refused unread when its declared length is over `maxBytes`. */
async function readJson (req: IncomingMessage, maxBytes: number): Promise<Record<string, unknown>> {
  const tooLarge = (): PemError => new PemError('PEM_ERR_BAD_ARGUMENT', `request body over ${maxBytes} bytes`)
  if (Number(req.headers['content-length'] ?? 0) > maxBytes) throw tooLarge()
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req) {
    size += (chunk as Buffer).length
    if (size > maxBytes) throw tooLarge()
    chunks.push(chunk as Buffer)
  }
  if (size === 0) return {}
  let v: unknown
  try { v = JSON.parse(Buffer.concat(chunks).toString('utf8')) } catch { throw new PemError('PEM_ERR_BAD_ARGUMENT', 'request body is not JSON') }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new PemError('PEM_ERR_BAD_ARGUMENT', 'request body must be a JSON object')
  return v as Record<string, unknown>
}
