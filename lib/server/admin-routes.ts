// The admin API's routes over a Member: status, policy get/apply/diff, keys, hosts, members, audit tail, verify and
// the recent decisions a policy simulation replays.
// Docs: docs/ADMIN.md.
// Every change is a cluster change: the reply comes once it is installed on this member (version in `pv`). Member
// additions and removals, and an admin's password change, carry the admin's own signature, made by spctl (`adminSig`;
// lib/cli/admin-auth.ts).
import { adminPasswdInput, adminRecordInput, parseAdminKey } from '../crypto/admin-key'
import { SIG_CTX_ADMIN_MEMBER_CHANGE, SIG_CTX_ADMIN_PASSWD } from '../crypto/contexts'
import { encodePublicKey, keyId, parsePublicKey } from '../crypto/identity'
import { newToken, parsePasswordHash, tokenHash } from '../crypto/password'
import { verify } from '../crypto/sign'
import { describePolicy, diffPolicies } from '../policy'
import { PemError } from '../wire/errors'
import { formatToken } from '../wire/token'
import { authorityOf, type AdminApi, type AdminRequest } from './admin'
import { ROTATED_SUFFIX } from './audit'
import { recentDecisions } from './audit-read'
import { mergeParts, TRAIL_MAX } from './audit-trail'
import { verifyAuditFiles } from './audit-verify'
import { checkHostPort } from './config'
import { dropExpiredTokens } from './handlers/enroll'
import { newKeyVersion, type Member } from './member'
import type { HostRecord } from './state'

const NAME = /^[A-Za-z0-9._-]{1,64}$/
/** Most decision records one GET /v1/audit/decisions returns (about 50 MB of JSON); the newest are kept. */
const MAX_DECISIONS_PER_REQUEST = 100_000

function name (req: AdminRequest, field: string): string {
  const v = req.body[field] ?? req.params[field]
  if (typeof v !== 'string' || !NAME.test(v)) throw new PemError('PEM_ERR_BAD_ARGUMENT', `${field} must be 1-64 characters of A-Z a-z 0-9 . _ -`)
  return v
}

/** The enrolled host named by `ref`: its name, its id or at least 4 leading characters of its id. */
function hostOf (m: Member, ref: string): HostRecord {
  const host = Object.values(m.store.state.hosts).find(h => h.id === ref || h.name === ref || h.id.startsWith(ref))
  if (host === undefined || ref.length < 4) throw new PemError('PEM_ERR_NOT_FOUND', `no enrolled host ${ref}`)
  return host
}

/**
 * Refuses (PEM_ERR_BUSY, with the count) to retire `key` `version` while any enrolled host reports files under it, or
 * has not reported a scan that began after the next version was made (until then its old files may be uncounted);
 * the newest version (new files are written under it) is never retired. docs/PEMFS.md, "Key versions in use".
 */
function checkRetirable (m: Member, key: string, version: number): void {
  const s = m.store.state
  const list = s.keys[key]
  if (list === undefined) throw new PemError('PEM_ERR_NOT_FOUND', `no key named ${key}`)
  const i = list.findIndex(v => v.version === version)
  if (i < 0) {
    const was = s.retiredKeys?.[key]?.some(r => r.version === version) === true
    throw new PemError('PEM_ERR_NOT_FOUND', `key ${key} has no version ${version}${was ? ' (it is retired already)' : ''}`)
  }
  if (i === 0) throw new PemError('PEM_ERR_BUSY', `version ${version} is the newest of key ${key}: new files are written under it (spctl key rotate ${key} first)`)
  const next = list[i - 1]
  const hosts = Object.values(s.hosts)
  const stale = hosts.filter(h => { const r = m.keyUsage.report(h.id); return r === undefined || r.scanned < next.created })
  if (stale.length > 0) {
    throw new PemError('PEM_ERR_BUSY', `${stale.length} host(s) have not reported a scan since version ${next.version} of key ${key} was made (${stale.map(h => h.name).slice(0, 10).join(', ')}): their files under version ${version} are not counted yet (a mounted host rescans at a rotation; spctl host remove a host that is gone)`)
  }
  const users = hosts.map(h => ({ name: h.name, files: m.keyUsage.filesOf(key, [h.id])[String(version)] ?? 0 })).filter(h => h.files > 0)
  const total = users.reduce((n, h) => n + h.files, 0)
  if (total > 0) {
    throw new PemError('PEM_ERR_BUSY', `${total} file(s) on ${users.length} host(s) are still under key ${key} version ${version} (${users.slice(0, 10).map(h => `${h.name}: ${h.files}`).join(', ')}): run pemfs rekey on their guard points, then retire`)
  }
}

/**
 * The admin's signature over a member-list change (`adminSig: {version, sig}`, base64url), checked here against the
 * version spctl signed it for; the change's record takes it if the change is drafted at that version (authorityOf).
 */
function memberSig (m: Member, req: AdminRequest, op: 'add' | 'remove', id: string): { sig: Buffer, publicKey: Buffer } {
  const a = req.body.adminSig as { version?: unknown, sig?: unknown } | undefined
  if (typeof a !== 'object' || a === null || typeof a.sig !== 'string' || !Number.isSafeInteger(a.version)) {
    throw new PemError('PEM_ERR_BAD_ARGUMENT', 'adminSig {version, sig} is required: spctl member add/remove signs the change with the admin\'s key')
  }
  const key = parseAdminKey(m.store.state.admins[req.session.user]?.signKey)
  if (key === null) throw new PemError('PEM_ERR_BAD_CONFIG', `admin ${req.session.user} has no signing key: log in again with spctl to give it one`)
  const sig = Buffer.from(a.sig, 'base64url')
  const input = adminRecordInput(Buffer.from(m.store.state.clusterId ?? '', 'hex'), a.version as number, op, id, m.identity.id)
  if (!verify(SIG_CTX_ADMIN_MEMBER_CHANGE, input, sig, key.publicKey)) throw new PemError('PEM_ERR_BAD_SIGNATURE', `the admin signature does not hold for ${op} ${id.slice(0, 16)} at version ${String(a.version)} on this member`)
  return { sig, publicKey: key.publicKey }
}

/**
 * A password change's new record `{hash, signKey}` and the admin's signature over it with the old password's key
 * (`adminSig: {version, sig}`), checked here for the version spctl signed it at; the change takes it at that version.
 */
function passwdOf (m: Member, req: AdminRequest): { record: { hash: string, signKey: string }, was: string, sig: { sig: Buffer, publicKey: Buffer, ctx: string } } {
  const { hash, signKey } = req.body
  if (typeof hash !== 'string' || typeof signKey !== 'string' || parseAdminKey(signKey) === null) throw new PemError('PEM_ERR_BAD_ARGUMENT', 'hash and signKey must be the new password\'s hash and signing key (spctl admin passwd makes them)')
  try { parsePasswordHash(hash) } catch { throw new PemError('PEM_ERR_BAD_ARGUMENT', 'hash is not a password hash') }
  const a = req.body.adminSig as { version?: unknown, sig?: unknown } | undefined
  if (typeof a !== 'object' || a === null || typeof a.sig !== 'string' || !Number.isSafeInteger(a.version)) throw new PemError('PEM_ERR_BAD_ARGUMENT', 'adminSig {version, sig} is required: spctl admin passwd signs the change with the old password\'s key')
  const user = req.session.user
  const was = m.store.state.admins[user]?.signKey
  const key = parseAdminKey(was)
  if (key === null) throw new PemError('PEM_ERR_BAD_CONFIG', `admin ${user} has no signing key: log in again with spctl to give it one`)
  if (hash === m.store.state.admins[user].hash || signKey === was) throw new PemError('PEM_ERR_BAD_ARGUMENT', 'the new record must have a new hash and a new signing key')
  const record = { hash, signKey }
  const sig = Buffer.from(a.sig, 'base64url')
  if (!verify(SIG_CTX_ADMIN_PASSWD, adminPasswdInput(Buffer.from(m.store.state.clusterId ?? '', 'hex'), a.version as number, user, record, m.identity.id), sig, key.publicKey)) {
    throw new PemError('PEM_ERR_BAD_SIGNATURE', `the signature of the old password does not hold for admin ${user} at version ${String(a.version)} on this member`)
  }
  return { record, was: was as string, sig: { sig, publicKey: key.publicKey, ctx: SIG_CTX_ADMIN_PASSWD } }
}

function text (req: AdminRequest): string {
  if (typeof req.body.text !== 'string') throw new PemError('PEM_ERR_BAD_ARGUMENT', 'body.text must be the policy YAML')
  return req.body.text
}

export function registerAdminRoutes (api: AdminApi, m: Member): void {
  api
    .route('GET', '/v1/status', () => {
      const s = m.store.state
      return {
        name: m.config.name,
        id: m.identity.id,
        listen: m.hostAddr,
        admin: m.adminAddr,
        version: s.version,
        changedBy: s.changedBy,
        changedAt: s.changedAt,
        policy: m.compiledPolicy === null ? null : describePolicy(m.compiledPolicy),
        hosts: Object.keys(s.hosts).length,
        keys: Object.keys(s.keys).length,
        load: m.load.project(0),
        weight: m.config.weight,
        counters: m.counters,
        uptimeS: Math.round((Date.now() - m.started) / 1000),
        channels: m.channels.size,
        cluster: m.cluster.status()
      }
    })
    .route('GET', '/v1/policy', () => ({ version: m.store.state.version, text: m.store.state.policyText }))
    .route('PUT', '/v1/policy', async req => {
      const r = await m.applyPolicy(text(req), req.session.user, authorityOf(req.session))
      return { version: r.version, rebased: r.rebased }
    })
    .route('POST', '/v1/policy/diff', req => ({ version: m.store.state.version, diff: diffPolicies(m.store.state.policyText ?? '', text(req)) }))
    .route('GET', '/v1/keys', () => {
      const s = m.store.state
      const hosts = Object.keys(s.hosts)
      const reported = hosts.filter(id => m.keyUsage.report(id) !== undefined).length
      return Object.entries(s.keys).map(([k, versions]) => {
        const counted = m.keyUsage.filesOf(k, hosts)
        return {
          name: k,
          version: versions[0]?.version ?? 0,
          versions: versions.length,
          created: versions[0]?.created ?? null,
          files: Object.fromEntries(versions.map(v => [`v${v.version}`, counted[String(v.version)] ?? 0])),
          reports: `${reported}/${hosts.length}`,
          retired: (s.retiredKeys?.[k] ?? []).map(r => r.version)
        }
      })
    })
    .route('POST', '/v1/keys', async req => {
      const key = name(req, 'name')
      const s = await m.change(req.session.user, `key-create:${key}`, d => {
        if (d.keys[key] !== undefined) throw new PemError('PEM_ERR_BUSY', `key ${key} exists; use key rotate`)
        d.keys[key] = [newKeyVersion(1)]
      }, authorityOf(req.session))
      m.audit.write({ kind: 'admin', event: 'key_created', user: req.session.user, key, version: s.version })
      return { name: key, version: 1, pv: s.version }
    })
    .route('POST', '/v1/keys/:name/rotate', async req => {
      const key = name(req, 'name')
      let next = 0
      const s = await m.change(req.session.user, `key-rotate:${key}`, d => {
        const list = d.keys[key]
        if (list === undefined) throw new PemError('PEM_ERR_NOT_FOUND', `no key named ${key}`)
        next = list[0].version + 1
        list.unshift(newKeyVersion(next))
      }, authorityOf(req.session))
      m.audit.write({ kind: 'admin', event: 'key_rotated', user: req.session.user, key, keyVersion: next, version: s.version })
      return { name: key, version: next, pv: s.version }
    })
    .route('POST', '/v1/keys/:name/retire', async req => {
      const key = name(req, 'name')
      const version = req.body.version
      if (typeof version !== 'number' || !Number.isSafeInteger(version) || version < 1) throw new PemError('PEM_ERR_BAD_ARGUMENT', 'version must be a positive integer')
      checkRetirable(m, key, version)
      const at = new Date().toISOString()
      const s = await m.change(req.session.user, `key-retire:${key}:${version}`, d => {
        const list = d.keys[key]
        const i = list?.findIndex(v => v.version === version) ?? -1
        if (list === undefined || i <= 0) throw new PemError('PEM_ERR_BUSY', `key ${key} version ${version} changed meanwhile: try again`)
        list.splice(i, 1)
        d.retiredKeys = { ...d.retiredKeys, [key]: [...(d.retiredKeys?.[key] ?? []), { version, retired: at, by: req.session.user }] }
      }, authorityOf(req.session))
      m.audit.write({ kind: 'admin', event: 'key_retired', user: req.session.user, key, keyVersion: version, version: s.version })
      return { name: key, retired: version, pv: s.version }
    })
    .route('GET', '/v1/hosts', () => Object.values(m.store.state.hosts))
    .route('POST', '/v1/hosts', async req => {
      const host = name(req, 'name')
      const ttlS = typeof req.body.ttlS === 'number' && req.body.ttlS > 0 ? Math.min(req.body.ttlS, 30 * 86400) : 86400
      const secret = newToken()
      const expires = new Date(Date.now() + ttlS * 1000).toISOString()
      const s = await m.change(req.session.user, `host-token:${host}`, d => {
        dropExpiredTokens(d, Date.now())
        d.tokens[tokenHash(secret)] = { name: host, expires, createdBy: req.session.user }
      }, authorityOf(req.session))
      m.audit.write({ kind: 'admin', event: 'host_token_created', user: req.session.user, name: host, version: s.version })
      return { name: host, token: formatToken(secret, m.identity.id), expires, cluster: m.hostAddr }
    })
    .route('DELETE', '/v1/hosts/:ref', async req => {
      const host = hostOf(m, req.params.ref)
      const s = await m.change(req.session.user, `host-remove:${host.name}`, d => {
        if (d.hosts[host.id] === undefined) throw new PemError('PEM_ERR_NOT_FOUND', `host ${host.name} was removed meanwhile`)
        delete d.hosts[host.id]
      }, authorityOf(req.session))
      m.audit.write({ kind: 'admin', event: 'host_removed', user: req.session.user, host: host.id, name: host.name, version: s.version })
      return { removed: host.id, version: s.version }
    })
    .route('POST', '/v1/hosts/:ref/revoke', async req => {
      const host = hostOf(m, req.params.ref)
      const undo = req.body.undo ?? false
      if (typeof undo !== 'boolean') throw new PemError('PEM_ERR_BAD_ARGUMENT', 'undo must be true or false')
      const s = await m.change(req.session.user, `host-${undo ? 'unrevoke' : 'revoke'}:${host.name}`, d => {
        const h = d.hosts[host.id]
        if (h === undefined) throw new PemError('PEM_ERR_NOT_FOUND', `host ${host.name} was removed meanwhile`)
        if (undo) delete h.keysRevoked; else h.keysRevoked = true
      }, authorityOf(req.session))
      m.audit.write({ kind: 'admin', event: undo ? 'host_keys_restored' : 'host_keys_revoked', user: req.session.user, host: host.id, name: host.name, version: s.version })
      return { host: host.id, name: host.name, keysRevoked: !undo, version: s.version }
    })
    .route('GET', '/v1/host-servers', () => m.store.state.hostServers ?? {})
    .route('PUT', '/v1/host-servers/:host', async req => {
      const host = req.params.host === '*' ? '*' : name(req, 'host')
      const only = req.body.only
      const prefer = req.body.prefer ?? {}
      if (only !== null && only !== undefined && (!Array.isArray(only) || !only.every(x => typeof x === 'string' && NAME.test(x)))) throw new PemError('PEM_ERR_BAD_ARGUMENT', 'only must be a list of member names (or null for all)')
      if (typeof prefer !== 'object' || prefer === null || Array.isArray(prefer) || !Object.entries(prefer).every(([k, v]) => NAME.test(k) && typeof v === 'number' && v >= 0 && v <= 1)) {
        throw new PemError('PEM_ERR_BAD_ARGUMENT', 'prefer must map member names to numbers 0..1')
      }
      const members = new Set(Object.values(m.store.state.members).filter(r => r.state === 'active').map(r => r.name))
      for (const n of [...(Array.isArray(only) ? only as string[] : []), ...Object.keys(prefer)]) if (!members.has(n)) throw new PemError('PEM_ERR_NOT_FOUND', `no active member named ${n}`)
      const rule = { only: Array.isArray(only) ? only as string[] : null, prefer: prefer as Record<string, number> }
      const s = await m.change(req.session.user, `host-servers:${host}`, d => { d.hostServers = { ...d.hostServers, [host]: rule } }, authorityOf(req.session))
      m.audit.write({ kind: 'admin', event: 'host_servers_set', user: req.session.user, host, ...rule, version: s.version })
      return { host, ...rule, pv: s.version }
    })
    .route('DELETE', '/v1/host-servers/:host', async req => {
      const host = req.params.host
      if (m.store.state.hostServers?.[host] === undefined) throw new PemError('PEM_ERR_NOT_FOUND', `no server list for ${host}`)
      const s = await m.change(req.session.user, `host-servers-clear:${host}`, d => {
        const next = { ...d.hostServers }
        delete next[host]
        d.hostServers = next
      }, authorityOf(req.session))
      return { host, cleared: true, pv: s.version }
    })
    .route('GET', '/v1/audit', req => {
      const n = Math.max(1, Math.min(10000, Number(req.query.get('n') ?? 20) || 20))
      return m.audit.tail(n)
    })
    .route('GET', '/v1/audit/trail', async req => {
      const q = req.query
      const n = Number(q.get('n') ?? 20)
      if (!Number.isSafeInteger(n) || n < 1 || n > TRAIL_MAX) throw new PemError('PEM_ERR_BAD_ARGUMENT', `n must be 1..${TRAIL_MAX}`)
      const sinceText = q.get('since')
      const since = sinceText === null ? null : Date.parse(sinceText)
      if (since !== null && !Number.isFinite(since)) throw new PemError('PEM_ERR_BAD_ARGUMENT', 'since must be a time (ISO 8601)')
      const uidText = q.get('uid')
      const uid = uidText === null ? null : Number(uidText)
      if (uid !== null && (!Number.isSafeInteger(uid) || uid < 0 || uid > 0xffffffff)) throw new PemError('PEM_ERR_BAD_ARGUMENT', 'uid must be a number 0..4294967295')
      const effect = q.get('effect')
      if (effect !== null && effect !== 'permit' && effect !== 'deny') throw new PemError('PEM_ERR_BAD_ARGUMENT', 'effect must be permit or deny')
      const hostRef = q.get('host')
      const host = hostRef === null ? null : Object.values(m.store.state.hosts).find(h => h.name === hostRef || h.id === hostRef)?.id
      if (host === undefined) throw new PemError('PEM_ERR_NOT_FOUND', `no enrolled host ${hostRef ?? ''}`)
      // The follower's cursor: member id -> last seq seen, as `id:seq,id:seq`.
      const after: Record<string, number> = {}
      for (const pair of (q.get('after') ?? '').split(',').filter(x => x !== '')) {
        const [id, seq] = pair.split(':')
        if (!/^[0-9a-f]{64}$/.test(id ?? '') || !Number.isSafeInteger(Number(seq))) throw new PemError('PEM_ERR_BAD_ARGUMENT', 'after must be member-id:seq pairs')
        after[id] = Number(seq)
      }
      const parts = await m.trail.read({ since: since === null ? null : new Date(since).toISOString(), after: 0, limit: n, uid, host, effect, rule: q.get('rule') }, q.get('member'), after)
      const names = Object.fromEntries(Object.values(m.store.state.hosts).map(h => [h.id, h.name]))
      return {
        records: mergeParts(parts, n).map(r => ({ ...r, hostName: names[r.host] ?? null })),
        members: parts.map(p => ({ name: p.member, id: p.id, records: p.records.length, truncated: p.truncated, error: p.error, last: p.records.at(-1)?.seq ?? after[p.id] ?? 0 }))
      }
    })
    .route('GET', '/v1/audit/verify', req => {
      const from = req.query.get('from')
      const fromSeq = from === null ? undefined : Number(from)
      if (fromSeq !== undefined && (!Number.isSafeInteger(fromSeq) || fromSeq < 1)) throw new PemError('PEM_ERR_BAD_ARGUMENT', 'from must be a record seq (1 or more)')
      return verifyAuditFiles([m.audit.file], { publicKey: m.identity.publicKey, fromSeq, head: m.audit.written() })
    })
    .route('GET', '/v1/audit/decisions', async req => {
      const since = Date.parse(req.query.get('since') ?? '')
      if (!Number.isFinite(since)) throw new PemError('PEM_ERR_BAD_ARGUMENT', 'since must be a time (ISO 8601)')
      const limit = Number(req.query.get('limit') ?? MAX_DECISIONS_PER_REQUEST)
      if (!Number.isSafeInteger(limit) || limit < 1 || limit > MAX_DECISIONS_PER_REQUEST) throw new PemError('PEM_ERR_BAD_ARGUMENT', `limit must be 1..${MAX_DECISIONS_PER_REQUEST}`)
      m.audit.flush()
      const r = await recentDecisions([m.audit.file, m.audit.file + ROTATED_SUFFIX], new Date(since).toISOString(), limit)
      return { version: m.store.state.version, ...r }
    })
    .route('POST', '/v1/admin/passwd', async req => {
      const user = req.session.user
      const { record, was, sig } = passwdOf(m, req)
      const s = await m.change(user, `admin-passwd:${user}`, d => {
        const r = Object.prototype.hasOwnProperty.call(d.admins, user) ? d.admins[user] : undefined
        if (r?.signKey !== was) throw new PemError('PEM_ERR_BUSY', `the record of admin ${user} changed meanwhile: log in again`)
        d.admins[user] = record
      }, authorityOf(req.session, sig))
      // The session that set the password stays (its next request is checked against the new hash); every other
      // session of this admin, here and on the other members, ends at its next request (admin.ts session()).
      req.session.hash = record.hash
      m.audit.write({ kind: 'admin', event: 'admin_password_changed', user, version: s.version })
      return { user, pv: s.version }
    })
    .route('GET', '/v1/members', () => m.cluster.status())
    .route('POST', '/v1/members', async req => {
      const member = name(req, 'name')
      const addr = checkHostPort(req.body.addr, 'addr (the new member\'s cluster address)')
      if (typeof req.body.key !== 'string') throw new PemError('PEM_ERR_BAD_ARGUMENT', 'key must be the new member\'s public key (spd id)')
      const raw = parsePublicKey(req.body.key.trim())
      const id = keyId(raw)
      const signed = memberSig(m, req, 'add', id)
      const s = await m.change(req.session.user, `member-add:${member}`, d => {
        const prev = d.members[id]
        if (prev?.state === 'removed') throw new PemError('PEM_ERR_BAD_CONFIG', `member ${id.slice(0, 16)} was removed; a removed key cannot rejoin (create a new member)`)
        if (prev !== undefined) throw new PemError('PEM_ERR_BUSY', `member ${id.slice(0, 16)} is already in the cluster`)
        d.members[id] = { id, key: encodePublicKey(raw), name: member, addr: '', clusterAddr: addr, state: 'active' }
      }, authorityOf(req.session, signed))
      m.audit.write({ kind: 'admin', event: 'member_added', user: req.session.user, member: id, name: member, addr, version: s.version })
      const me = m.store.state.members[m.identity.id]
      return {
        id, name: member, pv: s.version,
        // What the new member's admin runs before starting it (DESIGN §5: spd trust).
        sponsor: { key: me?.key ?? encodePublicKey(m.identity.publicKey), addr: me?.clusterAddr ?? m.cluster.addr, cluster: m.store.state.clusterId }
      }
    })
    .route('DELETE', '/v1/members/:ref', async req => {
      const ref = req.params.ref
      const rec = Object.values(m.store.state.members).find(r => r.state === 'active' && (r.id === ref || r.name === ref || (ref.length >= 8 && r.id.startsWith(ref))))
      if (rec === undefined) throw new PemError('PEM_ERR_NOT_FOUND', `no active member ${ref}`)
      if (rec.id === m.identity.id) throw new PemError('PEM_ERR_BAD_ARGUMENT', 'a member cannot remove itself; remove it from another member')
      const signed = memberSig(m, req, 'remove', rec.id)
      const s = await m.change(req.session.user, `member-remove:${rec.name}`, d => {
        const r = d.members[rec.id]
        if (r === undefined || r.state !== 'active') throw new PemError('PEM_ERR_NOT_FOUND', `member ${rec.name} was removed meanwhile`)
        r.state = 'removed'
      }, authorityOf(req.session, signed))
      m.audit.write({ kind: 'admin', event: 'member_removed', user: req.session.user, member: rec.id, name: rec.name, version: s.version })
      return { removed: rec.id, name: rec.name, pv: s.version }
    })
}
