// The decision index of one guard point: every rule is filed under the values of ONE of its constrained attributes
// (the rarest one), so a request gathers a short candidate list by hash lookups and only those rules are matched.
//
// Why this is exact: a rule's users/processes/hosts/resources field matches only if one of its sets matches, and a
// set matches only if every field of it matches. So if a rule is filed under, for each set of one field, all values
// of one field of that set, any request the rule matches looks up at least one of those values. Rules with no
// field that can be filed (e.g. only `min_auth`, or only a basename glob) sit in the wildcard list, always checked.
import { pathPrefixes } from './glob'
import { v6Key } from './net'
import type { CompiledRule, GuardIndex } from './types'

type Dim = 'uid' | 'user' | 'gid' | 'group' | 'domain' | 'exe' | 'sig' | 'host' | 'dir' | 'net4' | 'net6'
/** One index entry: dimension + value (+ prefix length for networks). */
interface Entry { dim: Dim, value: string | number, len?: number, tag?: string }
type Choice = Entry[] // the entries of one field of one set

const tag = (e: Entry): string => (e.tag ??= `${e.dim}\0${String(e.len ?? '')}\0${String(e.value)}`)

/** For each set field a rule constrains: per set, the alternative ways to file it. */
function fieldOptions (r: CompiledRule): Choice[][][] {
  const fields: Choice[][][] = []
  if (r.users !== null) {
    fields.push(r.users.map(s => {
      const alts: Choice[] = []
      if (s.uids !== null) alts.push([...s.uids].map(v => ({ dim: 'uid', value: v })))
      if (s.users !== null) alts.push([...s.users].map(v => ({ dim: 'user', value: v })))
      if (s.gids !== null) alts.push([...s.gids].map(v => ({ dim: 'gid', value: v })))
      if (s.groups !== null) alts.push([...s.groups].map(v => ({ dim: 'group', value: v })))
      if (s.domains !== null) alts.push([...s.domains].map(v => ({ dim: 'domain', value: v })))
      return alts
    }))
  }
  if (r.processes !== null) {
    fields.push(r.processes.map(s => {
      const alts: Choice[] = []
      if (s.paths !== null && s.pathGlobs === null) alts.push([...s.paths].map(v => ({ dim: 'exe', value: v })))
      if (s.signatures !== null) alts.push([...s.signatures].map(v => ({ dim: 'sig', value: v })))
      return alts
    }))
  }
  if (r.hosts !== null) {
    fields.push(r.hosts.map(s => {
      const alts: Choice[] = []
      if (s.ids !== null) alts.push([...s.ids].map(v => ({ dim: 'host', value: v })))
      if (s.cidrs !== null) {
        alts.push(s.cidrs.map(c => c.v === 4 ? { dim: 'net4', value: c.n, len: c.len } : { dim: 'net6', value: v6Key(c.b), len: c.len }))
      }
      return alts
    }))
  }
  if (r.resources !== null) {
    fields.push(r.resources.map(s => {
      const alts: Choice[] = []
      if (s.dirs !== null && s.dirs.every(d => d !== '')) alts.push(s.dirs.map(v => ({ dim: 'dir', value: v })))
      if (s.files !== null && s.files.every(g => g.literalDir !== '')) alts.push(s.files.map(g => ({ dim: 'dir', value: g.literalDir })))
      return alts
    }))
  }
  return fields
}

/** Does a rule apply at guard point `g` at all? Its own guard's rules do; shared rules unless their resources exclude g. */
export function appliesTo (r: CompiledRule, g: string): boolean {
  if (r.guard !== null) return r.guard === g
  return r.resources === null || r.resources.some(s => s.guards === null || s.guards.has(g))
}

export function buildGuardIndex (guard: string, rules: readonly CompiledRule[]): GuardIndex {
  const here = rules.filter(r => appliesTo(r, guard))
  const options = here.map(fieldOptions)
  const freq = new Map<string, number>()
  for (const fields of options) {
    for (const field of fields) for (const set of field) for (const alt of set) for (const e of alt) freq.set(tag(e), (freq.get(tag(e)) ?? 0) + 1)
  }
  const cost = (alt: Choice): number => { let n = 0; for (const e of alt) n += freq.get(tag(e)) ?? 0; return n }

  const buckets = new Map<Dim, Map<string | number, number[]>>()
  const nets = { net4: new Map<number, Map<number, number[]>>(), net6: new Map<number, Map<string, number[]>>() }
  const wildcard: number[] = []
  here.forEach((r, i) => {
    let best: Choice | null = null
    let bestCost = Infinity
    for (const field of options[i]) {
      if (field.some(set => set.length === 0)) continue // a set of this field cannot be filed
      const chosen = field.map(set => set.length === 1 ? set[0] : set.reduce((a, b) => (cost(b) < cost(a) ? b : a)))
      const flat = chosen.flat()
      const c = cost(flat)
      if (c < bestCost) { best = flat; bestCost = c }
    }
    if (best === null) { wildcard.push(r.order); return }
    const seen = new Set<string>()
    for (const e of best) {
      const t = tag(e)
      if (seen.has(t)) continue
      seen.add(t)
      let m: Map<string | number, number[]> | undefined
      if (e.dim === 'net4' || e.dim === 'net6') {
        const byLen = nets[e.dim] as Map<number, Map<string | number, number[]>>
        m = byLen.get(e.len ?? 0)
        if (m === undefined) byLen.set(e.len ?? 0, m = new Map())
      } else {
        m = buckets.get(e.dim)
        if (m === undefined) buckets.set(e.dim, m = new Map())
      }
      const list = m.get(e.value)
      if (list === undefined) m.set(e.value, [r.order])
      else list.push(r.order)
    }
  })
  const frozen = <K>(m: Map<K, number[]> | undefined): Map<K, Int32Array> => {
    const out = new Map<K, Int32Array>()
    for (const [k, v] of m ?? []) out.set(k, Int32Array.from(v))
    return out
  }
  const get = <K>(d: Dim): Map<K, Int32Array> => frozen(buckets.get(d) as Map<K, number[]> | undefined)
  const byLen = <K>(m: Map<number, Map<K, number[]>>): Map<number, Map<K, Int32Array>> => new Map([...m].map(([l, x]) => [l, frozen(x)]))
  // Where a decision stops holding for a whole subtree: above any directory a resource names (its proper prefixes,
  // the root among them), and at or below a file glob's literal directory (names decide there).
  const scopeStops = new Set<string>()
  const globDirs = new Set<string>()
  const stopAbove = (d: string): void => { if (d !== '') { scopeStops.add(''); for (const a of pathPrefixes(d).slice(0, -1)) scopeStops.add(a) } }
  for (const r of here) {
    for (const s of r.resources ?? []) {
      for (const d of s.dirs ?? []) stopAbove(d)
      for (const g of s.files ?? []) { stopAbove(g.literalDir); globDirs.add(g.literalDir) }
    }
  }
  return {
    guard,
    all: Int32Array.from(here.map(r => r.order)),
    wildcard: Int32Array.from(wildcard),
    uid: get('uid'),
    user: get('user'),
    gid: get('gid'),
    group: get('group'),
    domain: get('domain'),
    exe: get('exe'),
    sig: get('sig'),
    host: get('host'),
    dir: get('dir'),
    net4: byLen(nets.net4),
    net6: byLen(nets.net6),
    scopeStops,
    globDirs
  }
}
