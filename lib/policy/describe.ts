// Summaries of a compiled policy for `spctl status` and for spd: guard points, key names, rule counts, digest.
import type { CompiledPolicy } from './types'

export interface PolicySummary {
  format: 1
  digest: string
  description: string | null
  ttlMs: number
  keys: string[]
  guards: Array<{ path: string, rules: number, applicable: number }> // own rules; own + shared rules that can apply
  sharedRules: number
  rules: number
  hostPlacementRules: number // apply_key rules with placement: host (spd releases their file keys to hosts)
  sets: { users: number, processes: number, hosts: number, resources: number }
}

/** Key names the policy declares (spd creates material for each one it does not hold yet). */
export function keyNames (p: CompiledPolicy): string[] {
  return [...p.keys]
}

/** Guard points (host directories), in declaration order. */
export function guardPoints (p: CompiledPolicy): string[] {
  return [...p.guards.keys()]
}

export function describePolicy (p: CompiledPolicy): PolicySummary {
  const sets = p.data.sets ?? {}
  const count = (m: object | undefined): number => Object.keys(m ?? {}).length
  return {
    format: 1,
    digest: p.digest,
    description: p.data.description ?? null,
    ttlMs: p.ttlMs,
    keys: keyNames(p),
    guards: [...p.guards.values()].map(ix => ({
      path: ix.guard,
      rules: p.rules.filter(r => r.guard === ix.guard).length,
      applicable: ix.all.length
    })),
    sharedRules: p.rules.filter(r => r.guard === null).length,
    rules: p.rules.length,
    hostPlacementRules: p.rules.filter(r => r.placement === 'host').length,
    sets: { users: count(sets.users), processes: count(sets.processes), hosts: count(sets.hosts), resources: count(sets.resources) }
  }
}
