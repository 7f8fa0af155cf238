// The native session's FUSE op latency histograms through a real mount: after creates, writes, reads, stats and
// lookups, `pemfs status --prometheus` has a histogram per op class whose buckets are cumulative, whose +Inf bucket
// equals its count, and whose counts grew with the ops made; `pemfs status --json` carries the raw buckets.
import test from 'ava'
import fs from 'node:fs'
import path from 'node:path'
import { cli } from '../../scripts/procs'
import { clusterWithHost, mountOrThrow, sh, tearDown, tempDir, type Cluster } from '../helpers/mounts'

let c: Cluster
let dir: string

test.before(async () => {
  dir = path.join(tempDir('op-latency'), 'enc')
  fs.mkdirSync(dir)
  c = await clusterWithHost('op-latency', () => `format: 1\nkeys: [k1]\nguards:\n  ${dir}:\n    rules:\n      - id: encrypt\n        effect: apply_key(k1)\n`)
  await mountOrThrow(c, dir)
})

test.after.always(async () => { await tearDown(c) })

const prometheus = async (): Promise<string> => (await cli('pemfs', ['status', dir, '--config-dir', c.hostDir, '--prometheus'])).stdout

/** Per op class: the le="..." buckets in order, _sum and _count of pemfs_fuse_op_duration_seconds. */
function histograms (text: string): Map<string, { buckets: Array<[string, number]>, sum: number, count: number }> {
  const out = new Map<string, { buckets: Array<[string, number]>, sum: number, count: number }>()
  const of = (op: string): { buckets: Array<[string, number]>, sum: number, count: number } => {
    if (!out.has(op)) out.set(op, { buckets: [], sum: NaN, count: NaN })
    return out.get(op) as { buckets: Array<[string, number]>, sum: number, count: number }
  }
  for (const m of text.matchAll(/^pemfs_fuse_op_duration_seconds_(bucket|sum|count)\{guard="[^"]*",op="(\w+)"(?:,le="([^"]+)")?\} (\S+)$/gm)) {
    const h = of(m[2])
    if (m[1] === 'bucket') h.buckets.push([m[3], Number(m[4])]); else if (m[1] === 'sum') h.sum = Number(m[4]); else h.count = Number(m[4])
  }
  return out
}

test('after file ops through the mount, every op class has a consistent histogram and the ops made are counted', async t => {
  const before = histograms(await prometheus())
  const r = await sh(`cd '${dir}' && for i in 1 2 3 4 5 6 7 8; do head -c 200000 /dev/urandom > f$i; cat f$i > /dev/null; stat f$i > /dev/null; ls -l > /dev/null; done`, { timeoutMs: 30000 })
  t.is(r.code, 0, r.stderr)
  const text = await prometheus()
  t.regex(text, /^# TYPE pemfs_fuse_op_duration_seconds histogram$/m)
  const after = histograms(text)
  t.deepEqual([...after.keys()].sort(), ['create', 'getattr', 'lookup', 'other', 'read', 'write'])
  for (const [op, h] of after) {
    t.is(h.buckets.at(-1)?.[0], '+Inf', `${op}: the last bucket is +Inf`)
    t.is(h.buckets.at(-1)?.[1], h.count, `${op}: count == +Inf bucket`)
    t.true(h.buckets.every(([, n], i) => i === 0 || n >= h.buckets[i - 1][1]), `${op}: cumulative`)
    t.true(h.buckets.slice(0, -1).every(([le], i) => i === 0 || Number(le) > Number(h.buckets[i - 1][0])), `${op}: bounds ascending`)
    t.true(h.sum >= 0 && (h.count > 0 || h.sum === 0), `${op}: sum ${h.sum}`)
  }
  for (const op of ['create', 'write', 'read', 'getattr', 'lookup', 'other']) {
    const grew = (after.get(op)?.count ?? 0) - (before.get(op)?.count ?? 0)
    t.true(grew > 0, `${op} grew by ${grew}`)
  }
  t.true((after.get('create')?.count ?? 0) >= 8, 'one create per new file at least')
  const json = JSON.parse((await cli('pemfs', ['status', dir, '--config-dir', c.hostDir, '--json'])).stdout) as { opLatency: { bounds: number[], read: { counts: number[] } } }
  t.is(json.opLatency.read.counts.length, json.opLatency.bounds.length + 1, 'one count per bound and one above')
  const human = (await cli('pemfs', ['status', dir, '--config-dir', c.hostDir])).stdout
  t.regex(human, /^\s*read\s+\d+\s+[\d.]+/m, 'the human table has a row per op class')
})
