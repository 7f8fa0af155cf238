// Benchmark runner: `npm run bench [-- --only AREA[,AREA]] [--json] [--quick] [--write]`.
// Runs every benchmarks/<area>/*.bench.ts, prints a table (or one JSON object per line), and with --write
// appends the run to benchmarks/RESULTS.md with the machine facts.
import fs from 'node:fs'
import path from 'node:path'
import { execFileSync } from 'node:child_process'
import { machineFacts, ratio, type BenchFn, type Measurement } from './harness'

const AREAS = ['engine', 'decisions', 'data', 'fs', 'cluster', 'lb'] as const

function usage (msg?: string): never {
  if (msg !== undefined) process.stderr.write(`error: ${msg}\n`)
  process.stderr.write('usage: npm run bench -- [--only AREA[,AREA]] [--json] [--quick] [--write]\n' +
    `  areas: ${AREAS.join(', ')}\n  --json   one JSON object per measurement\n  --quick  tiny sizes (smoke test)\n  --write  append the results to benchmarks/RESULTS.md\n`)
  process.exit(msg === undefined ? 0 : 2)
}

function parseArgs (argv: string[]): { only: string[] | null, json: boolean, quick: boolean, write: boolean } {
  const o = { only: null as string[] | null, json: false, quick: process.env.BENCH_QUICK === '1', write: false }
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
    else if (a === '--help' || a === '-h') usage()
    else usage(`unknown option '${a}'`)
  }
  return o
}

async function main (): Promise<void> {
  const opts = parseArgs(process.argv.slice(2))
  const results: Measurement[] = []
  for (const area of AREAS) {
    if (opts.only !== null && !opts.only.includes(area)) continue
    const dir = path.join(__dirname, area)
    if (!fs.existsSync(dir)) continue
    for (const file of fs.readdirSync(dir).filter(f => f.endsWith('.bench.js')).sort()) {
      const mod = require(path.join(dir, file)) as { run?: BenchFn }
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
  }
  if (opts.write) writeResults(results, opts.quick)
}

function fmt (x: number): string { return Math.abs(x) >= 100 ? x.toFixed(0) : Math.abs(x) >= 1 ? x.toFixed(2) : x.toPrecision(3) }

function writeResults (results: Measurement[], quick: boolean): void {
  const file = path.join(__dirname, '../../benchmarks/RESULTS.md')
  let commit = 'unknown'
  try { commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim() } catch {}
  const facts = machineFacts()
  const lines = [`\n### Run ${new Date().toISOString()} — commit ${commit}${quick ? ' (quick)' : ''}\n`,
    Object.entries(facts).map(([k, v]) => `- ${k}: ${v}`).join('\n'), '',
    '| area | measurement | value | unit | baseline | baseline value | ratio |', '|---|---|---|---|---|---|---|',
    ...results.map(r => `| ${r.area} | ${r.name} | ${fmt(r.value)} | ${r.unit} | ${r.baseline ?? '-'} | ${r.baseline_value === null ? '-' : fmt(r.baseline_value)} | ${r.ratio ?? '-'} |`), '']
  if (!fs.existsSync(file)) fs.writeFileSync(file, '# Benchmark results\n\nOne section per run of `npm run bench -- --write`; ratios are value / baseline measured in the same run.\n')
  fs.appendFileSync(file, lines.join('\n'))
}

main().catch(err => { process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`); process.exit(1) })
