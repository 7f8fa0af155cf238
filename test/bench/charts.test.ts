// Benchmark charts and records (benchmarks/charts.ts): well-formed SVG, one bar per measurement with a ratio, escaped text, the saved-run readers, HISTORY.md and the RESULTS.md generated from it.
import test from 'ava'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { spawnSync } from 'node:child_process'
import { barChartSvg, barsOf, esc, HISTORY_HEADER, mergeResults, prependRun, readSaved, resultsFromMarkdown, resultsMarkdown, runSection, savedJson, splitRuns, writeCharts, type RunInfo } from '../../benchmarks/charts'
import type { Measurement } from '../../benchmarks/harness'

const BENCHMARKS = path.join(__dirname, '../../../benchmarks') // from dist/test/bench
const CHARTS = path.join(BENCHMARKS, 'charts')

/**
 * A strict check of XML well-formedness for what the chart writer emits (no DTD, no CDATA): one root, balanced tags,
 * quoted and unique attributes, no raw `<` or stray `&` in text or attribute values, no characters XML 1.0 forbids.
 * Throws with the offset of the first fault.
 */
function checkXml (xml: string): { elements: string[] } {
  // eslint-disable-next-line no-control-regex
  const bad = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/.exec(xml)
  if (bad !== null) throw new Error(`forbidden character at ${bad.index}`)
  const entity = /&(?!(amp|lt|gt|quot|apos|#[0-9]+|#x[0-9a-fA-F]+);)/
  const stack: string[] = []
  const elements: string[] = []
  let roots = 0
  let i = 0
  const checkText = (s: string, at: number): void => {
    if (s.includes('<')) throw new Error(`raw < at ${at}`)
    if (entity.test(s)) throw new Error(`stray & at ${at}`)
  }
  while (i < xml.length) {
    const lt = xml.indexOf('<', i)
    const text = xml.slice(i, lt === -1 ? xml.length : lt)
    checkText(text, i)
    if (stack.length === 0 && text.trim() !== '') throw new Error(`text outside the root at ${i}`)
    if (lt === -1) break
    if (xml.startsWith('<?xml', lt)) { i = xml.indexOf('?>', lt) + 2; continue }
    if (xml.startsWith('<!--', lt)) { const e = xml.indexOf('-->', lt); if (e === -1) throw new Error('open comment'); i = e + 3; continue }
    const close = /^<\/([A-Za-z_][\w.:-]*)\s*>/.exec(xml.slice(lt))
    if (close !== null) {
      if (stack.pop() !== close[1]) throw new Error(`</${close[1]}> does not close the open element at ${lt}`)
      i = lt + close[0].length
      continue
    }
    const open = /^<([A-Za-z_][\w.:-]*)((?:\s+[A-Za-z_][\w.:-]*\s*=\s*(?:"[^"]*"|'[^']*'))*)\s*(\/?)>/.exec(xml.slice(lt))
    if (open === null) throw new Error(`malformed tag at ${lt}: ${xml.slice(lt, lt + 40)}`)
    const names = new Set<string>()
    for (const a of open[2].matchAll(/([A-Za-z_][\w.:-]*)\s*=\s*(?:"([^"]*)"|'([^']*)')/g)) {
      if (names.has(a[1])) throw new Error(`attribute ${a[1]} twice at ${lt}`)
      names.add(a[1])
      checkText(a[2] ?? a[3], lt)
    }
    if (stack.length === 0) roots++
    elements.push(open[1])
    if (open[3] !== '/') stack.push(open[1])
    i = lt + open[0].length
  }
  if (stack.length !== 0) throw new Error(`unclosed <${stack[stack.length - 1]}>`)
  if (roots !== 1) throw new Error(`${roots} root elements`)
  return { elements }
}

function m (name: string, value: number, unit: string, baselineValue: number | null, area = 'fs'): Measurement {
  return { area, name, value, unit, baseline: baselineValue === null ? null : 'gocryptfs', baseline_value: baselineValue, ratio: baselineValue === null ? null : Math.round(value / baselineValue * 1000) / 1000 }
}

const SAMPLE: Measurement[] = [
  m('seq write 128k plain', 1398, 'MB/s', 146),
  m('seq write 128k pemfs encrypted', 45.87, 'MB/s', 146),
  m('heartbeat bytes', 548, 'B/s', null),
  m('p99', 2.28, 'ms', 1.37),
  m('same', 4.66, 'x', 4.66),
  m('far below the axis', 1e-6, 'MB/s', 1),
  m('far above the axis', 1e6, 'MB/s', 1)
]

function chart (ms: Measurement[]): string {
  return barChartSvg({ title: 'fs <t>', subtitle: 'run x', axisLabel: 'ratio', bars: barsOf(ms) })
}

test('the chart checker refuses what is not well-formed', t => {
  for (const bad of ['<svg><g></svg>', '<svg>a < b</svg>', '<svg>a & b</svg>', '<svg a="1" a="2"/>', '<svg x=1/>', '<svg/><svg/>', '<svg>\u0001</svg>', 'text<svg/>']) {
    t.throws(() => checkXml(bad), undefined, bad)
  }
  t.notThrows(() => checkXml('<?xml version="1.0"?>\n<svg a="&amp;&#38;"><!-- c --><g/>x &lt; y</svg>\n'))
})

test('a chart is well-formed SVG with one bar per measurement that has a ratio, in order', t => {
  const svg = chart(SAMPLE)
  const { elements } = checkXml(svg)
  t.is(elements[0], 'svg')
  t.regex(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg" width="\d+" height="\d+" viewBox="0 0 \d+ \d+"/)
  const ratios = [...svg.matchAll(/<rect class="bar" data-ratio="([^"]+)"/g)].map(x => Number(x[1]))
  t.deepEqual(ratios, SAMPLE.filter(x => x.ratio !== null).map(x => x.ratio))
  t.false(svg.includes('heartbeat bytes'), 'a measurement without a baseline draws no bar or label')
  t.is([...svg.matchAll(/<path /g)].length, 2, 'the two ratios off the axis end in an arrow head')
  t.regex(svg, /1\.00×/)
  t.regex(svg, /0\.314×/)
})

test('bars are coloured by the side of 1.0x that is better for their unit', t => {
  const bars = barsOf([m('throughput up', 2, 'MB/s', 1), m('throughput down', 1, 'MB/s', 2), m('latency up', 2, 'ms', 1), m('latency down', 1, 'ms', 2), m('even', 3, 'x', 3)])
  t.deepEqual(bars.map(b => b.better), [true, false, false, true, null])
})

test('text is escaped in labels, titles and attributes', t => {
  const evil = 'a <script>alert("x")</script> & \'b\'\u0007'
  const svg = barChartSvg({ title: evil, subtitle: evil, axisLabel: evil, bars: barsOf([m(evil, 2, evil, 1)]) })
  t.notThrows(() => checkXml(svg))
  t.false(svg.includes('<script'))
  t.true(svg.includes('a &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &apos;b&apos;'))
  t.false(svg.includes('\u0007'))
  t.is(esc('<&>"\''), '&lt;&amp;&gt;&quot;&apos;')
})

test('a long label is cut with an ellipsis and kept whole in a tooltip', t => {
  const long = 'seal '.repeat(30).trim()
  const svg = chart([m(long, 2, 'MB/s', 1)])
  t.notThrows(() => checkXml(svg))
  t.regex(svg, /…<\/text>/)
  t.true(svg.includes(`<title>${long}</title>`))
})

test('writeCharts writes one file per area that has a ratio, and nothing else', t => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'charts-'))
  try {
    const files = writeCharts([...SAMPLE, m('a', 1, 'ops/s', 2, 'engine'), m('no baseline', 1, 'ops/s', null, 'lb')], dir)
    t.deepEqual(files.map(f => path.basename(f)).sort(), ['engine.svg', 'fs.svg'])
    t.deepEqual(fs.readdirSync(dir).sort(), ['engine.svg', 'fs.svg'])
    for (const f of files) t.notThrows(() => checkXml(fs.readFileSync(f, 'utf8')))
  } finally { fs.rmSync(dir, { recursive: true, force: true }) }
})

const MD = `# Benchmark results

### Run 2026-01-01T00:00:00.000Z — commit aaaaaaa

- cpu: Test CPU x 2

| area | measurement | value | unit | baseline | baseline value | ratio |
|---|---|---|---|---|---|---|
| fs | old | 1.00 | MB/s | gocryptfs | 2.00 | 0.5 |
| engine | seal | 0.0280 | MB/s | openssl speed | 1.00 | 0.028 |

### Run 2026-01-02T00:00:00.000Z — commit bbbbbbb (quick)

- cpu: Test CPU x 2

| area | measurement | value | unit | baseline | baseline value | ratio |
|---|---|---|---|---|---|---|
| fs | new | 3.00 | MB/s | gocryptfs | 2.00 | 1.5 |
| fs | walk | 296 | ops/s | - | - | - |
`

test('a results file gives each area its latest run, oldest or newest first', t => {
  const s = resultsFromMarkdown(MD)
  const { header, sections } = splitRuns(MD)
  t.is(header, '# Benchmark results\n\n')
  t.is(sections.length, 2)
  t.deepEqual(resultsFromMarkdown(header + [...sections].reverse().join('\n')), s)
  t.deepEqual(Object.keys(s.areas).sort(), ['engine', 'fs'])
  t.deepEqual(s.areas.fs.measurements.map(x => x.name), ['new', 'walk'])
  t.like(s.areas.fs.run, { commit: 'bbbbbbb', quick: true, machine: { cpu: 'Test CPU x 2' } })
  t.like(s.areas.engine.run, { commit: 'aaaaaaa', quick: false })
  t.deepEqual(s.areas.fs.measurements[1], { area: 'fs', name: 'walk', value: 296, unit: 'ops/s', baseline: null, baseline_value: null, ratio: null })
  t.is(s.areas.engine.measurements[0].value, 0.028)
})

test('results.json and --json lines read back', t => {
  const s = resultsFromMarkdown(MD)
  t.deepEqual(readSaved(savedJson(s)), s)
  t.deepEqual(readSaved(MD), s)
  const lines = '\n> pemfs-spd@0.1.0 bench\n> tsc && node dist/benchmarks/run.js --json\n\n' + SAMPLE.map(x => JSON.stringify(x)).join('\n') + '\n'
  const fromLines = readSaved(lines)
  t.deepEqual(fromLines.areas.fs.measurements, SAMPLE)
  t.is(fromLines.areas.fs.run, null)
  const merged = mergeResults(s, [m('newer', 1, 'MB/s', 1)], null)
  t.deepEqual(merged.areas.fs.measurements.map(x => x.name), ['newer'])
  t.is(merged.areas.engine.measurements.length, 1, 'other areas are kept')
})

test('the committed charts are well-formed and match benchmarks/results.json', t => {
  const saved = readSaved(fs.readFileSync(path.join(CHARTS, '../results.json'), 'utf8'))
  const files = fs.readdirSync(CHARTS).filter(f => f.endsWith('.svg'))
  t.true(files.length > 0)
  for (const f of files) {
    const svg = fs.readFileSync(path.join(CHARTS, f), 'utf8')
    t.notThrows(() => checkXml(svg), f)
    const area = path.basename(f, '.svg')
    const bars = [...svg.matchAll(/<rect class="bar" data-ratio="([^"]+)"/g)].map(x => Number(x[1]))
    t.deepEqual(bars, (saved.areas[area]?.measurements ?? []).filter(x => x.ratio !== null).map(x => x.ratio), f)
  }
})

const RUN: RunInfo = { date: '2026-01-03T00:00:00.000Z', commit: 'ccccccc', quick: false, machine: { cpu: 'Test CPU x 2', node: 'v20' } }

/** A history of two runs (engine and fs; then fs, with a note under it), newest first, as --write leaves it. */
function history (): string {
  const older = runSection([m('seal', 0.028, 'MB/s', 1, 'engine'), m('old', 1, 'MB/s', 2)], { ...RUN, date: '2026-01-01T00:00:00.000Z', commit: 'aaaaaaa' }, ['charts/engine.svg', 'charts/fs.svg'])
  const newer = runSection([m('new', 3, 'MB/s', 2)], { ...RUN, date: '2026-01-02T00:00:00.000Z', commit: 'bbbbbbb' }, ['charts/fs.svg']) + '\nA note on the fs run.\n'
  return prependRun(prependRun(null, older), newer)
}

/** The `## AREA` sections of a RESULTS.md text, by area. */
function areaSections (results: string): Record<string, string> {
  return Object.fromEntries(results.split(/^(?=## )/m).slice(1).map(s => [/^## (\S+)/.exec(s)?.[1] as string, s]))
}

test('a run section reads back as it was written, with its machine facts', t => {
  const ms = [m('seal', 0.028, 'MB/s', 1, 'engine'), m('walk', 296, 'ops/s', null, 'engine'), { ...m('p99', 2.28, 'ms', 1.37, 'engine'), note: 'target 2' }]
  const section = runSection(ms, RUN, ['/anywhere/charts/engine.svg'])
  t.regex(section, /^### Run 2026-01-03T00:00:00\.000Z — commit ccccccc\n\n- cpu: Test CPU x 2\n- node: v20\n\n\| area \|/)
  t.true(section.endsWith('\n\nCharts: [engine](charts/engine.svg)\n'))
  const back = resultsFromMarkdown(section).areas.engine
  t.deepEqual(back.run, RUN)
  t.deepEqual(back.measurements.map(x => x.name), ['seal', 'walk', 'p99 (target 2)'])
  t.is(back.measurements[0].value, 0.028)
})

test('HISTORY.md: a new run lands first, the older sections are kept byte for byte', t => {
  const h = history()
  t.true(h.startsWith(HISTORY_HEADER + '\n### Run 2026-01-02T00:00:00.000Z — commit bbbbbbb\n'))
  const { sections } = splitRuns(h)
  t.deepEqual(sections.map(s => /commit (\S+)/.exec(s)?.[1]), ['bbbbbbb', 'aaaaaaa'])
  const third = runSection([m('seal', 2, 'MB/s', 1, 'engine')], RUN, [])
  const h3 = prependRun(h, third)
  t.deepEqual(splitRuns(h3).sections, [third, ...sections])
  t.is(splitRuns(h3).header, splitRuns(h).header, 'an existing header is kept')
})

test('RESULTS.md: one section per area in the given order, each with its latest run cut to that area, notes kept', t => {
  const results = resultsMarkdown(history(), ['fs', 'engine'])
  const areas = areaSections(results)
  t.deepEqual(Object.keys(areas), ['fs', 'engine'])
  t.regex(results, /^# Benchmark results\n/)
  t.true(results.includes('Areas: [fs](#fs), [engine](#engine)\n'))
  t.regex(areas.fs, /commit bbbbbbb/)
  t.notRegex(areas.fs, /commit aaaaaaa|\| old \|/)
  t.regex(areas.fs, /\| fs \| new \| 3\.00 \| MB\/s \|/)
  t.regex(areas.fs, /A note on the fs run\.\n/)
  t.regex(areas.fs, /- cpu: Test CPU x 2\n/)
  t.regex(areas.engine, /commit aaaaaaa/)
  t.notRegex(areas.engine, /\| fs \|/, "the other area's rows of a shared run are left out")
  t.true(areas.engine.includes('Charts: [engine](charts/engine.svg)\n'), "and its other area's chart link")
  t.notRegex(areas.engine, /A note on the fs run/)
  t.deepEqual(Object.keys(areaSections(resultsMarkdown(history(), ['engine']))), ['engine', 'fs'], 'areas not in the order come after it')
})

test('a new run for one area replaces only that area\'s section of RESULTS.md; regenerating changes nothing', t => {
  const before = resultsMarkdown(history(), ['engine', 'fs'])
  const h = prependRun(history(), runSection([m('seal', 2, 'MB/s', 1, 'engine')], RUN, ['charts/engine.svg']))
  const after = resultsMarkdown(h, ['engine', 'fs'])
  t.is(splitRuns(h).sections[0].split('\n')[0], '### Run 2026-01-03T00:00:00.000Z — commit ccccccc')
  const [a, b] = [areaSections(before), areaSections(after)]
  t.is(b.fs, a.fs)
  t.not(b.engine, a.engine)
  t.regex(b.engine, /commit ccccccc/)
  t.notRegex(b.engine, /commit aaaaaaa/)
  t.is(resultsMarkdown(h, ['engine', 'fs']), after, 'idempotent')
  t.deepEqual(readSaved(after), readSaved(h), 'RESULTS.md and HISTORY.md read back alike')
  t.like(readSaved(after).areas.engine, { run: RUN, measurements: [{ name: 'seal', value: 2 }] })
})

test('a run of one benchmark (AREA/BENCH only) adds to its area\'s latest full run instead of replacing it', t => {
  const partial = runSection([m('replay', 5, 'ms', 10), m('old', 4, 'MB/s', 2)], RUN, []).replace(' — commit ccccccc', ' — commit ccccccc (fs/replay only)') + '\nRun alone.\n'
  const h = prependRun(history(), partial)
  const fs2 = readSaved(h).areas.fs
  t.is(fs2.run?.commit, 'bbbbbbb', 'the area keeps its full run')
  t.deepEqual(fs2.measurements.map(x => [x.name, x.value]), [['new', 3], ['replay', 5], ['old', 4]])
  const section = areaSections(resultsMarkdown(h, ['engine', 'fs'])).fs
  t.deepEqual([...section.matchAll(/^### Run \S+ — commit (\S+)/gm)].map(x => x[1]), ['ccccccc', 'bbbbbbb'], 'the partial run above the full one')
  t.regex(section, /Run alone\./)
  t.deepEqual(readSaved(resultsMarkdown(h, ['fs'])), readSaved(h))
  const full = prependRun(h, runSection([m('newest', 1, 'MB/s', 2)], { ...RUN, date: '2026-01-04T00:00:00.000Z', commit: 'ddddddd' }, []))
  t.deepEqual(readSaved(full).areas.fs.measurements.map(x => x.name), ['newest'], 'a later full run replaces both')
})

test('the committed RESULTS.md is generated from the committed HISTORY.md, areas in the runner\'s order', t => {
  const help = spawnSync(process.execPath, [path.join(__dirname, '../../benchmarks/run.js'), '--help'], { encoding: 'utf8', timeout: 20_000 })
  const order = /^ {2}areas: (.*)$/m.exec(help.stderr)?.[1].split(', ')
  t.truthy(order, help.stderr)
  const historyText = fs.readFileSync(path.join(BENCHMARKS, 'HISTORY.md'), 'utf8')
  const resultsText = fs.readFileSync(path.join(BENCHMARKS, 'RESULTS.md'), 'utf8')
  t.is(resultsText, resultsMarkdown(historyText, order as string[]), 'regenerate with npm run bench -- --results')
  const dates = splitRuns(historyText).sections.map(s => /^### Run (\S+)/.exec(s)?.[1] as string)
  t.deepEqual(dates, [...dates].sort().reverse(), 'HISTORY.md is newest first')
})
