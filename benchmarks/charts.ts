// Benchmark charts and records: dependency-free SVG bar charts of each measurement's ratio to its baseline (one per area), the readers of saved runs (results.json, --json lines, HISTORY.md, RESULTS.md) they are redrawn from, and the format of HISTORY.md's run sections and of RESULTS.md generated from them.
import fs from 'node:fs'
import path from 'node:path'
import type { Measurement } from './harness'

/** The run a set of measurements came from, as recorded in benchmarks/results.json. */
export interface RunInfo { date: string, commit: string, quick: boolean, machine: Record<string, string> }

/** benchmarks/results.json: per area, the measurements of the latest `--write` run that measured it. */
export interface SavedResults { format: 1, areas: Record<string, { run: RunInfo | null, measurements: Measurement[] }> }

export interface Bar {
  label: string
  ratio: number
  /** Grey text after the ratio: the two values and what the baseline is. */
  detail: string
  /** true: on the good side of 1.0x for its unit; false: on the bad side; null: exactly 1. */
  better: boolean | null
}

export interface BarChart { title: string, subtitle: string, axisLabel: string, bars: Bar[], note?: string }

/** Units where a smaller value is better (latency, memory against a budget, CPU share, convergence time). */
const LOWER_IS_BETTER = new Set(['ns', 'us', 'µs', 'ms', 's', 'KiB', 'MiB', 'GiB', '% of a core', 'intervals'])

export function lowerIsBetter (unit: string): boolean { return LOWER_IS_BETTER.has(unit) }

/** The number format of the printed table and of HISTORY.md's tables. */
export function fmtValue (x: number): string {
  return Math.abs(x) >= 100 ? x.toFixed(0) : Math.abs(x) >= 1 ? x.toFixed(2) : x.toPrecision(3)
}

export function fmtRatio (r: number): string {
  return `${r >= 10 ? r.toFixed(1) : r >= 1 ? r.toFixed(2) : r >= 0.001 ? r.toFixed(3) : r.toExponential(1)}×`
}

/** Text for XML content and attribute values: the five special characters escaped, characters XML 1.0 forbids dropped. */
export function esc (s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/g, '')
    .replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;')
}

// Layout, in px. Text widths are estimated (no font metrics in a static file): 0.55 em per character is generous for
// the sans-serif faces GitHub's viewers fall back to, so labels do not run into the bars.
const FONT = 12
const CHAR_W = FONT * 0.55
const ROW_H = 22
const BAR_H = 14
const PAD = 16
const PLOT_W = 360
const MAX_LABEL_CHARS = 64
const COLORS = { text: '#1f2328', muted: '#59636e', grid: '#d1d9e0', stripe: '#f6f8fa', ref: '#1f2328', better: '#0969da', worse: '#bc4c00', even: '#59636e' }

function textWidth (s: string): number { return s.length * CHAR_W }

function clip (s: string, n: number): string { return s.length <= n ? s : s.slice(0, n - 1) + '…' }

/** Ticks of a log axis: 1-2-5 per decade, or decades only when that would be more than 9 ticks. */
function logTicks (lo: number, hi: number): number[] {
  const all: number[] = []
  for (let e = Math.floor(Math.log10(lo)) - 1; e <= Math.ceil(Math.log10(hi)) + 1; e++) {
    for (const m of [1, 2, 5]) {
      const v = Number((m * 10 ** e).toPrecision(1))
      if (v >= lo * 0.999 && v <= hi * 1.001) all.push(v)
    }
  }
  return all.length > 9 ? all.filter(v => Number.isInteger(Math.log10(v))) : all
}

/** The axis range: from a 1-2-5 step at or below the smallest ratio to one at or above the largest, 1.0 well inside. */
function domain (ratios: number[]): [number, number] {
  const step = (v: number, up: boolean): number => {
    const e = Math.floor(Math.log10(v))
    const cands = [1, 2, 5, 10].map(m => m * 10 ** e)
    return up ? cands.find(c => c >= v * 0.999) ?? 10 ** (e + 1) : [...cands].reverse().find(c => c <= v * 1.001) ?? 10 ** e
  }
  const lo = Math.max(1e-3, Math.min(0.5, ...ratios))
  const hi = Math.min(1e3, Math.max(2, ...ratios))
  return [step(lo, false), step(hi, true)]
}

/** A horizontal bar chart on a log scale centred on the 1.0× reference line: bars grow right above 1, left below. */
export function barChartSvg (c: BarChart): string {
  const bars = c.bars.filter(b => Number.isFinite(b.ratio))
  const labels = bars.map(b => clip(b.label, MAX_LABEL_CHARS))
  const values = bars.map(b => `${fmtRatio(b.ratio)}  ${b.detail}`)
  const labelW = Math.ceil(Math.max(120, ...labels.map(textWidth))) + PAD
  const valueW = Math.ceil(Math.max(80, ...values.map(textWidth))) + PAD
  const [lo, hi] = domain(bars.map(b => b.ratio).filter(r => r > 0))
  const x0 = PAD + labelW
  const x = (r: number): number => x0 + PLOT_W * (Math.log(Math.min(hi, Math.max(lo, r))) - Math.log(lo)) / (Math.log(hi) - Math.log(lo))
  const top = 74
  const plotH = Math.max(1, bars.length) * ROW_H
  const legendW = 2 * (14 + 18) + textWidth('better than its baseline') + textWidth('worse than its baseline') + textWidth(c.note ?? '')
  const width = Math.ceil(Math.max(x0 + PLOT_W + 12 + valueW, PAD + legendW, PAD + textWidth(c.subtitle), PAD + textWidth(c.title) * 16 / FONT) + PAD)
  const height = top + plotH + 52
  const out: string[] = []
  const n = (v: number): string => (Math.round(v * 10) / 10).toString()
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-labelledby="t d" font-family="-apple-system, 'Segoe UI', Helvetica, Arial, sans-serif" font-size="${FONT}">`)
  out.push(`<title id="t">${esc(c.title)}</title>`)
  out.push(`<desc id="d">${esc(`${c.subtitle}. ${bars.map(b => `${b.label}: ${fmtRatio(b.ratio)}`).join('; ')}`)}</desc>`)
  out.push(`<rect width="${width}" height="${height}" fill="#ffffff"/>`)
  out.push(`<text x="${PAD}" y="26" font-size="16" font-weight="600" fill="${COLORS.text}">${esc(c.title)}</text>`)
  out.push(`<text x="${PAD}" y="46" fill="${COLORS.muted}">${esc(c.subtitle)}</text>`)
  // Legend.
  const ly = 62
  out.push(`<rect x="${PAD}" y="${ly - 9}" width="10" height="10" fill="${COLORS.better}"/><text x="${PAD + 14}" y="${ly}" fill="${COLORS.text}">better than its baseline</text>`)
  const lx = PAD + 14 + textWidth('better than its baseline') + 18
  out.push(`<rect x="${n(lx)}" y="${ly - 9}" width="10" height="10" fill="${COLORS.worse}"/><text x="${n(lx + 14)}" y="${ly}" fill="${COLORS.text}">worse than its baseline</text>`)
  if (c.note !== undefined) out.push(`<text x="${n(lx + 14 + textWidth('worse than its baseline') + 18)}" y="${ly}" fill="${COLORS.muted}">${esc(c.note)}</text>`)
  // Stripes, grid and ticks.
  bars.forEach((_, i) => { if (i % 2 === 1) out.push(`<rect x="${PAD}" y="${top + i * ROW_H}" width="${width - 2 * PAD}" height="${ROW_H}" fill="${COLORS.stripe}"/>`) })
  for (const t of logTicks(lo, hi)) {
    const tx = n(x(t))
    out.push(`<line x1="${tx}" y1="${top}" x2="${tx}" y2="${top + plotH}" stroke="${COLORS.grid}" stroke-width="1"/>`)
    out.push(`<text x="${tx}" y="${top + plotH + 16}" text-anchor="middle" fill="${COLORS.muted}">${esc(fmtRatio(t).replace(/\.?0+×$/, '×'))}</text>`)
  }
  // Bars: from the 1.0× line to the ratio (clamped to the axis; a clamped bar ends in an arrow mark).
  const one = x(1)
  bars.forEach((b, i) => {
    const y = top + i * ROW_H
    const cy = y + ROW_H / 2
    const end = x(b.ratio)
    const color = b.better === null ? COLORS.even : b.better ? COLORS.better : COLORS.worse
    let bx = Math.min(one, end)
    let bw = Math.abs(end - one)
    if (bw < 1.5) { bx = one - 0.75; bw = 1.5 } // a ratio of (about) 1: a thin mark on the line
    out.push(`<text x="${x0 - 8}" y="${n(cy + 4)}" text-anchor="end" fill="${COLORS.text}">${b.label.length > MAX_LABEL_CHARS ? `<title>${esc(b.label)}</title>` : ''}${esc(labels[i])}</text>`)
    out.push(`<rect class="bar" data-ratio="${b.ratio}" x="${n(bx)}" y="${n(cy - BAR_H / 2)}" width="${n(bw)}" height="${BAR_H}" fill="${color}"><title>${esc(`${b.label}: ${fmtRatio(b.ratio)} ${b.detail}`)}</title></rect>`)
    if (b.ratio < lo || b.ratio > hi) { // off the axis: an arrow head past the clamped end
      const d = b.ratio < lo ? -1 : 1
      out.push(`<path d="M${n(end)} ${n(cy - BAR_H / 2)} l${6 * d} ${BAR_H / 2} l${-6 * d} ${BAR_H / 2} z" fill="${color}"/>`)
    }
    out.push(`<text x="${n(x0 + PLOT_W + 12)}" y="${n(cy + 4)}" fill="${COLORS.text}"><tspan font-weight="600">${esc(fmtRatio(b.ratio))}</tspan><tspan dx="8" fill="${COLORS.muted}">${esc(b.detail)}</tspan></text>`)
  })
  if (bars.length === 0) out.push(`<text x="${x0 + PLOT_W / 2}" y="${top + ROW_H / 2 + 4}" text-anchor="middle" fill="${COLORS.muted}">no measurement with a baseline</text>`)
  // The 1.0× reference line on top of the bars, and the axis label.
  out.push(`<line x1="${n(one)}" y1="${top - 4}" x2="${n(one)}" y2="${top + plotH + 4}" stroke="${COLORS.ref}" stroke-width="1.5"/>`)
  out.push(`<text x="${n(x0 + PLOT_W / 2)}" y="${top + plotH + 38}" text-anchor="middle" fill="${COLORS.text}">${esc(c.axisLabel)}</text>`)
  out.push('</svg>')
  return out.join('\n') + '\n'
}

/** One bar per measurement with a ratio, in the order measured. */
export function barsOf (ms: Measurement[]): Bar[] {
  return ms.filter(m => m.ratio !== null && Number.isFinite(m.ratio)).map(m => {
    const r = m.ratio as number
    const dir = lowerIsBetter(m.unit) ? -1 : 1
    return {
      label: m.name,
      ratio: r,
      detail: `${fmtValue(m.value)} vs ${m.baseline_value === null ? '-' : fmtValue(m.baseline_value)} ${m.unit} (${m.baseline ?? '-'})`,
      better: r === 1 ? null : (r > 1 ? dir > 0 : dir < 0)
    }
  })
}

export function describeRun (run: RunInfo | null): string {
  if (run === null) return 'from a saved --json run'
  return `run ${run.date.replace(/:\d\d(\.\d+)?Z$/, 'Z')}, commit ${run.commit}${run.quick ? ' (quick: tiny sizes)' : ''}${run.machine.cpu !== undefined ? `, ${run.machine.cpu}` : ''}`
}

/** The chart of one area; null when none of its measurements has a ratio. */
export function areaChart (area: string, ms: Measurement[], run: RunInfo | null): BarChart | null {
  const mine = ms.filter(m => m.area === area && m.ratio !== null)
  const bars = barsOf(mine)
  if (bars.length === 0) return null
  const lower = [...new Set(mine.map(m => m.unit).filter(lowerIsBetter))]
  return {
    note: lower.length === 0 ? 'higher is better for every unit here' : `lower is better for ${lower.join(', ')}; higher for the rest`,
    title: `${area}: each measurement against its baseline, same run`,
    subtitle: describeRun(run),
    axisLabel: 'ratio value / baseline (log scale; the dark line is 1.0×, the baseline)',
    bars
  }
}

/**
 * Writes DIR/<area>.svg for every area of `ms` that has a ratio; `runOf` names the run each area's numbers came from.
 * Returns the files written. Areas without measurements keep their previous chart.
 */
export function writeCharts (ms: Measurement[], dir: string, runOf: (area: string) => RunInfo | null = () => null): string[] {
  const areas = [...new Set(ms.map(m => m.area))]
  const written: string[] = []
  for (const area of areas) {
    const chart = areaChart(area, ms, runOf(area))
    if (chart === null) continue
    fs.mkdirSync(dir, { recursive: true })
    const file = path.join(dir, `${area.replace(/[^A-Za-z0-9_-]/g, '_')}.svg`)
    fs.writeFileSync(file, barChartSvg(chart))
    written.push(file)
  }
  return written
}

/** results.json text: one line per measurement, so a new run's diff reads measurement by measurement. */
export function savedJson (saved: SavedResults): string {
  const areas = Object.entries(saved.areas).map(([area, a]) =>
    `  ${JSON.stringify(area)}: {\n    "run": ${JSON.stringify(a.run)},\n    "measurements": [\n${a.measurements.map(m => `      ${JSON.stringify(m)}`).join(',\n')}\n    ]\n  }`)
  return `{\n "format": 1,\n "areas": {\n${areas.join(',\n')}\n }\n}\n`
}

/** Adds a run's areas to saved results, replacing those areas' earlier measurements. */
export function mergeResults (saved: SavedResults | null, ms: Measurement[], run: RunInfo | null): SavedResults {
  const out: SavedResults = { format: 1, areas: { ...(saved?.areas ?? {}) } }
  for (const area of new Set(ms.map(m => m.area))) out.areas[area] = { run, measurements: ms.filter(m => m.area === area) }
  return out
}

function isMeasurement (v: unknown): v is Measurement {
  const m = v as Measurement
  return typeof m === 'object' && m !== null && typeof m.area === 'string' && typeof m.name === 'string' && typeof m.value === 'number' &&
    typeof m.unit === 'string' && (m.ratio === null || typeof m.ratio === 'number')
}

/**
 * Reads saved results in any of four forms: benchmarks/results.json; the lines of `npm run bench -- --json` (lines
 * that are not JSON objects, such as npm's banner, are skipped); HISTORY.md or RESULTS.md, from which each area's
 * latest run is taken (see resultsFromMarkdown; its table values are the rounded ones printed there).
 */
export function readSaved (text: string): SavedResults {
  if (/^### Run /m.test(text)) return resultsFromMarkdown(text)
  try {
    const v = JSON.parse(text) as SavedResults
    if (v.format === 1 && typeof v.areas === 'object' && v.areas !== null) return v
  } catch { /* not one document: JSON lines */ }
  const ms: Measurement[] = []
  for (const line of text.split('\n')) {
    if (!line.trimStart().startsWith('{')) continue
    const v = JSON.parse(line) as unknown
    if (isMeasurement(v)) ms.push(v)
  }
  return mergeResults(null, ms, null)
}

// The run sections of benchmarks/HISTORY.md and RESULTS.md: `### Run DATE — commit C[ (quick)][ (SCOPE only)]`, the
// machine facts as `- key: value` lines, one table of measurements, a `Charts:` line, and any hand-written notes.

const TABLE_HEAD = ['| area | measurement | value | unit | baseline | baseline value | ratio |', '|---|---|---|---|---|---|---|']
const RUN_HEADING = /^### Run (\S+) — commit (\S+)( \(quick\))?(?: \(([^)]+) only\))?/

/** The section of one run, as `npm run bench -- --write` records it in HISTORY.md. */
export function runSection (ms: Measurement[], run: RunInfo, charts: string[]): string {
  return [`### Run ${run.date} — commit ${run.commit}${run.quick ? ' (quick)' : ''}`, '',
    ...Object.entries(run.machine).map(([k, v]) => `- ${k}: ${v}`), '', ...TABLE_HEAD,
    ...ms.map(r => `| ${r.area} | ${r.name}${r.note === undefined ? '' : ` (${r.note})`} | ${fmtValue(r.value)} | ${r.unit} | ${r.baseline ?? '-'} | ${r.baseline_value === null ? '-' : fmtValue(r.baseline_value)} | ${r.ratio ?? '-'} |`),
    ...(charts.length === 0 ? [] : ['', `Charts: ${charts.map(f => `[${path.basename(f, '.svg')}](charts/${path.basename(f)})`).join(', ')}`])].join('\n') + '\n'
}

/** The cells of a measurement row of a run's table; null for any other line (the table's head included). */
function rowCells (line: string): string[] | null {
  if (!line.startsWith('|')) return null
  const cells = line.split('|').slice(1, -1).map(s => s.trim())
  return cells.length !== 7 || cells[0] === 'area' || cells[0].startsWith('---') ? null : cells
}

/** One run section of a results file. `partial`: it measured one benchmark of its area (`(AREA/BENCH only)`). */
interface RunText { run: RunInfo, partial: boolean, areas: string[], measurements: Measurement[], text: string }

/** The text before the first run section (the file's header), and each run section in file order, each ending in one newline. */
export function splitRuns (text: string): { header: string, sections: string[] } {
  const parts = text.split(/^(?=### Run )/m)
  const header = parts[0].startsWith('### Run ') ? '' : parts.shift() as string
  return { header, sections: parts.map(s => s.replace(/\n*$/, '\n')) }
}

function parseRun (text: string): RunText | null {
  const head = RUN_HEADING.exec(text)
  if (head === null) return null
  const machine: Record<string, string> = {}
  const lines = text.split('\n')
  const tableAt = lines.findIndex(l => l.startsWith('|'))
  for (const l of lines.slice(0, tableAt === -1 ? lines.length : tableAt)) {
    const fact = /^- ([a-z]+): (.*)$/.exec(l)
    if (fact !== null) machine[fact[1]] = fact[2]
  }
  const measurements: Measurement[] = []
  for (const line of lines) {
    const cells = rowCells(line)
    if (cells === null) continue
    const num = (s: string): number | null => s === '-' ? null : Number(s)
    const value = Number(cells[2])
    if (!Number.isFinite(value)) continue
    measurements.push({ area: cells[0], name: cells[1], value, unit: cells[3], baseline: cells[4] === '-' ? null : cells[4], baseline_value: num(cells[5]), ratio: num(cells[6]) })
  }
  return {
    run: { date: head[1], commit: head[2], quick: head[3] !== undefined, machine },
    partial: head[4] !== undefined,
    areas: [...new Set(measurements.map(x => x.area))],
    measurements,
    text
  }
}

/** The runs of a results file, oldest first (by date: HISTORY.md lists them newest first, RESULTS.md by area). */
function runsOf (text: string): RunText[] {
  const runs = splitRuns(text).sections.map(parseRun).filter((r): r is RunText => r !== null)
  return runs.map((r, i) => ({ r, i })).sort((a, b) => a.r.run.date < b.r.run.date ? -1 : a.r.run.date > b.r.run.date ? 1 : b.i - a.i).map(x => x.r)
}

/** Per area, its latest full run and the partial runs after it, oldest first. */
function latestRuns (runs: RunText[]): Map<string, RunText[]> {
  const out = new Map<string, RunText[]>()
  for (const r of runs) {
    for (const area of r.areas) out.set(area, r.partial && out.has(area) ? [...(out.get(area) as RunText[]), r] : [r])
  }
  return out
}

/**
 * Each area's measurements from its latest run in HISTORY.md or RESULTS.md (either order). A partial run (headed
 * `(AREA/BENCH only)`) does not replace its area: its measurements replace those of the same name and add the others;
 * the area's run stays the full one.
 */
export function resultsFromMarkdown (text: string): SavedResults {
  const saved: SavedResults = { format: 1, areas: {} }
  for (const [area, runs] of latestRuns(runsOf(text))) {
    const byName = new Map<string, Measurement>()
    for (const r of runs) for (const x of r.measurements) if (x.area === area) byName.set(x.name, x)
    saved.areas[area] = { run: runs[0].run, measurements: [...byName.values()] }
  }
  return saved
}

export const HISTORY_HEADER = `# Benchmark history

Every run of \`npm run bench -- --write\`, newest first: the machine, the commit, the measurements and any notes
written under them. [RESULTS.md](RESULTS.md) shows each area's latest run and is regenerated from this file
(\`npm run bench -- --results\`); hand-written notes and runs go here. A run headed \`(AREA/BENCH only)\` measured one
benchmark of its area: it adds to the area's latest full run instead of replacing it. Ratios are value / baseline
measured in the same run.
`

/** HISTORY.md with a new run section first (a missing or empty history gets the header). */
export function prependRun (history: string | null, section: string): string {
  const { header, sections } = splitRuns(history ?? '')
  return [header.trim() === '' ? HISTORY_HEADER : header.replace(/\n*$/, '\n'), ...[section, ...sections].map(s => s.replace(/\n*$/, '\n'))].join('\n')
}

/** A run section cut down to one area: the other areas' rows and chart links are dropped, everything else is kept. */
function sectionOfArea (text: string, area: string): string {
  return text.split('\n').flatMap(line => {
    const cells = rowCells(line)
    if (cells !== null) return cells[0] === area ? [line] : []
    if (!line.startsWith('Charts: ')) return [line]
    const mine = line.slice('Charts: '.length).split(', ').filter(l => l.startsWith(`[${area}](`))
    return mine.length === 0 ? [] : [`Charts: ${mine.join(', ')}`]
  }).join('\n').replace(/\n{3,}/g, '\n\n').replace(/\n*$/, '\n')
}

/**
 * RESULTS.md from HISTORY.md: a header, then per area (in \`order\`, areas not in it after, by name) its latest run as
 * HISTORY.md has it, cut down to that area, with the partial runs after it above it.
 */
export function resultsMarkdown (history: string, order: readonly string[]): string {
  const latest = latestRuns(runsOf(history))
  const rank = (a: string): number => order.includes(a) ? order.indexOf(a) : order.length
  const areas = [...latest.keys()].sort((a, b) => rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0))
  const head = `# Benchmark results

Each benchmark area's latest run, in the order of \`npm run bench -- --help\`; a run of one benchmark of an area
(headed \`(AREA/BENCH only)\`) stands above the full run it adds to. Generated from [HISTORY.md](HISTORY.md), which
keeps every run, newest first: \`npm run bench -- --write\` adds a run there and regenerates this file;
\`npm run bench -- --results\` regenerates it without measuring. Do not edit this file: notes go under their run in
HISTORY.md. Ratios are value / baseline measured in the same run.

Areas: ${areas.map(a => `[${a}](#${a.toLowerCase().replace(/[^a-z0-9 -]/g, '').replace(/ /g, '-')})`).join(', ')}
`
  const parts = areas.map(area => `## ${area}\n\n` +
    [...(latest.get(area) as RunText[])].reverse().map(r => sectionOfArea(r.text, area)).join('\n'))
  return [head, ...parts].join('\n')
}

/** All measurements of saved results, and the run of each area, for writeCharts. */
export function flatten (saved: SavedResults): { ms: Measurement[], runOf: (area: string) => RunInfo | null } {
  return { ms: Object.values(saved.areas).flatMap(a => a.measurements), runOf: area => saved.areas[area]?.run ?? null }
}
