// Shared CLI plumbing: one-line errors with non-zero exit, reading secrets from files or a terminal prompt, tables.
import fs from 'node:fs'
import readline from 'node:readline'
import { PemError } from '../wire/errors'

/** Runs a command body; any error becomes one line on stderr and exit code 1 (2 for bad usage). */
export function run (body: () => Promise<void>): void {
  body().then(() => { process.exitCode = process.exitCode ?? 0 }, (err: unknown) => {
    const e = PemError.from(err)
    process.stderr.write(`error: ${e.message} (${e.code})\n`)
    const details = (err as { details?: unknown }).details
    if (Array.isArray(details)) for (const d of details) process.stderr.write(`  ${typeof d === 'string' ? d : JSON.stringify(d)}\n`)
    process.exitCode = e.code === 'PEM_ERR_BAD_ARGUMENT' ? 2 : 1
  })
}

/** A secret from a file (first line, trimmed of its newline) or, on a terminal, a prompt that does not echo. */
export async function readSecret (file: string | undefined, prompt: string): Promise<string> {
  if (file !== undefined) {
    let text: string
    try { text = fs.readFileSync(file, 'utf8') } catch (err) { throw new PemError('PEM_ERR_BAD_ARGUMENT', `cannot read ${file}: ${(err as Error).message}`) }
    const line = text.split(/\r?\n/)[0]
    if (line.length === 0) throw new PemError('PEM_ERR_BAD_ARGUMENT', `${file} is empty`)
    return line
  }
  if (process.stdin.isTTY !== true) throw new PemError('PEM_ERR_BAD_ARGUMENT', 'no password file given and standard input is not a terminal: use --password-file FILE')
  return await new Promise(resolve => {
    const rl = readline.createInterface({ input: process.stdin, output: process.stderr, terminal: true })
    const out = rl as unknown as { _writeToOutput: (s: string) => void }
    process.stderr.write(prompt)
    out._writeToOutput = () => {}
    rl.question('', answer => { rl.close(); process.stderr.write('\n'); resolve(answer) })
  })
}

/** Prints rows as an aligned table, or as JSON with --json. */
export function printRows (rows: Array<Record<string, unknown>>, json: boolean, columns?: string[]): void {
  if (json) { process.stdout.write(JSON.stringify(rows) + '\n'); return }
  if (rows.length === 0) { process.stdout.write('(none)\n'); return }
  const cols = columns ?? Object.keys(rows[0])
  const cell = (v: unknown): string => v === null || v === undefined ? '-' : typeof v === 'object' ? JSON.stringify(v) : String(v)
  const widths = cols.map(c => Math.max(c.length, ...rows.map(r => cell(r[c]).length)))
  const line = (vals: string[]): string => vals.map((v, i) => v.padEnd(widths[i])).join('  ').trimEnd() + '\n'
  process.stdout.write(line(cols.map(c => c.toUpperCase())))
  for (const r of rows) process.stdout.write(line(cols.map(c => cell(r[c]))))
}

export function printObject (value: Record<string, unknown>, json: boolean): void {
  if (json) { process.stdout.write(JSON.stringify(value) + '\n'); return }
  const width = Math.max(...Object.keys(value).map(k => k.length))
  for (const [k, v] of Object.entries(value)) {
    process.stdout.write(`${k.padEnd(width)}  ${v === null || v === undefined ? '-' : typeof v === 'object' ? JSON.stringify(v) : String(v)}\n`)
  }
}
