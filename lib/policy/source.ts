// YAML source of a policy: parse with positions, find the line of a field path, format located errors.
import type { Document, LineCounter } from 'yaml'
import type { PolicyError } from './types'

export type PathSeg = string | number

/** The yaml module, loaded on first use: spd reads its stored policy as JSON and never needs it to start (~35 ms). */
let yamlModule: typeof import('yaml') | undefined
const yaml = (): typeof import('yaml') => (yamlModule ??= require('yaml') as typeof import('yaml'))

/** Largest policy text accepted (a 10,000-rule policy is about 2 MiB). */
export const MAX_POLICY_BYTES = 32 * 1024 * 1024

/** Where located errors look up lines. For YAML text it is built while parsing; for canonical JSON only on demand. */
export class Source {
  private parsed: { doc: Document.Parsed, lines: LineCounter } | null
  constructor (readonly file: string, private readonly text: string, parsed?: { doc: Document.Parsed, lines: LineCounter }) {
    this.parsed = parsed ?? null
  }

  get doc (): Document.Parsed { return this.load().doc }
  get lines (): LineCounter { return this.load().lines }
  private load (): { doc: Document.Parsed, lines: LineCounter } {
    if (this.parsed === null) {
      const { LineCounter, parseDocument } = yaml()
      const lines = new LineCounter()
      this.parsed = { doc: parseDocument(this.text, { lineCounter: lines, prettyErrors: false }), lines }
    }
    return this.parsed
  }
}

/** `canonical` is set when the text was already canonical JSON (then it is the text itself). */
export type SourceResult = { ok: true, source: Source, data: unknown, canonical?: string } | { ok: false, errors: PolicyError[] }

/**
 * The document's data and its Source. Fast path: a text that is exactly its own canonical JSON (what spd stores,
 * see canonical.ts) is read with JSON.parse — the yaml parser needs seconds for a 10,000-rule document. `canonical`
 * re-serializes the data to prove that; 'stored' skips the proof for spd's own stored text (it was canonical when it
 * was stored, and the store is authenticated: lib/server/store.ts). Any other text (including JSON with duplicate
 * keys or layout) takes the YAML path, which reports syntax errors by line.
 */
export function parseSource (text: string, file: string, canonical?: ((v: unknown) => string) | 'stored'): SourceResult {
  if (text.length > MAX_POLICY_BYTES) {
    return { ok: false, errors: [{ file, line: 1, column: 1, path: '', message: `policy is larger than ${MAX_POLICY_BYTES} bytes` }] }
  }
  if (canonical !== undefined && text.startsWith('{"')) {
    try {
      const data: unknown = JSON.parse(text)
      if (canonical === 'stored' || canonical(data) === text) return { ok: true, source: new Source(file, text), data, canonical: text }
    } catch {}
  }
  const { LineCounter, parseDocument } = yaml()
  const lines = new LineCounter()
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true, strict: true })
  if (doc.errors.length > 0) {
    // Only the first: the parser's later errors follow from it (one unclosed quote gives eight of them).
    const e = doc.errors[0]
    const pos = e.linePos?.[0] ?? lines.linePos(e.pos[0])
    const msg = e.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '')
    return { ok: false, errors: [{ file, line: pos.line, column: pos.col, path: '', message: `YAML syntax: ${msg}` }] }
  }
  let data: unknown
  try {
    data = doc.toJS({ maxAliasCount: 100 })
  } catch (err) {
    return { ok: false, errors: [{ file, line: 1, column: 1, path: '', message: `YAML: ${(err as Error).message}` }] }
  }
  return { ok: true, source: new Source(file, text, { doc, lines }), data }
}

function keyText (k: unknown): string | undefined {
  if (yaml().isScalar(k)) return String(k.value)
  return typeof k === 'string' ? k : undefined
}

/** Line and column of the deepest node on `path` that exists (a map entry is located at its key). */
export function locate (src: Source, path: readonly PathSeg[]): { line: number, column: number } {
  let node: unknown = src.doc.contents
  let offset = (node as { range?: [number, number, number] } | null)?.range?.[0] ?? 0
  for (const seg of path) {
    if (yaml().isMap(node)) {
      const pair = node.items.find(p => keyText(p.key) === String(seg))
      if (pair === undefined) break
      const kr = (pair.key as { range?: [number, number, number] } | null)?.range
      if (kr !== undefined) offset = kr[0]
      node = pair.value
    } else if (yaml().isSeq(node) && typeof seg === 'number') {
      const item = node.items[seg] as { range?: [number, number, number] } | undefined
      if (item === undefined) break
      if (item.range !== undefined) offset = item.range[0]
      node = item
    } else {
      break
    }
  }
  const pos = src.lines.linePos(offset)
  return { line: pos.line, column: pos.col }
}

const IDENT = /^[A-Za-z_][A-Za-z0-9_-]*$/

/** `rules[2].effect`, `guards["/srv/fin"].rules[0]`. */
export function formatPath (path: readonly PathSeg[]): string {
  let out = ''
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`
    else if (IDENT.test(seg)) out += out === '' ? seg : '.' + seg
    else out += `[${JSON.stringify(seg)}]`
  }
  return out
}

/** Collects located errors while a document is checked. */
export class Problems {
  readonly list: PolicyError[] = []
  constructor (private readonly src: Source) {}
  add (path: readonly PathSeg[], message: string): void {
    const { line, column } = locate(this.src, path)
    this.list.push({ file: this.src.file, line, column, path: formatPath(path), message })
  }

  sorted (): PolicyError[] {
    return [...this.list].sort((a, b) => a.line - b.line || a.column - b.column)
  }
}

/** `policy.yaml:14: rules[2].effect: apply_key(hr) names an unknown key` */
export function formatPolicyError (e: PolicyError): string {
  return `${e.file}:${e.line}: ${e.path === '' ? '' : e.path + ': '}${e.message}`
}
