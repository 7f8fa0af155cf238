// parsePolicy: YAML text -> shape check (ajv) -> semantic checks -> compiled, indexed policy; or every located error.
// A policy with any error is refused as a whole. parsePolicyOrThrow is the same, throwing PEM_ERR_BAD_POLICY.
import { PemError } from '../wire/errors'
import { compileDocument } from './compile'
import { canonicalJson, digestOf } from './canonical'
import { buildGuardIndex } from './rule-index'
import { checkShape } from './schema'
import { formatPolicyError, parseSource, Problems } from './source'
import type { CompiledPolicy, GuardIndex, ParseResult, PolicyDocument, PolicyError } from './types'

export interface ParseOptions {
  /** The text is spd's own stored canonical policy (authenticated store): its canonical form is not re-checked. */
  stored?: boolean
}

export function parsePolicy (text: string, fileName = 'policy.yaml', opts: ParseOptions = {}): ParseResult {
  const src = parseSource(text, fileName, opts.stored === true ? 'stored' : canonicalJson)
  if (!src.ok) return src
  const problems = new Problems(src.source)
  if (!checkShape(src.data, problems)) return { ok: false, errors: problems.sorted() }
  const data = src.data as PolicyDocument
  const c = compileDocument(data, src.source, problems)
  if (problems.list.length > 0) return { ok: false, errors: problems.sorted() }
  const guards = new Map<string, GuardIndex>()
  for (const g of c.guards) guards.set(g, buildGuardIndex(g, c.rules))
  const canonical = src.canonical ?? canonicalJson(data)
  return {
    ok: true,
    policy: { format: 1, digest: digestOf(canonical), canonical, data, ttlMs: c.ttlMs, keys: c.keys, guards, rules: c.rules }
  }
}

/** Thrown by parsePolicyOrThrow: code PEM_ERR_BAD_POLICY, message = one error per line, `errors` = the list. */
export class PolicyRejected extends PemError {
  readonly errors: PolicyError[]
  constructor (errors: PolicyError[]) {
    super('PEM_ERR_BAD_POLICY', errors.map(formatPolicyError).join('\n'))
    this.errors = errors
  }
}

export function parsePolicyOrThrow (text: string, fileName = 'policy.yaml', opts: ParseOptions = {}): CompiledPolicy {
  const r = parsePolicy(text, fileName, opts)
  if (!r.ok) throw new PolicyRejected(r.errors)
  return r.policy
}
