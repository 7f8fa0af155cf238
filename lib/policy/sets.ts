// User, process, host and resource sets: compile a checked set document, and match a request against a set.
// Inside one set every field present must match (AND); inside one field any entry may match (OR).
import type { AccessAttrs, HostContext } from '../wire/packets'
import { type Glob, parseDir, parseGlob, underDir } from './glob'
import { cidrContains, type Ip, parseCidr } from './net'
import type { PathSeg, Problems } from './source'
import type { HostSet, HostSetDoc, ProcessSet, ProcessSetDoc, ResourceSet, ResourceSetDoc, UserSet, UserSetDoc } from './types'

export type SetKind = 'users' | 'processes' | 'hosts' | 'resources'
export type AnySet = UserSet | ProcessSet | HostSet | ResourceSet
export const SINGULAR: Readonly<Record<SetKind, string>> = { users: 'user', processes: 'process', hosts: 'host', resources: 'resource' }

const SIGNATURE = /^sha256:([0-9a-fA-F]{64})$/
const WILDCARD = /[*?[]/

function nonEmpty (doc: object, kind: SetKind, at: readonly PathSeg[], p: Problems): void {
  if (Object.keys(doc).every(k => k === 'description')) {
    p.add(at, `an empty ${SINGULAR[kind]} set would match everything: name at least one field, or leave the rule's field out`)
  }
}

export function compileUserSet (d: UserSetDoc, at: readonly PathSeg[], p: Problems): UserSet {
  nonEmpty(d, 'users', at, p)
  return {
    uids: d.uids !== undefined ? new Set(d.uids) : null,
    users: d.users !== undefined ? new Set(d.users) : null,
    gids: d.gids !== undefined ? new Set(d.gids) : null,
    groups: d.groups !== undefined ? new Set(d.groups) : null,
    domains: d.domains !== undefined ? new Set(d.domains.map(x => x.toLowerCase())) : null
  }
}

export function compileProcessSet (d: ProcessSetDoc, at: readonly PathSeg[], p: Problems): ProcessSet {
  nonEmpty(d, 'processes', at, p)
  let paths: Set<string> | null = null
  let pathGlobs: Glob[] | null = null
  d.paths?.forEach((s, i) => {
    if (!s.startsWith('/')) { p.add([...at, 'paths', i], `executable path '${s}' must be absolute`); return }
    if (WILDCARD.test(s) || s.includes('\\')) {
      const g = parseGlob(s)
      if (!g.ok) p.add([...at, 'paths', i], g.why)
      else (pathGlobs ??= []).push(g.glob)
    } else {
      (paths ??= new Set()).add(s)
    }
  })
  if (d.paths !== undefined && paths === null && pathGlobs === null) paths = new Set()
  let signatures: Set<string> | null = null
  if (d.signatures !== undefined) {
    signatures = new Set()
    d.signatures.forEach((s, i) => {
      const m = SIGNATURE.exec(s)
      if (m === null) p.add([...at, 'signatures', i], `bad signature '${s}': expected sha256:<64 hex digits>`)
      else signatures?.add(m[1].toLowerCase())
    })
  }
  return { paths, pathGlobs, signatures }
}

export function compileHostSet (d: HostSetDoc, at: readonly PathSeg[], p: Problems): HostSet {
  nonEmpty(d, 'hosts', at, p)
  let cidrs: HostSet['cidrs'] = null
  if (d.cidrs !== undefined) {
    const list: NonNullable<HostSet['cidrs']>[number][] = []
    d.cidrs.forEach((s, i) => {
      const c = parseCidr(s)
      if (!c.ok) p.add([...at, 'cidrs', i], `bad CIDR '${s}': ${c.why}`)
      else list.push(c.cidr)
    })
    cidrs = list
  }
  return { ids: d.ids !== undefined ? new Set(d.ids) : null, cidrs }
}

export function compileResourceSet (d: ResourceSetDoc, at: readonly PathSeg[], p: Problems, guards: ReadonlySet<string>): ResourceSet {
  nonEmpty(d, 'resources', at, p)
  let gs: Set<string> | null = null
  if (d.guards !== undefined) {
    gs = new Set()
    d.guards.forEach((g, i) => {
      const n = canonicalGuard(g)
      if (!guards.has(n)) p.add([...at, 'guards', i], `unknown guard point '${g}' (declare it under guards:)`)
      gs?.add(n)
    })
  }
  let dirs: string[] | null = null
  if (d.dirs !== undefined) {
    dirs = []
    d.dirs.forEach((s, i) => {
      const r = parseDir(s)
      if (!r.ok) p.add([...at, 'dirs', i], `bad directory: ${r.why}`)
      else dirs?.push(r.dir)
    })
  }
  let files: Glob[] | null = null
  if (d.files !== undefined) {
    files = []
    d.files.forEach((s, i) => {
      const g = parseGlob(s)
      if (!g.ok) p.add([...at, 'files', i], g.why)
      else files?.push(g.glob)
    })
  }
  return { guards: gs, dirs, files }
}

/** Guard points compare without a trailing '/'; '/' stays '/'. */
export function canonicalGuard (g: string): string {
  if (!g.endsWith('/')) return g
  const t = g.replace(/\/+$/, '')
  return t === '' ? '/' : t
}

// ---- matching ----

export function matchUser (s: UserSet, a: AccessAttrs): boolean {
  if (s.uids !== null && !s.uids.has(a.uid)) return false
  if (s.users !== null && (a.user === undefined || !s.users.has(a.user))) return false
  if (s.gids !== null && !a.gids.some(g => s.gids?.has(g) === true)) return false
  if (s.groups !== null && (a.groups === undefined || !a.groups.some(g => s.groups?.has(g) === true))) return false
  if (s.domains !== null && (a.domain === undefined || !s.domains.has(a.domain.toLowerCase()))) return false
  return true
}

export function matchProcess (s: ProcessSet, a: AccessAttrs): boolean {
  if (s.paths !== null || s.pathGlobs !== null) {
    const exact = s.paths?.has(a.exe) === true
    if (!exact && !(s.pathGlobs?.some(g => g.re.test(a.exe)) === true)) return false
  }
  if (s.signatures !== null && (a.exeHash === '' || !s.signatures.has(a.exeHash.toLowerCase()))) return false
  return true
}

export function matchHost (s: HostSet, ctx: HostContext, ip: Ip | null): boolean {
  if (s.ids !== null && !s.ids.has(ctx.host)) return false
  if (s.cidrs !== null && (ip === null || !s.cidrs.some(c => cidrContains(c, ip)))) return false
  return true
}

export function matchResource (s: ResourceSet, guard: string, path: string): boolean {
  if (s.guards !== null && !s.guards.has(guard)) return false
  if (s.dirs !== null && !s.dirs.some(d => underDir(path, d))) return false
  if (s.files !== null && !s.files.some(g => g.re.test(path))) return false
  return true
}
