// `spctl policy simulate` and the check before `spctl policy apply`: replay recorded decisions under a draft policy
// (lib/policy/simulate.ts), from the member's audit (GET /v1/audit/decisions) or offline from a copied audit file,
// print what would change, and ask before an apply turns permits into denies. Docs: docs/ADMIN.md.
import fs from 'node:fs'
import readline from 'node:readline'
import { Replay, type ChangeGroup, type Outcome, type Simulation } from '../policy/simulate'
import type { CompiledPolicy } from '../policy'
import type { DecisionRecord } from '../wire/audit-record'
import { PemError } from '../wire/errors'
import { readable } from './common'

/** How far back `policy simulate` and `policy apply` replay the member's decisions unless --since says otherwise. */
export const REPLAY_WINDOW = '24h'
export const DEFAULT_EXAMPLES = 3

const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }

/** `90s`, `30m`, `24h`, `7d` in milliseconds. */
export function parseDuration (text: string, option: string): number {
  const m = /^(\d+)(s|m|h|d)$/.exec(text.trim())
  if (m === null || Number(m[1]) === 0) throw new PemError('PEM_ERR_BAD_ARGUMENT', `${option} '${text}' is not a duration: a number with s, m, h or d, e.g. 24h`)
  return Number(m[1]) * UNIT_MS[m[2]]
}

export function parseExamples (text: string): number {
  const n = Number(text)
  if (!Number.isSafeInteger(n) || n < 0 || n > 1000) throw new PemError('PEM_ERR_BAD_ARGUMENT', `--examples '${text}' must be 0..1000`)
  return n
}

/** What a simulation replayed, for its first line and the JSON `source`. */
export type ReplaySource =
  | { kind: 'member', version: number, since: string, truncated: boolean, unreadable: number }
  | { kind: 'file', file: string, since: string | null, unreadable: number }

export interface SimulationReport extends Simulation { source: ReplaySource }

/** Replays the decision records of an audit file (offline); `since` (ISO 8601) skips older ones. */
export async function replayFile (draft: CompiledPolicy, file: string, since: string | null, examples: number): Promise<SimulationReport> {
  if (!fs.existsSync(file)) throw new PemError('PEM_ERR_BAD_ARGUMENT', `no such file ${file}`)
  const { forEachDecision } = await import('../server/audit-read') // offline only: the online commands stay light
  const replay = new Replay(draft, examples)
  const counts = forEachDecision(file, r => { if (since === null || (r.ts !== undefined && r.ts >= since)) replay.add(r) })
  return { ...replay.result(), source: { kind: 'file', file, since, unreadable: counts.unreadable } }
}

/** Replays records fetched from the member against its installed policy (`baseline`). */
export function replayRecords (draft: CompiledPolicy, baseline: CompiledPolicy, records: DecisionRecord[], examples: number, source: ReplaySource): SimulationReport {
  const replay = new Replay(draft, examples, baseline)
  for (const r of records) replay.add(r)
  return { ...replay.result(), source }
}

const outcomeText = (o: Outcome): string =>
  `${o.effect} (${o.rule === null ? 'no rule' : `rule ${o.rule}`}${o.key === null ? '' : `, key ${o.key}`})`

function exampleText (r: DecisionRecord): string {
  const who = `uid ${r.uid}${r.user === undefined ? '' : ` (${r.user})`}`
  return `${r.ts ?? '-'}  ${r.action} ${r.guard.replace(/\/$/, '')}${r.path}  by ${who} ${r.exe} on host ${r.host.slice(0, 16)}${r.seq === undefined ? '' : `  [seq ${r.seq}]`}`
}

/** The summary as printed: a first line saying what was replayed, one line per change with its examples, notes. */
export function simulationText (s: SimulationReport): string {
  const src = s.source
  const what = src.kind === 'member'
    ? `${s.replayed} recorded decisions since ${src.since}, against the installed policy (version ${src.version})`
    : `${s.replayed} recorded decisions of ${src.file}${src.since === null ? '' : ` since ${src.since}`}, against what was recorded`
  const lines = [`replayed ${what}: ${s.changed === 0 ? 'no change' : `${s.changed} would change${s.permitToDeny === 0 ? '' : `, ${s.permitToDeny} of them permit -> deny`}`}`]
  const width = Math.max(0, ...s.changes.map((g: ChangeGroup) => String(g.count).length))
  for (const g of s.changes) {
    lines.push(`${String(g.count).padStart(width)}  ${outcomeText(g.from)} -> ${outcomeText(g.to)}`)
    for (const r of g.examples) lines.push(`${' '.repeat(width)}    e.g. ${exampleText(r)}`)
  }
  if (s.partial > 0) {
    lines.push(`note: ${s.partial} records lack attributes (gids, session, executable hash, auth level; lib/wire/FORMAT.md §7) and were replayed as if they had none` +
      (s.rulesTestingUnrecorded.length === 0 ? '; no rule tests those, so their replay is exact' : `; rules that test them: ${readable(s.rulesTestingUnrecorded)}`))
  }
  if (s.notAsRecorded > 0) lines.push(`note: for ${s.notAsRecorded} records the installed policy decides otherwise than recorded (made under an earlier policy, or attributes missing)`)
  if (src.kind === 'member' && src.truncated) lines.push(`note: more decisions were recorded since ${src.since}: only the newest ${s.replayed} were replayed`)
  if (src.unreadable > 0) lines.push(`note: ${src.unreadable} decision lines could not be read and were skipped`)
  return lines.join('\n') + '\n'
}

/** A yes/no question on the terminal (stderr); true only for y or yes. */
export async function confirm (question: string): Promise<boolean> {
  const rl = readline.createInterface({ input: process.stdin, output: process.stderr, terminal: true })
  try {
    const answer = await new Promise<string>(resolve => rl.question(question, resolve))
    return /^y(es)?$/i.test(answer.trim())
  } finally { rl.close() }
}
