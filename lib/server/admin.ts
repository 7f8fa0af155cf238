// Admin API: JSON over HTTPS (TLS 1.3, the member's own Ed25519 certificate, pinned by spctl) on its own listener.
// Logins check an scrypt hash and hand out expiring bearer tokens; every change is audited. Routes: docs/ADMIN.md.
// GET /metrics (Prometheus text) is the one route without a session: counts and states only, no names or secrets.
// Before a session is checked only a login body (a few KiB) is read; failed logins are throttled per source address.
// A login also derives the admin's signing key from the password (lib/crypto/admin-key.ts): the session holds it, in
// memory only, to sign the member-list changes asked for in it (authorityOf).
import crypto from 'node:crypto'
import https from 'node:https'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { openAdminKey } from '../crypto/admin-key'
import { SIG_CTX_ADMIN_MEMBER_CHANGE } from '../crypto/contexts'
import type { Identity } from '../crypto/identity'
import { verifyPassword } from '../crypto/password'
import { sign } from '../crypto/sign'
import { ERRORS, PemError, type ErrorCode } from '../wire/errors'
import type { AdminAuthority } from './cluster/changes'
import type { AdminRecord } from './state'

/** `signKey`: the admin's key, derived from the password at login; null when the admin's record has none. */
export interface AdminSession { user: string, expires: number, signKey: Buffer | null }

/** The session as the authority of a change (changes.ts): it expires with the session and signs member-list changes with the session's key, if it has one. */
export function authorityOf (session: AdminSession): AdminAuthority {
  const key = session.signKey
  return { user: session.user, expires: session.expires, sign: key === null ? null : message => sign(SIG_CTX_ADMIN_MEMBER_CHANGE, message, key) }
}
export interface AdminRequest { session: AdminSession, body: Record<string, unknown>, params: Record<string, string>, query: URLSearchParams }
type Handler = (req: AdminRequest) => Promise<unknown> | unknown
interface Route { method: string, pattern: RegExp, keys: string[], handler: Handler }

/** Largest body read before a session is checked (a login), and with a valid session (a policy text). */
export const PREAUTH_BODY_BYTES = 4 * 1024
export const MAX_BODY_BYTES = 4 * 1024 * 1024
/** Password checks (scrypt, ~0.3 s of a libuv thread each) running at once, from all sources together. */
const MAX_LOGINS_VERIFYING = 2
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

  private sweep (now: number): void {
    for (const [k, s] of this.sources) if (!s.busy && now - s.lastFailure > FAILURE_MEMORY_MS) this.sources.delete(k)
  }
}

export interface MetricsSource { contentType: string, render: () => Promise<string> }

export class AdminApi {
  private readonly routes: Route[] = []
  private readonly sessions = new Map<string, AdminSession>() // by SHA-256 of the token
  private server: https.Server | null = null
  private readonly logins = new LoginThrottle()
  metrics: MetricsSource | null = null

  constructor (
    private readonly identity: Identity,
    private readonly tokenTtlS: number,
    private readonly lookupAdmin: (user: string) => AdminRecord | undefined,
    private readonly audit: (event: Record<string, unknown>) => void
  ) {}

  route (method: string, path: string, handler: Handler): this {
    const keys: string[] = []
    const pattern = new RegExp('^' + path.replace(/:([a-z]+)/g, (_m, k: string) => { keys.push(k); return '([^/]+)' }) + '$')
    this.routes.push({ method, pattern, keys, handler })
    return this
  }

  async listen (host: string, port: number): Promise<{ host: string, port: number }> {
    this.server = https.createServer({ key: this.identity.keyPem, cert: this.identity.certPem, minVersion: 'TLSv1.3' }, (req, res) => { void this.serve(req, res) })
    await new Promise<void>((resolve, reject) => { this.server?.once('error', reject); this.server?.listen(port, host, () => resolve()) })
    const a = this.server.address()
    return typeof a === 'object' && a !== null ? { host: a.address, port: a.port } : { host, port }
  }

  async close (): Promise<void> {
    const s = this.server
    if (s === null) return
    this.server = null
    s.closeAllConnections()
    await new Promise<void>(resolve => s.close(() => resolve()))
  }

  private async login (body: Record<string, unknown>, address: string): Promise<{ token: string, expires: string, user: string }> {
    const user = typeof body.user === 'string' ? body.user : ''
    const password = typeof body.password === 'string' ? body.password : ''
    const record = this.lookupAdmin(user)
    const hash = record?.hash
    const slot = this.logins.begin(address)
    let signKey: Buffer | null = null
    try {
      let ok = false
      try {
        // Verify against a dummy hash for unknown users so timing does not tell which users exist. The signing key
        // is derived at the same time (another scrypt on another libuv thread), and kept only if the password holds.
        const [verified, key] = await Promise.all([verifyPassword(password, hash ?? DUMMY_HASH), record?.signKey === undefined ? null : openAdminKey(password, record.signKey)])
        ok = verified && hash !== undefined
        if (ok) signKey = key
      } finally {
        const delayMs = this.logins.checked(slot, ok)
        if (!ok) {
          this.audit({ kind: 'security', event: 'admin_login_failed', user, ip: address })
          await new Promise(resolve => setTimeout(resolve, delayMs))
        }
      }
      if (!ok) throw new PemError('PEM_ERR_AUTH', 'wrong user or password')
    } finally {
      this.logins.end(slot)
    }
    const token = crypto.randomBytes(32).toString('base64url')
    const expires = Date.now() + this.tokenTtlS * 1000
    this.sessions.set(sha256(token), { user, expires, signKey })
    this.audit({ kind: 'admin', event: 'login', user })
    return { token, expires: new Date(expires).toISOString(), user }
  }

  private session (req: IncomingMessage): AdminSession {
    const m = /^Bearer ([A-Za-z0-9_-]{16,128})$/.exec(req.headers.authorization ?? '')
    const s = m === null ? undefined : this.sessions.get(sha256(m[1]))
    if (s === undefined) throw new PemError('PEM_ERR_AUTH', 'not logged in: run spctl login')
    if (s.expires < Date.now()) {
      if (m !== null) this.sessions.delete(sha256(m[1]))
      throw new PemError('PEM_ERR_AUTH', 'session expired: run spctl login again')
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

const DUMMY_HASH = 'scrypt$32768$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'

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
