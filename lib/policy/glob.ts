// Paths inside a guard point: normalisation, directory prefixes (segment boundary) and file globs compiled to RegExp.
// Glob language (docs/POLICY.md "Resources"): `*` any run of characters inside one segment, `?` one character
// other than '/', `[abc]` `[a-z]` `[!a]` one character of a class, `**` (a whole segment) zero or more segments,
// `\x` the character x literally; a ']' outside a class is literal. A glob without '/' matches the last segment
// (basename); a glob with '/' is anchored at the guard point's root (a leading '/' is implied).

/**
 * Canonical form of a request path: '' for the root, otherwise '/a/b' (no empty, '.' or '..' segments, no trailing
 * '/'). Repeated and trailing slashes are folded. Returns null for '.'/'..' segments, NUL, or a relative path:
 * the engine denies those rather than guess what they resolve to.
 */
export function normalizePath (p: string): string | null {
  if (p.charCodeAt(0) !== 47 || p.includes('\0')) return null
  if (!p.includes('//') && !p.includes('/.') && !p.endsWith('/')) return p // already canonical (the usual case)
  let out = ''
  for (const seg of p.split('/')) {
    if (seg === '') continue
    if (seg === '.' || seg === '..') return null
    out += '/' + seg
  }
  return out
}

/** Prefixes of a canonical path, shortest first: '/a/b' -> ['/a', '/a/b']. The root '' has none. */
export function pathPrefixes (p: string): string[] {
  const out: string[] = []
  for (let i = p.indexOf('/', 1); i !== -1; i = p.indexOf('/', i + 1)) out.push(p.slice(0, i))
  if (p !== '') out.push(p)
  return out
}

/** Directory prefix on a segment boundary: '/fin' holds '/fin' and '/fin/x', never '/finance'. '' (root) holds all. */
export function underDir (path: string, dir: string): boolean {
  return dir === '' || path === dir || (path.startsWith(dir) && path.charCodeAt(dir.length) === 47)
}

export type DirResult = { ok: true, dir: string } | { ok: false, why: string }

/** A `dirs:` entry: absolute, literal (no wildcards), normalised; '/' becomes '' (everything). */
export function parseDir (s: string): DirResult {
  if (!s.startsWith('/')) return { ok: false, why: `'${s}' must start with '/' (paths are relative to the guard point)` }
  if (/[*?[\]\\]/.test(s)) return { ok: false, why: `'${s}' is a literal prefix; put wildcards in files:` }
  const n = normalizePath(s)
  if (n === null) return { ok: false, why: `'${s}' has a '.' or '..' segment` }
  return { ok: true, dir: n }
}

export interface Glob {
  source: string
  re: RegExp
  /** Literal leading directory of an anchored glob ('/reports' for '/reports/*.pdf'), '' when none: index key. */
  literalDir: string
}

export type GlobResult = { ok: true, glob: Glob } | { ok: false, why: string }

const RE_SPECIAL = /[.+^${}()|\\/[\]*?]/

function segmentRegex (seg: string): { re: string, literal: string | null } | string {
  let re = ''
  let literal: string | null = ''
  for (let i = 0; i < seg.length; i++) {
    const c = seg[i]
    if (c === '\\') {
      if (i + 1 >= seg.length) return 'ends with a lone \\'
      const x = seg[++i]
      re += RE_SPECIAL.test(x) ? '\\' + x : x
      if (literal !== null) literal += x
    } else if (c === '*') {
      if (seg[i + 1] === '*') return '** must be a whole path segment'
      re += '[^/]*'; literal = null
    } else if (c === '?') {
      re += '[^/]'; literal = null
    } else if (c === '[') {
      const end = seg.indexOf(']', i + 2)
      if (end === -1) return 'has an unterminated ['
      let body = seg.slice(i + 1, end)
      const neg = body.startsWith('!')
      if (neg) body = body.slice(1)
      if (body === '' || body.includes('/')) return 'has an empty or bad character class'
      const cls = body.replace(/[\\\]^]/g, m => '\\' + m)
      for (const m of body.matchAll(/(.)-(.)/g)) if (m[1] > m[2]) return `has a reversed range ${m[0]}`
      re += neg ? `[^/${cls}]` : `[${cls}]`
      literal = null
      i = end
    } else {
      re += RE_SPECIAL.test(c) ? '\\' + c : c
      if (literal !== null) literal += c
    }
  }
  return { re, literal }
}

export function parseGlob (source: string): GlobResult {
  if (source === '') return { ok: false, why: 'empty glob' }
  if (source.includes('\0')) return { ok: false, why: 'contains NUL' }
  const anchored = source.includes('/')
  const body = anchored ? (source.startsWith('/') ? source.slice(1) : source) : source
  const segs = anchored ? body.split('/') : [body]
  let re = '^'
  let literalDir = ''
  let literalRun = true
  if (!anchored) re += '(?:/[^/]+)*'
  for (let i = 0; i < segs.length; i++) {
    const seg = segs[i]
    if (seg === '') return { ok: false, why: `bad glob '${source}': empty path segment` }
    if (seg === '.' || seg === '..') return { ok: false, why: `bad glob '${source}': '.' and '..' segments never match` }
    if (seg === '**') {
      re += '(?:/[^/]+)*'
      literalRun = false
      continue
    }
    const s = segmentRegex(seg)
    if (typeof s === 'string') return { ok: false, why: `bad glob '${source}': ${s}` }
    re += '/' + s.re
    if (anchored && literalRun && s.literal !== null) literalDir += '/' + s.literal
    else literalRun = false
  }
  re += '$'
  return { ok: true, glob: { source, re: new RegExp(re), literalDir } }
}
