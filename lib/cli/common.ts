// Shared CLI plumbing: the conventions of all three programs (--version, usage errors, help, exit codes, a closed
// output pipe), one-line errors with non-zero exit, reading secrets from files or a terminal prompt, tables.
import { Command, type CommanderError } from 'commander'
import fs from 'node:fs'
import path from 'node:path'
import readline from 'node:readline'
import { didYouMean } from '../policy/nearest'
import { ERRORS, PemError } from '../wire/errors'

/** Exit code of a usage error (unknown command or option, missing argument), as most Unix tools use it (docs/ADMIN.md). */
export const USAGE_EXIT = 2

const VERSION = (JSON.parse(fs.readFileSync(path.resolve(__dirname, '../../../package.json'), 'utf8')) as { version: string }).version

/** A program with --version and the global options shown in every subcommand's help. */
export function newProgram (name: string, description: string): Command {
  return new Command(name).description(description).version(VERSION, '-V, --version', 'print the version')
    .configureHelp({ showGlobalOptions: true })
    .configureOutput({ outputError: () => {} }) // usageExit writes the one line
}

const commandPath = (cmd: Command): string => cmd.parent === null ? cmd.name() : `${commandPath(cmd.parent)} ${cmd.name()}`

/** Help and --version exit 0; a usage error is one line with a hint and exit code 2. */
function usageExit (cmd: Command, err: CommanderError): never {
  if (err.exitCode === 0) process.exit(0)
  if (err.code !== 'commander.help') process.stderr.write(`${err.message.replace(/\n+/g, ' ').trim()} (run '${commandPath(cmd)} --help')\n`)
  process.exit(USAGE_EXIT)
}

/** A command that only groups others: run without one of them (or with an unknown one) it is a usage error. */
function requireSubcommand (group: Command): void {
  group.helpCommand(true).action(() => {
    const [given] = group.args
    const names = group.commands.map(c => c.name())
    group.error(given === undefined
      ? `error: '${commandPath(group)}' needs a command: ${names.join(', ')}`
      : `error: unknown command '${given}'${didYouMean(given, names)}`)
  })
}

function everyCommand (cmd: Command): Command[] { return [cmd, ...cmd.commands.flatMap(everyCommand)] }

/**
 * Parses argv with the shared conventions; call it once every command is defined. `help A B` shows the help of the
 * command `A B` (commander's own help command goes one level only).
 */
export function parseProgram (program: Command): void {
  const groups = everyCommand(program).filter(c => c.commands.length > 0)
  program.helpCommand(false).command('help [command...]').description('show the help of a command, e.g. help policy apply')
    .action((words: string[]) => {
      let cmd = program
      for (const w of words) {
        const next = cmd.commands.find(c => c.name() === w || c.aliases().includes(w))
        if (next === undefined) cmd.error(`error: unknown command '${w}'${didYouMean(w, cmd.commands.map(c => c.name()))}`)
        else cmd = next
      }
      cmd.help()
    })
  for (const g of groups) requireSubcommand(g)
  for (const c of everyCommand(program)) c.exitOverride(err => usageExit(c, err))
  endQuietlyOnBrokenPipe()
  program.parseAsync(process.argv).catch((err: Error) => { process.stderr.write(`error: ${err.message}\n`); process.exitCode = USAGE_EXIT })
}

let brokenPipeEnds = true

/** For serving processes: a reader that went away (a closed log pipe) must not stop them. */
export function keepServingOnBrokenPipe (): void { brokenPipeEnds = false }

/** `spctl status | head -1`: when the reader closes the pipe, stop writing and end with the exit code so far. */
function endQuietlyOnBrokenPipe (): void {
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE') throw err
      if (brokenPipeEnds) process.exit(process.exitCode ?? 0)
      stream.destroy()
    })
  }
}

/** Runs a command body; any error becomes one line on stderr (and its details below) and exit code 1 (2 for bad usage). */
export function run (body: () => Promise<void>): void {
  body().then(() => { process.exitCode = process.exitCode ?? 0 }, (err: unknown) => {
    const e = PemError.from(err)
    const details = (err as { details?: unknown }).details
    const lines = Array.isArray(details) ? details.map(d => typeof d === 'string' ? d : JSON.stringify(d)) : []
    // A refusal whose message is its list of details (a policy's located errors) prints that list once.
    const headline = lines.length > 0 && e.message.split('\n').every(l => lines.includes(l)) ? ERRORS[e.code].message : e.message
    process.stderr.write(`error: ${headline} (${e.code})\n`)
    for (const line of lines) process.stderr.write(`  ${line}\n`)
    const own = (err as { exitCode?: unknown }).exitCode // a command's own convention (policy diff: 2 = invalid)
    process.exitCode = typeof own === 'number' ? own : e.code === 'PEM_ERR_BAD_ARGUMENT' ? USAGE_EXIT : 1
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
  const cell = readable
  const widths = cols.map(c => Math.max(c.length, ...rows.map(r => cell(r[c]).length)))
  const line = (vals: string[]): string => vals.map((v, i) => v.padEnd(widths[i])).join('  ').trimEnd() + '\n'
  process.stdout.write(line(cols.map(c => c.toUpperCase())))
  for (const r of rows) process.stdout.write(line(cols.map(c => cell(r[c]))))
}

/** A value as a table cell: `-` for none, lists comma-separated, objects as `name value` pairs (no JSON). */
export function readable (v: unknown): string {
  if (v === null || v === undefined) return '-'
  if (Array.isArray(v)) return v.length === 0 ? '-' : v.map(readable).join(', ')
  if (typeof v === 'object') {
    const entries = Object.entries(v as Record<string, unknown>)
    return entries.length === 0 ? '-' : entries.map(([k, x]) => `${k} ${readable(x)}`).join(', ')
  }
  return String(v)
}

export function printObject (value: Record<string, unknown>, json: boolean): void {
  if (json) { process.stdout.write(JSON.stringify(value) + '\n'); return }
  const width = Math.max(...Object.keys(value).map(k => k.length))
  for (const [k, v] of Object.entries(value)) {
    process.stdout.write(`${k.padEnd(width)}  ${readable(v)}\n`)
  }
}
