// Policy engine API: parse/validate a YAML policy, decide requests through its index, describe and diff policies.
// Pure computation: imports only lib/wire, node:crypto, `yaml` and `ajv` (loading its precompiled schema validators,
// validator.ts). Language: docs/POLICY.md.
export { parsePolicy, parsePolicyOrThrow, PolicyRejected } from './parse'
export { decide, decideLinear } from './decide'
export { policyDigest, canonicalJson } from './canonical'
export { describePolicy, keyNames, guardPoints, type PolicySummary } from './describe'
export { diffPolicies, type PolicyChange, type DiffResult } from './diff'
export { defaultPolicy, type DefaultPolicyOptions } from './default'
export { formatPolicyError } from './source'
export { ACTION_SHORTHANDS, DEFAULT_TTL_MS } from './compile'
export type { CompiledPolicy, Decision, DecideInput, ParseResult, PolicyError } from './types'
