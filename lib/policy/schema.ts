// JSON Schema (ajv, precompiled: validator.ts) of the policy document's shape, and ajv errors turned into located
// policy errors.
// The schema checks structure and types only; compile.ts checks contents (names, references, CIDRs, globs...).
import type { ErrorObject } from 'ajv'
import { COMPRESSIONS } from '../wire/packets'
import type { PathSeg, Problems } from './source'
import { didYouMean, nearestName } from './nearest'
import { knownFields, validatorFor, type ValidatorSpec } from './validator'

const str = { type: 'string', minLength: 1, maxLength: 4096 }
const strList = { type: 'array', minItems: 1, items: str }
const idList = { type: 'array', minItems: 1, items: { type: 'integer', minimum: 0, maximum: 0xffffffff } }
const description = { type: 'string', maxLength: 4096 }

const set = (props: Record<string, unknown>): Record<string, unknown> => ({
  type: 'object', additionalProperties: false, properties: { description, ...props }
})

/** A rule's reference to sets: a name, an inline set, or a list of those. */
const refs = (def: string): Record<string, unknown> => {
  const one = { type: ['string', 'object'], minLength: 1, if: { type: 'object' }, then: { $ref: `#/$defs/${def}` } }
  return { type: ['string', 'object', 'array'], minLength: 1, minItems: 1, if: { type: 'object' }, then: { $ref: `#/$defs/${def}` }, items: one }
}

const ttl = { type: ['integer', 'string'], minimum: 0, maximum: 86_400_000 }

export const POLICY_SCHEMA = {
  $id: 'https://pemfs.invalid/policy-v1.json',
  type: 'object',
  additionalProperties: false,
  required: ['format', 'guards'],
  properties: {
    format: { const: 1 },
    description,
    ttl,
    keys: {
      type: 'array',
      items: {
        type: ['string', 'object'],
        minLength: 1,
        if: { type: 'object' },
        then: { type: 'object', additionalProperties: false, required: ['name'], properties: { name: str, description } }
      }
    },
    sets: {
      type: 'object',
      additionalProperties: false,
      properties: {
        users: { type: 'object', additionalProperties: { $ref: '#/$defs/userSet' } },
        processes: { type: 'object', additionalProperties: { $ref: '#/$defs/processSet' } },
        hosts: { type: 'object', additionalProperties: { $ref: '#/$defs/hostSet' } },
        resources: { type: 'object', additionalProperties: { $ref: '#/$defs/resourceSet' } }
      }
    },
    guards: {
      type: 'object',
      additionalProperties: {
        type: 'object',
        additionalProperties: false,
        properties: { description, rules: { type: 'array', items: { $ref: '#/$defs/rule' } } }
      }
    },
    rules: { type: 'array', items: { $ref: '#/$defs/rule' } }
  },
  $defs: {
    userSet: set({ uids: idList, users: strList, gids: idList, groups: strList, domains: strList }),
    processSet: set({ paths: strList, signatures: strList }),
    hostSet: set({ ids: strList, cidrs: strList }),
    resourceSet: set({ guards: strList, dirs: strList, files: strList }),
    rule: {
      type: 'object',
      additionalProperties: false,
      required: ['id', 'effect'],
      properties: {
        id: str,
        description,
        resources: refs('resourceSet'),
        users: refs('userSet'),
        processes: refs('processSet'),
        hosts: refs('hostSet'),
        min_auth: { type: 'integer', minimum: 0, maximum: 255 },
        actions: { type: ['string', 'array'], minLength: 1, minItems: 1, items: str },
        effect: str,
        compression: { enum: [...COMPRESSIONS] },
        placement: str, // checked in compile.ts, so the error names the rule
        weight: { type: 'integer', minimum: 1, maximum: 100 },
        ttl,
        audit: { type: 'boolean' }
      }
    }
  }
} as const

export const POLICY_VALIDATOR: ValidatorSpec = { name: 'policy', schema: POLICY_SCHEMA, options: { allErrors: true, allowUnionTypes: true, strict: true, verbose: true } } // verbose: the hint's field names
const validate = validatorFor(POLICY_VALIDATOR)

function pointerToPath (pointer: string, data: unknown): PathSeg[] {
  if (pointer === '') return []
  const out: PathSeg[] = []
  let cur: unknown = data
  for (const raw of pointer.slice(1).split('/')) {
    const seg = raw.replace(/~1/g, '/').replace(/~0/g, '~')
    if (Array.isArray(cur) && /^\d+$/.test(seg)) { out.push(Number(seg)); cur = cur[Number(seg)] } else { out.push(seg); cur = (cur as Record<string, unknown> | undefined)?.[seg] }
  }
  return out
}

function isKeyEntry (path: readonly PathSeg[]): boolean {
  return path.length === 2 && path[0] === 'keys' && typeof path[1] === 'number'
}

function message (e: ErrorObject): string {
  const p = e.params as Record<string, unknown>
  switch (e.keyword) {
    case 'type': return `must be ${String(p.type).split(',').join(' or ')}`
    case 'enum': return `must be one of ${(p.allowedValues as unknown[]).join(', ')}`
    case 'const': return `must be ${JSON.stringify(p.allowedValue)}`
    case 'minItems': return 'must not be an empty list'
    case 'minLength': return 'must not be empty'
    case 'maxLength': return `must be at most ${String(p.limit)} characters`
    case 'minimum': return `must be >= ${String(p.limit)}`
    case 'maximum': return `must be <= ${String(p.limit)}`
    default: return e.message ?? 'is invalid'
  }
}

/** Checks the shape; reports each problem at its field. Returns true when the shape is right. */
export function checkShape (data: unknown, problems: Problems): boolean {
  if (validate(data)) return true
  const errors = validate.errors ?? []
  // `efect: permit` is one mistake: report the unknown field with its hint, not also "effect: is required".
  const misspelt = new Set(errors.filter(e => e.keyword === 'additionalProperties').map(e => {
    const near = nearestName(String((e.params as { additionalProperty: string }).additionalProperty), knownFields(e))
    return JSON.stringify([...pointerToPath(e.instancePath, data), near])
  }))
  const seen = new Set<string>()
  for (const e of errors) {
    if (e.keyword === 'if') continue
    const path = pointerToPath(e.instancePath, data)
    let at = path
    let text: string
    if (e.keyword === 'additionalProperties') {
      const prop = String((e.params as { additionalProperty: string }).additionalProperty)
      at = [...path, prop]
      text = isKeyEntry(path)
        ? 'a key entry may name a key and describe it, nothing else: key material is generated and kept by spd and must never be in the policy'
        : `unknown field${didYouMean(prop, knownFields(e))}`
    } else if (e.keyword === 'required') {
      at = [...path, String((e.params as { missingProperty: string }).missingProperty)]
      if (misspelt.has(JSON.stringify(at))) continue
      text = 'is required'
    } else {
      text = message(e)
    }
    const k = JSON.stringify(at) + text
    if (seen.has(k)) continue
    seen.add(k)
    problems.add(at, text)
  }
  return false
}
