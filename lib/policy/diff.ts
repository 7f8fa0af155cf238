// Rule-level diff of two policies for `spctl policy diff`: settings, keys, sets, guard points, and rules by id
// (added, removed, changed field by field, moved within or between rule lists). Both texts must be valid policies.
import { canonicalJson } from './canonical'
import { parsePolicy } from './parse'
import type { PolicyDocument, PolicyError, RuleDoc } from './types'

export interface PolicyChange {
  op: '+' | '-' | '~' | '>' // added, removed, changed, moved
  what: 'setting' | 'key' | 'set' | 'guard' | 'rule'
  name: string
  detail: string // one readable line, as printed
}

export type DiffResult = { ok: true, changes: PolicyChange[], text: string } | { ok: false, errors: PolicyError[] }

const show = (v: unknown): string => (v === undefined ? '(unset)' : typeof v === 'string' ? v : canonicalJson(v))
const scopeName = (g: string | null): string => (g === null ? 'shared rules' : `guard ${g}`)

interface Placed { rule: RuleDoc, scope: string | null, pos: number }

function rulesOf (d: PolicyDocument): Map<string, Placed> {
  const out = new Map<string, Placed>()
  for (const [g, body] of Object.entries(d.guards)) (body.rules ?? []).forEach((rule, pos) => out.set(rule.id, { rule, scope: g, pos }))
  ;(d.rules ?? []).forEach((rule, pos) => out.set(rule.id, { rule, scope: null, pos }))
  return out
}

/** Longest increasing subsequence (indices into `a`) — the rules that kept their relative order. */
function keptOrder (a: number[]): Set<number> {
  const tails: number[] = []
  const prev = new Array<number>(a.length).fill(-1)
  for (let i = 0; i < a.length; i++) {
    let lo = 0; let hi = tails.length
    while (lo < hi) { const mid = (lo + hi) >> 1; if (a[tails[mid]] < a[i]) lo = mid + 1; else hi = mid }
    if (lo > 0) prev[i] = tails[lo - 1]
    tails[lo] = i
  }
  const keep = new Set<number>()
  for (let i = tails.length > 0 ? tails[tails.length - 1] : -1; i !== -1; i = prev[i]) keep.add(i)
  return keep
}

export function diffPolicies (oldText: string, newText: string, names: [string, string] = ['old.yaml', 'new.yaml']): DiffResult {
  const a = parsePolicy(oldText, names[0])
  const b = parsePolicy(newText, names[1])
  if (!a.ok || !b.ok) return { ok: false, errors: [...(a.ok ? [] : a.errors), ...(b.ok ? [] : b.errors)] }
  const x = a.policy.data
  const y = b.policy.data
  const changes: PolicyChange[] = []
  const push = (op: PolicyChange['op'], what: PolicyChange['what'], name: string, detail: string): void => { changes.push({ op, what, name, detail }) }

  for (const k of ['description', 'ttl'] as const) {
    if (show(x[k]) !== show(y[k])) push('~', 'setting', k, `${k}: ${show(x[k])} -> ${show(y[k])}`)
  }
  const ka = new Set(a.policy.keys); const kb = new Set(b.policy.keys)
  for (const k of ka) if (!kb.has(k)) push('-', 'key', k, `key ${k}`)
  for (const k of kb) if (!ka.has(k)) push('+', 'key', k, `key ${k}`)

  for (const kind of ['users', 'processes', 'hosts', 'resources'] as const) {
    const sa = x.sets?.[kind] ?? {}; const sb = y.sets?.[kind] ?? {}
    for (const n of Object.keys(sa)) {
      if (!(n in sb)) push('-', 'set', `${kind}.${n}`, `set ${kind}.${n}`)
      else if (canonicalJson(sa[n]) !== canonicalJson(sb[n])) push('~', 'set', `${kind}.${n}`, `set ${kind}.${n}: ${canonicalJson(sa[n])} -> ${canonicalJson(sb[n])}`)
    }
    for (const n of Object.keys(sb)) if (!(n in sa)) push('+', 'set', `${kind}.${n}`, `set ${kind}.${n}: ${canonicalJson(sb[n])}`)
  }
  for (const g of Object.keys(x.guards)) if (!(g in y.guards)) push('-', 'guard', g, `guard ${g}`)
  for (const g of Object.keys(y.guards)) if (!(g in x.guards)) push('+', 'guard', g, `guard ${g}`)

  const ra = rulesOf(x); const rb = rulesOf(y)
  for (const [id, o] of ra) if (!rb.has(id)) push('-', 'rule', id, `rule ${id} (${scopeName(o.scope)} #${o.pos + 1}): ${o.rule.effect}`)
  for (const [id, n] of rb) {
    const o = ra.get(id)
    if (o === undefined) { push('+', 'rule', id, `rule ${id} (${scopeName(n.scope)} #${n.pos + 1}): ${canonicalJson(n.rule)}`); continue }
    if (o.scope !== n.scope) push('>', 'rule', id, `rule ${id}: ${scopeName(o.scope)} #${o.pos + 1} -> ${scopeName(n.scope)} #${n.pos + 1}`)
    const fields = [...new Set([...Object.keys(o.rule), ...Object.keys(n.rule)])].sort()
    const diffs = fields
      .filter(f => canonicalJson((o.rule as unknown as Record<string, unknown>)[f] ?? null) !== canonicalJson((n.rule as unknown as Record<string, unknown>)[f] ?? null))
      .map(f => `${f}: ${show((o.rule as unknown as Record<string, unknown>)[f])} -> ${show((n.rule as unknown as Record<string, unknown>)[f])}`)
    if (diffs.length > 0) push('~', 'rule', id, `rule ${id} (${scopeName(n.scope)}): ${diffs.join('; ')}`)
  }
  // Reordering inside one rule list: the rules outside the longest run that kept its order have moved.
  const scopes = new Set([...rb.values()].map(p => p.scope))
  for (const s of scopes) {
    const common = [...rb.values()].filter(p => p.scope === s && ra.get(p.rule.id)?.scope === s).sort((p, q) => p.pos - q.pos)
    const oldPos = common.map(p => (ra.get(p.rule.id) as Placed).pos)
    const keep = keptOrder(oldPos)
    common.forEach((p, i) => {
      if (!keep.has(i)) push('>', 'rule', p.rule.id, `rule ${p.rule.id} (${scopeName(s)}): #${oldPos[i] + 1} -> #${p.pos + 1}`)
    })
  }
  return { ok: true, changes, text: changes.map(c => `${c.op} ${c.detail}`).join('\n') }
}
