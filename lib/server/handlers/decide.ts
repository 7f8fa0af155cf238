// Decide handler: policy-version and cluster-staleness fences, policy decision, load admission, the reply every host balances on, audit.
import type { DecideBody, DecideReply, HostContext } from '../../wire/packets'
import { decisionRecord } from '../../wire/audit-record'
import { ERRORS } from '../../wire/errors'
import { canonicalGuard } from '../../policy/sets'
import type { Member } from '../member'

export async function handleDecide (m: Member, body: DecideBody, ctx: HostContext): Promise<DecideReply> {
  const pv = m.store.state.version
  const base = { pv, weight: m.config.weight, bypass: false, ttl: 0, key: null, compression: 'none' as const, grant: null, scope: null }
  // A host that saw another version (older or newer) is told ours; it adopts the newer and retries (DESIGN §2.4).
  if (body.pv !== 0 && body.pv !== pv) {
    m.counters.stale++
    return { ...base, ok: false, reason: ERRORS.PEM_ERR_STALE_POLICY.id, rule: null, load: m.load.project(0) }
  }
  // Cut off from a majority of the cluster for too long: this version may be outdated; the host goes elsewhere.
  if (!m.cluster.canServe()) {
    m.counters.stale++
    return { ...base, ok: false, reason: ERRORS.PEM_ERR_STALE_POLICY.id, rule: null, load: m.load.project(0) }
  }
  const load = await m.load.admit()
  if (load === null) {
    m.counters.overload++
    return { ...base, ok: false, reason: ERRORS.PEM_ERR_OVERLOAD.id, rule: null, load: m.load.project(0) }
  }
  m.load.inflight++
  try {
    const d = m.decide({ guard: body.guard, path: body.path, action: body.action, attrs: body.attrs, ctx })
    const ok = d.effect === 'permit'
    // A host whose key releases were revoked (`spctl host revoke`) has its host-placement files served by spd.
    const placement = d.placement === 'host' && m.store.state.hosts[ctx.host]?.keysRevoked !== true ? 'host' : 'appliance'
    if (ok) m.counters.permit++; else m.counters.deny++
    m.audit.write(decisionRecord(body.guard, body.path, body.action, body.attrs, ctx, d, pv)) // everything a replay needs
    return {
      ok,
      reason: ok ? 0 : ERRORS.PEM_ERR_POLICY_DENY.id,
      rule: d.rule,
      load,
      weight: d.weight ?? m.config.weight,
      pv,
      bypass: ok && d.key === null,
      ttl: d.ttlMs,
      key: ok ? d.key : null,
      compression: ok ? d.compression : 'none',
      grant: ok && d.key !== null ? m.data.grants.issue(ctx.host, d.key, d.compression, body.action, d.ttlMs, placement) : null,
      scope: d.scope,
      ...(ok && d.key !== null && placement === 'host' ? { placement: 'host' as const } : {}),
      ...(!ok && d.rule === null && m.compiledPolicy?.guards.has(canonicalGuard(body.guard)) !== true ? { unguarded: true as const } : {})
    }
  } finally {
    m.load.inflight--
  }
}
