// Decisions: gather candidate rules from the guard's index, then match them in rule order. First terminal match wins;
// `audit` rules are recorded and passed; no match is a deny by no rule. decideLinear walks every rule (reference).
import { normalizePath, pathPrefixes } from './glob'
import { type Ip, maskV4, maskV6, parseIp, v6Key } from './net'
import { canonicalGuard, matchHost, matchProcess, matchResource, matchUser } from './sets'
import { actionBit } from './compile'
import type { CompiledPolicy, CompiledRule, Decision, DecideInput, GuardIndex } from './types'

function denyByDefault (ttlMs: number, audit: string[], scope: string | null): Decision {
  return { effect: 'deny', rule: null, key: null, compression: 'none', placement: 'appliance', bypass: false, weight: null, ttlMs, audit, scope }
}

/**
 * The widest directory under which every path gets the decision `path` gets (for the same attributes, host and
 * action), or null. Only resources depend on the path: a rule's `dirs` entry d matches all or none of the paths
 * strictly under A unless d lies strictly under A, and a file glob can tell names apart only at or below its literal
 * directory. So the scope is the shallowest proper ancestor of `path` with no resource directory strictly under it,
 * unless `path` is under a glob's literal directory. Hosts cache a decision for its whole scope (pemfs guard.ts).
 */
export function decisionScope (ix: GuardIndex, path: string): string | null {
  if (path === '') return null
  const ancestors = pathPrefixes(path) // '/a', '/a/b', ..., path itself
  if (ix.globDirs.has('')) return null
  for (const a of ancestors) if (ix.globDirs.has(a)) return null // path is at or under a glob's literal directory
  if (!ix.scopeStops.has('')) return ''
  for (let i = 0; i < ancestors.length - 1; i++) if (!ix.scopeStops.has(ancestors[i])) return ancestors[i]
  return null
}

/** Lazily parsed client address: most rules never look at it. */
class Addr {
  private done = false
  private ip: Ip | null = null
  constructor (private readonly text: string) {}
  get (): Ip | null {
    if (!this.done) { this.ip = parseIp(this.text); this.done = true }
    return this.ip
  }
}

function ruleMatches (r: CompiledRule, input: DecideInput, guard: string, path: string, addr: Addr): boolean {
  if ((r.actions & actionBit(input.action)) === 0) return false
  if (input.attrs.auth < r.minAuth) return false
  if (r.resources !== null && !r.resources.some(s => matchResource(s, guard, path))) return false
  if (r.users !== null && !r.users.some(s => matchUser(s, input.attrs))) return false
  if (r.processes !== null && !r.processes.some(s => matchProcess(s, input.attrs))) return false
  if (r.hosts !== null && !r.hosts.some(s => matchHost(s, input.ctx, s.cidrs === null ? null : addr.get()))) return false
  return true
}

/** Audited decisions are never widened: the cluster sees (and logs) every path they are asked for. */
function evaluate (p: CompiledPolicy, ix: GuardIndex, order: ArrayLike<number>, input: DecideInput, guard: string, path: string, addr: Addr): Decision {
  const audit: string[] = []
  let prev = -1
  for (let i = 0; i < order.length; i++) {
    const o = order[i]
    if (o === prev) continue
    prev = o
    const r = p.rules[o]
    if (!ruleMatches(r, input, guard, path, addr)) continue
    if (r.audit) audit.push(r.id)
    if (r.effect === 'audit') continue
    const scope = audit.length === 0 ? decisionScope(ix, path) : null
    if (r.effect === 'deny') {
      return { effect: 'deny', rule: r.id, key: null, compression: 'none', placement: 'appliance', bypass: false, weight: r.weight, ttlMs: r.ttlMs, audit, scope }
    }
    const apply = r.effect === 'apply_key'
    return { effect: 'permit', rule: r.id, key: r.key, compression: r.compression, placement: r.placement, bypass: !apply, weight: r.weight, ttlMs: r.ttlMs, audit, scope }
  }
  return denyByDefault(p.ttlMs, audit, audit.length === 0 ? decisionScope(ix, path) : null)
}

function add (lists: Int32Array[], l: Int32Array | undefined): void {
  if (l !== undefined) lists.push(l)
}

/** Candidate rule orders for a request, ascending (duplicates possible, evaluate skips them). */
function candidates (ix: GuardIndex, input: DecideInput, path: string, addr: Addr): Int32Array {
  const a = input.attrs
  const lists: Int32Array[] = []
  add(lists, ix.uid.get(a.uid))
  if (a.user !== undefined) add(lists, ix.user.get(a.user))
  if (ix.gid.size > 0) for (const g of a.gids) add(lists, ix.gid.get(g))
  if (ix.group.size > 0 && a.groups !== undefined) for (const g of a.groups) add(lists, ix.group.get(g))
  if (ix.domain.size > 0 && a.domain !== undefined) add(lists, ix.domain.get(a.domain.toLowerCase()))
  if (ix.exe.size > 0) add(lists, ix.exe.get(a.exe))
  if (ix.sig.size > 0 && a.exeHash !== '') add(lists, ix.sig.get(a.exeHash.toLowerCase()))
  add(lists, ix.host.get(input.ctx.host))
  if (ix.dir.size > 0) for (const d of pathPrefixes(path)) add(lists, ix.dir.get(d))
  if (ix.net4.size > 0 || ix.net6.size > 0) {
    const ip = addr.get()
    if (ip?.v === 4) for (const [len, m] of ix.net4) add(lists, m.get(maskV4(ip.n, len)))
    else if (ip?.v === 6) for (const [len, m] of ix.net6) add(lists, m.get(v6Key(maskV6(ip.b, len))))
  }
  if (lists.length === 0) return ix.wildcard
  if (lists.length === 1 && ix.wildcard.length === 0) return lists[0]
  let n = ix.wildcard.length
  for (const l of lists) n += l.length
  const out = new Int32Array(n)
  out.set(ix.wildcard)
  let at = ix.wildcard.length
  for (const l of lists) { out.set(l, at); at += l.length }
  return out.sort()
}

function prepare (p: CompiledPolicy, input: DecideInput): { ix: GuardIndex, guard: string, path: string } | null {
  const guard = canonicalGuard(input.guard)
  const ix = p.guards.get(guard)
  if (ix === undefined) return null
  const path = normalizePath(input.path)
  if (path === null) return null
  return { ix, guard, path }
}

/** The decision for one request, through the index. */
export function decide (p: CompiledPolicy, input: DecideInput): Decision {
  const s = prepare(p, input)
  if (s === null) return denyByDefault(p.ttlMs, [], null)
  const addr = new Addr(input.ctx.ip)
  return evaluate(p, s.ix, candidates(s.ix, input, s.path, addr), input, s.guard, s.path, addr)
}

/** The same decision by walking every rule of the guard in order: the reference the index is tested against. */
export function decideLinear (p: CompiledPolicy, input: DecideInput): Decision {
  const s = prepare(p, input)
  if (s === null) return denyByDefault(p.ttlMs, [], null)
  return evaluate(p, s.ix, s.ix.all, input, s.guard, s.path, new Addr(input.ctx.ip))
}
