// The admin API's routes over a Member: status, policy get/apply/diff, keys, hosts, audit tail. Docs: docs/ADMIN.md.
import { newToken, tokenHash } from '../crypto/password'
import { describePolicy, diffPolicies } from '../policy'
import { PemError } from '../wire/errors'
import { formatToken } from '../wire/token'
import type { AdminApi, AdminRequest } from './admin'
import { newKeyVersion, type Member } from './member'

const NAME = /^[A-Za-z0-9._-]{1,64}$/

function name (req: AdminRequest, field: string): string {
  const v = req.body[field] ?? req.params[field]
  if (typeof v !== 'string' || !NAME.test(v)) throw new PemError('PEM_ERR_BAD_ARGUMENT', `${field} must be 1-64 characters of A-Z a-z 0-9 . _ -`)
  return v
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
        channels: m.channels.size
      }
    })
    .route('GET', '/v1/policy', () => ({ version: m.store.state.version, text: m.store.state.policyText }))
    .route('PUT', '/v1/policy', req => ({ version: m.applyPolicy(text(req), req.session.user) }))
    .route('POST', '/v1/policy/diff', req => ({ version: m.store.state.version, diff: diffPolicies(m.store.state.policyText ?? '', text(req)) }))
    .route('GET', '/v1/keys', () => Object.entries(m.store.state.keys).map(([k, versions]) => ({
      name: k, version: versions[0]?.version ?? 0, versions: versions.length, created: versions[0]?.created ?? null
    })))
    .route('POST', '/v1/keys', req => {
      const key = name(req, 'name')
      if (m.store.state.keys[key] !== undefined) throw new PemError('PEM_ERR_BUSY', `key ${key} exists; use key rotate`)
      const s = m.store.commit(req.session.user, d => { d.keys[key] = [newKeyVersion(1)] })
      m.audit.write({ kind: 'admin', event: 'key_created', user: req.session.user, key, version: s.version })
      return { name: key, version: 1, pv: s.version }
    })
    .route('POST', '/v1/keys/:name/rotate', req => {
      const key = name(req, 'name')
      const list = m.store.state.keys[key]
      if (list === undefined) throw new PemError('PEM_ERR_NOT_FOUND', `no key named ${key}`)
      const next = list[0].version + 1
      const s = m.store.commit(req.session.user, d => { d.keys[key].unshift(newKeyVersion(next)) })
      m.audit.write({ kind: 'admin', event: 'key_rotated', user: req.session.user, key, keyVersion: next, version: s.version })
      return { name: key, version: next, pv: s.version }
    })
    .route('GET', '/v1/hosts', () => Object.values(m.store.state.hosts))
    .route('POST', '/v1/hosts', req => {
      const host = name(req, 'name')
      const ttlS = typeof req.body.ttlS === 'number' && req.body.ttlS > 0 ? Math.min(req.body.ttlS, 30 * 86400) : 86400
      const secret = newToken()
      const expires = new Date(Date.now() + ttlS * 1000).toISOString()
      const s = m.store.commit(req.session.user, d => { d.tokens[tokenHash(secret)] = { name: host, expires, createdBy: req.session.user } })
      m.audit.write({ kind: 'admin', event: 'host_token_created', user: req.session.user, name: host, version: s.version })
      return { name: host, token: formatToken(secret, m.identity.id), expires, cluster: m.hostAddr }
    })
    .route('DELETE', '/v1/hosts/:ref', req => {
      const ref = req.params.ref
      const host = Object.values(m.store.state.hosts).find(h => h.id === ref || h.name === ref || h.id.startsWith(ref))
      if (host === undefined || ref.length < 4) throw new PemError('PEM_ERR_NOT_FOUND', `no enrolled host ${ref}`)
      const s = m.store.commit(req.session.user, d => { delete d.hosts[host.id] })
      m.disconnectHost(host.id)
      m.audit.write({ kind: 'admin', event: 'host_removed', user: req.session.user, host: host.id, name: host.name, version: s.version })
      return { removed: host.id, version: s.version }
    })
    .route('GET', '/v1/audit', req => {
      const n = Math.max(1, Math.min(10000, Number(req.query.get('n') ?? 20) || 20))
      return m.audit.tail(n)
    })
    .route('GET', '/v1/members', () => m.servers())
}
