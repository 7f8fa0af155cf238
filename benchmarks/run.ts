// Benchmark runner: `npm run bench [-- --only AREA[,AREA]] [--json] [--quick] [--write] [--results] [--charts-only FILE]`.
// Runs every benchmarks/<area>/*.bench.ts, prints a table (or one JSON object per line), and with --write
// adds the run to benchmarks/HISTORY.md (newest first) with the machine facts, regenerates benchmarks/RESULTS.md (each
// area's latest run) from it, keeps the raw measurements in benchmarks/results.json and draws
// benchmarks/charts/<area>.svg (benchmarks/charts.ts has the formats).
import fs from 'node:fs'
import path from 'node:path'
import { execFileSync } from 'node:child_process'
import { flatten, fmtValue as fmt, mergeResults, prependRun, readSaved, resultsMarkdown, runSection, savedJson, writeCharts, type RunInfo, type SavedResults } from './charts'
import { Progress } from '../lib/cli/progress'
import { machineFacts, ratio, type BenchFn, type Measurement } from './harness'

const AREAS = ['engine', 'decisions', 'data', 'fs', 'cluster', 'lb', 'soak', 'wire'] as const
const SOURCE_DIR = path.join(__dirname, '../../benchmarks') // run from dist/benchmarks
const RESULTS_JSON = path.join(SOURCE_DIR, 'results.json')
const CHARTS_DIR = path.join(SOURCE_DIR, 'charts')
const HISTORY_MD = path.join(SOURCE_DIR, 'HISTORY.md')
const RESULTS_MD = path.join(SOURCE_DIR, 'RESULTS.md')

function usage (msg?: string): never {
  if (msg !== undefined) process.stderr.write(`error: ${msg}\n`)
  process.stderr.write('usage: npm run bench -- [--only AREA[,AREA]] [--json] [--quick] [--write] [--results] [--charts-only FILE]\n' +
    `  areas: ${AREAS.join(', ')}\n  --json   one JSON object per measurement\n  --quick  tiny sizes (smoke test)\n` +
    '  --write  add the run first in benchmarks/HISTORY.md and regenerate benchmarks/RESULTS.md (each area\'s latest run)\n' +
    '           from it, keep the results in benchmarks/results.json (per area, the latest run) and draw\n' +
    '           benchmarks/charts/AREA.svg for the areas that ran\n' +
    '  --results  measure nothing: regenerate benchmarks/RESULTS.md from benchmarks/HISTORY.md (after editing a note there)\n' +
    '  --charts-only FILE  measure nothing: redraw the charts from FILE (benchmarks/results.json, the output of --json,\n' +
    '           HISTORY.md or RESULTS.md: each area\'s latest run); the areas drawn are also recorded in\n' +
    '           benchmarks/results.json\n')
  process.exit(msg === undefined ? 0 : 2)
}

interface Options { only: string[] | null, json: boolean, quick: boolean, write: boolean, results: boolean, chartsOnly: string | null }

function parseArgs (argv: string[]): Options {
  const o: Options = { only: null, json: false, quick: process.env.BENCH_QUICK === '1', write: false, results: false, chartsOnly: null }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--only') {
      const v = argv[++i]
      if (v === undefined) usage('--only needs an area')
      o.only = v.split(',')
      for (const x of o.only) if (!(AREAS as readonly string[]).includes(x)) usage(`unknown area '${x}'`)
    } else if (a === '--json') o.json = true
    else if (a === '--quick') o.quick = true
    else if (a === '--write') o.write = true
    else if (a === '--results') o.results = true
    else if (a === '--charts-only') {
      const v = argv[++i]
      if (v === undefined) usage('--charts-only needs a file')
      o.chartsOnly = v
    }
    else if (a === '--help' || a === '-h') usage()
    else usage(`unknown option '${a}'`)
  }
  return o
}

async function main (): Promise<void> {
  const opts = parseArgs(process.argv.slice(2))
  if (opts.chartsOnly !== null) { redraw(opts.chartsOnly, opts.only); return }
  if (opts.results) { writeRun(null); return }
  const results: Measurement[] = []
  const files = AREAS.filter(area => (opts.only === null || opts.only.includes(area)) && fs.existsSync(path.join(__dirname, area)))
    .flatMap(area => fs.readdirSync(path.join(__dirname, area)).filter(f => f.endsWith('.bench.js')).sort().map(file => ({ area, file })))
  const progress = new Progress({ total: files.length, label: 'bench', unit: 'items' }) // on stderr: stdout stays the report
  for (const [i, { area, file }] of files.entries()) {
    progress.update(i)
    const mod = require(path.join(__dirname, area, file)) as { run?: BenchFn }
    if (typeof mod.run !== 'function') continue
    if (!opts.json) process.stdout.write(`\n## ${area}/${file.replace(/\.bench\.js$/, '')}\n`)
    await mod.run({
      area,
      quick: opts.quick,
      log: line => { if (!opts.json) process.stdout.write(`   ${line}\n`) },
      report: m => {
        const full: Measurement = { area, ...m, ratio: m.ratio ?? ratio(m.value, m.baseline_value) }
        results.push(full)
        if (opts.json) process.stdout.write(JSON.stringify(full) + '\n')
        else process.stdout.write(`   ${full.name.padEnd(48)} ${fmt(full.value).padStart(12)} ${full.unit.padEnd(8)}` +
          (full.baseline === null ? '' : `  vs ${full.baseline} ${fmt(full.baseline_value ?? NaN)} = ${full.ratio ?? '-'}x`) + '\n')
      }
    })
  }
  progress.finish()
  if (opts.write) {
    let commit = 'unknown'
    try { commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim() } catch {}
    const run: RunInfo = { date: new Date().toISOString(), commit, quick: opts.quick, machine: machineFacts() }
    const charts = saveAndDraw(results, () => run)
    writeRun(runSection(results, run, charts))
  }
}

function readResultsJson (): SavedResults | null {
  if (!fs.existsSync(RESULTS_JSON)) return null
  return readSaved(fs.readFileSync(RESULTS_JSON, 'utf8'))
}

/** Records the measurements in results.json (replacing their areas) and draws their areas' charts; returns the charts. */
function saveAndDraw (ms: Measurement[], runOf: (area: string) => RunInfo | null): string[] {
  let saved = readResultsJson()
  for (const area of new Set(ms.map(m => m.area))) saved = mergeResults(saved, ms.filter(m => m.area === area), runOf(area))
  if (saved !== null) fs.writeFileSync(RESULTS_JSON, savedJson(saved))
  const charts = writeCharts(ms, CHARTS_DIR, runOf)
  for (const f of charts) process.stderr.write(`chart: ${path.relative(process.cwd(), f)}\n`)
  return charts
}

function redraw (file: string, only: string[] | null): void {
  let text: string
  try { text = fs.readFileSync(file, 'utf8') } catch (err) { usage(`cannot read ${file}: ${(err as Error).message}`) }
  const { ms: all, runOf } = flatten(readSaved(text))
  const ms = all.filter(m => only === null || only.includes(m.area))
  if (ms.length === 0) usage(`${file} holds no measurements${only === null ? '' : ` of ${only.join(', ')}`}`)
  if (path.resolve(file) === RESULTS_JSON) {
    writeCharts(ms, CHARTS_DIR, runOf).forEach(f => process.stderr.write(`chart: ${path.relative(process.cwd(), f)}\n`))
  } else saveAndDraw(ms, runOf)
}

/** Adds a run section first in HISTORY.md (none: changes nothing there) and regenerates RESULTS.md from HISTORY.md. */
function writeRun (section: string | null): void {
  const history = fs.existsSync(HISTORY_MD) ? fs.readFileSync(HISTORY_MD, 'utf8') : null
  if (section === null && history === null) usage(`${path.relative(process.cwd(), HISTORY_MD)} does not exist: nothing to regenerate from`)
  const next = section === null ? history as string : prependRun(history, section)
  if (next !== history) fs.writeFileSync(HISTORY_MD, next)
  fs.writeFileSync(RESULTS_MD, resultsMarkdown(next, AREAS))
  process.stderr.write(`results: ${path.relative(process.cwd(), RESULTS_MD)}\n`)
}

main().catch(err => { process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`); process.exit(1) })
