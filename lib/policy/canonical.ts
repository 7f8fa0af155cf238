// Canonical form of a policy document (JSON, map keys sorted, list order kept, comments and layout gone) and its digest.
// Two texts with the same canonical form are the same policy; spd may use the digest to tell versions apart.
import crypto from 'node:crypto'
import { parseSource } from './source'
import type { PolicyError } from './types'

function sortKeys (v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys)
  if (v !== null && typeof v === 'object') {
    const o = v as Record<string, unknown>
    const out: Record<string, unknown> = {}
    for (const k of Object.keys(o).sort()) out[k] = sortKeys(o[k])
    return out
  }
  return v
}

export function canonicalJson (data: unknown): string {
  return JSON.stringify(sortKeys(data))
}

/** The digest of a canonical text: lower-case hex SHA-256 of its UTF-8 bytes. */
export function digestOf (canonical: string): string {
  return crypto.createHash('sha256').update(canonical, 'utf8').digest('hex')
}

/**
 * Digest of a policy text's canonical form (lower-case hex SHA-256). It only needs well-formed YAML: call
 * parsePolicy first when the policy must also be valid (a valid policy's `digest` is the same value).
 */
export function policyDigest (text: string): { ok: true, digest: string, canonical: string } | { ok: false, errors: PolicyError[] } {
  const src = parseSource(text, 'policy.yaml')
  if (!src.ok) return src
  const canonical = canonicalJson(src.data)
  return { ok: true, digest: digestOf(canonical), canonical }
}
