// Types of the policy engine: compiled sets, rules, the per-guard index, decisions and located errors.
import type { AccessAttrs, Action, Compression, HostContext, Placement } from '../wire/packets'
import type { Cidr } from './net'
import type { Glob } from './glob'

export interface UserSet {
  uids: ReadonlySet<number> | null
  users: ReadonlySet<string> | null
  gids: ReadonlySet<number> | null
  groups: ReadonlySet<string> | null
  domains: ReadonlySet<string> | null // lower case
}

export interface ProcessSet {
  paths: ReadonlySet<string> | null // exact executable paths
  pathGlobs: readonly Glob[] | null // executable paths with wildcards
  signatures: ReadonlySet<string> | null // lower-case hex SHA-256, without the 'sha256:' prefix
}

export interface HostSet {
  ids: ReadonlySet<string> | null
  cidrs: readonly Cidr[] | null
}

export interface ResourceSet {
  guards: ReadonlySet<string> | null
  dirs: readonly string[] | null // canonical ('' = everything)
  files: readonly Glob[] | null
}

export type RuleEffect = 'permit' | 'deny' | 'audit' | 'apply_key'

export interface CompiledRule {
  id: string
  order: number // position in evaluation order across the whole document
  guard: string | null // null: a shared rule (top-level `rules:`)
  path: ReadonlyArray<string | number> // where it is in the document (formatPath makes it readable)
  resources: readonly ResourceSet[] | null // null = any; else any of them
  users: readonly UserSet[] | null
  processes: readonly ProcessSet[] | null
  hosts: readonly HostSet[] | null
  minAuth: number
  actions: number // bit mask over ACTIONS
  effect: RuleEffect
  key: string | null
  compression: Compression
  placement: Placement // where an apply_key rule's crypto runs ('appliance' for every other effect)
  weight: number | null
  ttlMs: number
  audit: boolean
}

/** Hash buckets of one guard point: attribute value -> ascending rule orders. */
export interface GuardIndex {
  guard: string
  all: Int32Array // every rule that can apply here, ascending (the linear evaluator walks this)
  wildcard: Int32Array // rules with no indexed constraint: always candidates
  uid: Map<number, Int32Array>
  user: Map<string, Int32Array>
  gid: Map<number, Int32Array>
  group: Map<string, Int32Array>
  domain: Map<string, Int32Array>
  exe: Map<string, Int32Array>
  sig: Map<string, Int32Array>
  host: Map<string, Int32Array>
  dir: Map<string, Int32Array>
  net4: Map<number, Map<number, Int32Array>> // prefix length -> network -> rules
  net6: Map<number, Map<string, Int32Array>>
  // Decision scope (decide.ts decisionScope): directories that have a resource `dirs` entry or a file glob's literal
  // directory strictly below them, and the literal directories of file globs (below one, names decide).
  scopeStops: ReadonlySet<string>
  globDirs: ReadonlySet<string>
}

export interface CompiledPolicy {
  format: 1
  digest: string // SHA-256 (hex) of the canonical form
  canonical: string // canonical JSON of the document (sorted map keys, comments dropped)
  data: PolicyDocument // the validated document, for describe/diff
  ttlMs: number
  keys: readonly string[]
  guards: ReadonlyMap<string, GuardIndex> // in declaration order
  rules: readonly CompiledRule[] // indexed by order
}

export interface DecideInput {
  guard: string
  path: string
  action: Action
  attrs: AccessAttrs
  ctx: HostContext
}

export interface Decision {
  effect: 'permit' | 'deny'
  rule: string | null // the rule that decided; null only for the default deny
  key: string | null
  compression: Compression
  placement: Placement // 'host': spd may release the file key to the host (FileKey); 'appliance' otherwise
  bypass: boolean // permit without apply_key: the host does the I/O itself
  weight: number | null
  ttlMs: number
  audit: string[] // ids of the rules that asked for this decision to be audited, in order
  scope: string | null // every path strictly under this directory gets this same decision ('' = the guard root); null: this path only
}

/** One problem in a policy document, located by line (1-based) and field path. */
export interface PolicyError {
  file: string
  line: number
  column: number
  path: string // e.g. rules[2].effect; '' for the document
  message: string
}

export type ParseResult = { ok: true, policy: CompiledPolicy } | { ok: false, errors: PolicyError[] }

// ---- the document as written (after schema validation) ----

export type SetRef<T> = string | T | Array<string | T>

export interface UserSetDoc { description?: string, uids?: number[], users?: string[], gids?: number[], groups?: string[], domains?: string[] }
export interface ProcessSetDoc { description?: string, paths?: string[], signatures?: string[] }
export interface HostSetDoc { description?: string, ids?: string[], cidrs?: string[] }
export interface ResourceSetDoc { description?: string, guards?: string[], dirs?: string[], files?: string[] }

export interface RuleDoc {
  id: string
  description?: string
  resources?: SetRef<ResourceSetDoc>
  users?: SetRef<UserSetDoc>
  processes?: SetRef<ProcessSetDoc>
  hosts?: SetRef<HostSetDoc>
  min_auth?: number
  actions?: string | string[]
  effect: string
  compression?: Compression
  placement?: string
  weight?: number
  ttl?: number | string
  audit?: boolean
}

export interface PolicyDocument {
  format: 1
  description?: string
  ttl?: number | string
  keys?: Array<string | { name: string, description?: string }>
  sets?: {
    users?: Record<string, UserSetDoc>
    processes?: Record<string, ProcessSetDoc>
    hosts?: Record<string, HostSetDoc>
    resources?: Record<string, ResourceSetDoc>
  }
  guards: Record<string, { description?: string, rules?: RuleDoc[] }>
  rules?: RuleDoc[]
}
