// Semantic checks and compilation of a shape-checked document: names, references, keys, effects, actions, ttl.
import { ACTIONS, ADMIN_ACTIONS, PLACEMENTS, type Compression, type Placement } from '../wire/packets'
import { canonicalGuard, compileHostSet, compileProcessSet, compileResourceSet, compileUserSet, type SetKind, SINGULAR } from './sets'
import { normalizePath } from './glob'
import { locate, type PathSeg, type Problems, type Source } from './source'
import type { CompiledRule, HostSet, PolicyDocument, ProcessSet, ResourceSet, RuleDoc, RuleEffect, SetRef, UserSet } from './types'

export const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/
export const DEFAULT_TTL_MS = 30_000
export const MAX_TTL_MS = 86_400_000

/** Action shorthands. `readonly` never changes data or metadata; `modify` is everything else but `open`. */
export const ACTION_SHORTHANDS: Readonly<Record<string, readonly string[]>> = {
  all: ACTIONS.filter(a => !ADMIN_ACTIONS.includes(a)),
  readonly: ['read', 'open', 'list', 'getattr', 'readlink', 'statfs'],
  metadata: ['getattr', 'list', 'readlink', 'statfs'],
  modify: ['write', 'create', 'delete', 'rename', 'chmod', 'chown', 'truncate', 'mkdir', 'rmdir', 'link', 'symlink', 'utimens', 'xattr']
}
const ACTION_BIT = new Map<string, number>(ACTIONS.map((a, i) => [a, 1 << i]))
/** What `all` (and a rule without `actions`) covers: every action but the admin-level ones. */
export const ALL_ACTIONS_MASK = ACTION_SHORTHANDS.all.reduce((m, a) => m | (ACTION_BIT.get(a) ?? 0), 0)
export function actionBit (a: string): number { return ACTION_BIT.get(a) ?? 0 }

export function parseTtl (v: number | string): number | null {
  if (typeof v === 'number') return v
  const m = /^(\d+)(ms|s|m|h)$/.exec(v.trim())
  if (m === null) return null
  const ms = Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h']
  return ms <= MAX_TTL_MS ? ms : null
}

export interface Compiled {
  ttlMs: number
  keys: string[]
  guards: string[]
  rules: CompiledRule[]
}

type Named = { users: Map<string, UserSet>, processes: Map<string, ProcessSet>, hosts: Map<string, HostSet>, resources: Map<string, ResourceSet> }

export function compileDocument (doc: PolicyDocument, src: Source, p: Problems): Compiled {
  let ttlMs = DEFAULT_TTL_MS
  if (doc.ttl !== undefined) {
    const t = parseTtl(doc.ttl)
    if (t === null) p.add(['ttl'], `bad ttl '${String(doc.ttl)}': milliseconds, or a number with ms, s, m or h, at most 24h`)
    else ttlMs = t
  }

  const keys: string[] = []
  ;(doc.keys ?? []).forEach((k, i) => {
    const name = typeof k === 'string' ? k : k.name
    const at: PathSeg[] = typeof k === 'string' ? ['keys', i] : ['keys', i, 'name']
    if (!NAME.test(name)) p.add(at, `bad key name '${name}': letters, digits, '_', '.', '-', at most 64`)
    else if (keys.includes(name)) p.add(at, `duplicate key '${name}'`)
    else keys.push(name)
  })

  const guards: string[] = []
  for (const g of Object.keys(doc.guards)) {
    const n = canonicalGuard(g)
    if (!g.startsWith('/') || normalizePath(g) === null) p.add(['guards', g], `guard point '${g}' must be an absolute path without '.' or '..'`)
    else if (guards.includes(n)) p.add(['guards', g], `guard point '${g}' is declared twice`)
    else guards.push(n)
  }
  const guardSet = new Set(guards)

  const named: Named = { users: new Map(), processes: new Map(), hosts: new Map(), resources: new Map() }
  const sets = doc.sets ?? {}
  for (const kind of ['users', 'processes', 'hosts', 'resources'] as const) {
    for (const [name, d] of Object.entries(sets[kind] ?? {})) {
      const at = ['sets', kind, name]
      if (!NAME.test(name)) p.add(at, `bad set name '${name}': letters, digits, '_', '.', '-', at most 64`)
      named[kind].set(name, compileOne(kind, d, at, p, guardSet) as never)
    }
  }

  const rules: CompiledRule[] = []
  const ids = new Map<string, PathSeg[]>()
  const addRules = (list: RuleDoc[] | undefined, guard: string | null, base: PathSeg[]): void => {
    (list ?? []).forEach((r, i) => {
      const at = [...base, i]
      const prev = ids.get(r.id)
      if (!NAME.test(r.id)) p.add([...at, 'id'], `bad rule id '${r.id}': letters, digits, '_', '.', '-', at most 64`)
      else if (prev !== undefined) p.add([...at, 'id'], `duplicate rule id '${r.id}' (first at line ${locate(src, prev).line})`)
      if (prev === undefined) ids.set(r.id, at)
      rules.push(compileRule(r, at, p, { guard, order: rules.length, named, keys, guardSet, ttlMs }))
    })
  }
  for (const [g, body] of Object.entries(doc.guards)) addRules(body.rules, canonicalGuard(g), ['guards', g, 'rules'])
  addRules(doc.rules, null, ['rules'])
  return { ttlMs, keys, guards, rules }
}

function compileOne (kind: SetKind, d: unknown, at: readonly PathSeg[], p: Problems, guards: ReadonlySet<string>): unknown {
  switch (kind) {
    case 'users': return compileUserSet(d as never, at, p)
    case 'processes': return compileProcessSet(d as never, at, p)
    case 'hosts': return compileHostSet(d as never, at, p)
    case 'resources': return compileResourceSet(d as never, at, p, guards)
  }
}

interface RuleCtx { guard: string | null, order: number, named: Named, keys: string[], guardSet: ReadonlySet<string>, ttlMs: number }

function resolveRefs<T> (kind: SetKind, ref: SetRef<object> | undefined, at: PathSeg[], p: Problems, c: RuleCtx): T[] | null {
  if (ref === undefined) return null
  const list = Array.isArray(ref) ? ref : [ref]
  const out: T[] = []
  list.forEach((item, i) => {
    const here = Array.isArray(ref) ? [...at, i] : at
    if (typeof item === 'string') {
      const s = c.named[kind].get(item)
      if (s === undefined) p.add(here, `unknown ${SINGULAR[kind]} set '${item}' (define it under sets.${kind})`)
      else out.push(s as T)
    } else {
      out.push(compileOne(kind, item, here, p, c.guardSet) as T)
    }
  })
  return out
}

const EFFECT = /^(permit|deny|audit)$|^apply_key\(\s*([^()\s]*)\s*\)$/

function compileRule (r: RuleDoc, at: PathSeg[], p: Problems, c: RuleCtx): CompiledRule {
  let effect: RuleEffect = 'deny'
  let key: string | null = null
  const m = EFFECT.exec(r.effect.trim())
  if (m === null) {
    p.add([...at, 'effect'], `unknown effect '${r.effect}': permit, deny, audit or apply_key(KEY)`)
  } else if (m[1] !== undefined) {
    effect = m[1] as RuleEffect
  } else {
    effect = 'apply_key'
    key = m[2]
    if (!c.keys.includes(key)) p.add([...at, 'effect'], `apply_key(${key}) names an unknown key (declare it under keys:)`)
  }
  let compression: Compression = 'none'
  if (r.compression !== undefined) {
    if (effect !== 'apply_key') p.add([...at, 'compression'], 'compression applies only to apply_key rules (data that bypasses the cluster is not compressed)')
    else compression = r.compression
  }
  let placement: Placement = 'appliance'
  if (r.placement !== undefined) {
    if (!(PLACEMENTS as readonly string[]).includes(r.placement)) p.add([...at, 'placement'], `rule '${r.id}': unknown placement '${r.placement}': ${PLACEMENTS.join(' or ')}`)
    else if (effect !== 'apply_key') p.add([...at, 'placement'], `rule '${r.id}': placement applies only to apply_key rules (it says where the file key is used)`)
    else placement = r.placement as Placement
  }
  let actions = 0
  if (r.actions === undefined) actions = ALL_ACTIONS_MASK
  else {
    const list = Array.isArray(r.actions) ? r.actions : [r.actions]
    list.forEach((a, i) => {
      const here = Array.isArray(r.actions) ? [...at, 'actions', i] : [...at, 'actions']
      const expanded = ACTION_SHORTHANDS[a] ?? (actionBit(a) !== 0 ? [a] : null)
      if (expanded === null) p.add(here, `unknown action '${a}' (actions: ${ACTIONS.join(', ')}; shorthands: ${Object.keys(ACTION_SHORTHANDS).join(', ')})`)
      else for (const x of expanded) actions |= actionBit(x)
    })
  }
  let ttlMs = c.ttlMs
  if (r.ttl !== undefined) {
    const t = parseTtl(r.ttl)
    if (t === null) p.add([...at, 'ttl'], `bad ttl '${String(r.ttl)}': milliseconds, or a number with ms, s, m or h, at most 24h`)
    else ttlMs = t
  }
  return {
    id: r.id,
    order: c.order,
    guard: c.guard,
    path: at,
    resources: resolveRefs<ResourceSet>('resources', r.resources, [...at, 'resources'], p, c),
    users: resolveRefs<UserSet>('users', r.users, [...at, 'users'], p, c),
    processes: resolveRefs<ProcessSet>('processes', r.processes, [...at, 'processes'], p, c),
    hosts: resolveRefs<HostSet>('hosts', r.hosts, [...at, 'hosts'], p, c),
    minAuth: r.min_auth ?? 0,
    actions,
    effect,
    key,
    compression,
    placement,
    weight: r.weight ?? null,
    ttlMs,
    audit: r.audit === true || effect === 'audit'
  }
}
