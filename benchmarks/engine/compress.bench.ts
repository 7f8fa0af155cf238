// Block compression MB/s and ratio (zstd 3, lz4 1, zlib 6; 64 KiB blocks, one thread) beside the zstd/lz4 CLIs'
// own bench mode on the same file and block size, and node:zlib for zlib.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import zlib from 'node:zlib'
import type { BenchContext } from '../harness'
import { compressBatchSync, decompressBatchSync, type Codec } from '../../lib/native/compress'
import { KIB, MB, cliBench } from './measure'

const BLOCK = 64 * KIB

/** Real text: the TypeScript compiler's source if installed, else generated words. */
function corpus (bytes: number): { data: Buffer, what: string } {
  try {
    const f = require.resolve('typescript/lib/typescript.js')
    const data = fs.readFileSync(f).subarray(0, bytes)
    if (data.length === bytes) return { data, what: 'typescript.js' }
  } catch {}
  const words = ['policy', 'enforcement', 'cluster', 'block', 'cipher', 'key', 'member', ' ', '\n', '{', '}']
  const parts: string[] = []
  let n = 0
  for (let i = 0; n < bytes; i++) { const w = words[(i * 7919) % words.length] + String(i % 97); parts.push(w); n += w.length }
  return { data: Buffer.from(parts.join('')).subarray(0, bytes), what: 'generated words' }
}

function rate (ms: number, fn: () => number): number {
  const t0 = process.hrtime.bigint()
  let bytes = 0
  let el = 0
  while (el < ms) { bytes += fn(); el = Number(process.hrtime.bigint() - t0) / 1e6 }
  return bytes / (el / 1000) / MB
}

export async function run (ctx: BenchContext): Promise<void> {
  const size = ctx.quick ? 1 << 20 : 8 << 20
  const ms = ctx.quick ? 60 : 1000
  const { data, what } = corpus(size)
  const count = Math.ceil(data.length / BLOCK)
  const lens = Uint32Array.from({ length: count }, (_, i) => Math.min(BLOCK, data.length - i * BLOCK))
  const file = path.join(os.tmpdir(), `pem-bench-corpus-${process.pid}.bin`)
  fs.writeFileSync(file, data)
  ctx.log(`corpus: ${(data.length / 2 ** 20).toFixed(0)} MiB of ${what}, ${BLOCK / KIB} KiB blocks, 1 thread`)
  try {
    for (const [codec, level] of [['zstd', 3], ['lz4', 1], ['zlib', 6]] as Array<[Codec, number]>) {
      const out = Buffer.alloc(data.length)
      const outLens = new Uint32Array(count)
      let packed = 0
      const c = rate(ms, () => { packed = compressBatchSync(codec, data, lens, out, outLens, { level }); return data.length })
      const keep = [...outLens.keys()].filter(i => outLens[i] > 0)
      const cl = Uint32Array.from(keep.map(i => outLens[i]))
      const rooms = Uint32Array.from(keep.map(i => lens[i]))
      const plain = Buffer.alloc(data.length)
      const rawBytes = data.length - rooms.reduce((a, x) => a + x, 0)
      const d = rate(ms, () => decompressBatchSync(codec, out.subarray(0, packed), cl, plain, rooms.slice()) + rawBytes)
      const ratio = data.length / (packed + rawBytes)
      let base: { ratio: number, c: number, d: number, name: string } | null = null
      if (codec === 'zlib') {
        let zbytes = 0
        const zc = rate(ms, () => { zbytes = 0; for (let i = 0; i < count; i++) zbytes += zlib.deflateSync(data.subarray(i * BLOCK, i * BLOCK + lens[i]), { level }).length; return data.length })
        const blocks = Array.from({ length: count }, (_, i) => zlib.deflateSync(data.subarray(i * BLOCK, i * BLOCK + lens[i]), { level }))
        const zd = rate(ms, () => { for (const b of blocks) zlib.inflateSync(b); return data.length })
        base = { ratio: data.length / zbytes, c: zc, d: zd, name: 'node:zlib' }
      } else {
        const cli = cliBench(codec, level, file, BLOCK)
        if (cli === null) ctx.log(`${codec} CLI missing or unparsable: its baseline is skipped`)
        else base = { ratio: cli.ratio, c: cli.compressMBps, d: cli.decompressMBps, name: `${codec} -b${level} -B${BLOCK}` }
      }
      ctx.report({ name: `compress ${codec} ${level} ${BLOCK / KIB} KiB blocks`, value: c, unit: 'MB/s', baseline: base?.name ?? null, baseline_value: base?.c ?? null })
      ctx.report({ name: `decompress ${codec} ${BLOCK / KIB} KiB blocks`, value: d, unit: 'MB/s', baseline: base?.name ?? null, baseline_value: base?.d ?? null })
      ctx.report({ name: `ratio ${codec} ${level} ${BLOCK / KIB} KiB blocks`, value: Math.round(ratio * 1000) / 1000, unit: 'x', baseline: base?.name ?? null, baseline_value: base === null ? null : Math.round(base.ratio * 1000) / 1000 })
    }
  } finally {
    fs.rmSync(file, { force: true })
  }
}
