// Engine seal throughput (AES-256-GCM, ChaCha20-Poly1305) per block size, one thread and all cores, beside
// `openssl speed`, node:crypto and sodium-native measured in the same run. This VM's speed drifts by ±20 % within
// seconds, so the AES-GCM rows come from paired rounds: in each, engine (1 thread), openssl, engine (all threads),
// the sync call on as many worker threads side by side (no pool: the ceiling for the pool's figure), openssl -multi,
// engine (1 thread) again run back to back for a second each, and a row's ratio is the median over
// the rounds of the ratio inside each round (neighbours in time; the two-threads-vs-one ratio divides by the mean
// of the one-thread runs on either side). Its value and baseline are the medians of the samples, which are noted.
import { median, type BenchContext } from '../harness'
import { CRYPTO_THREADS } from '../../lib/native/crypto-engine'
import {
  KIB, SyncThreads, engineOpenSync, engineSealParallel, engineSealSync, nodeCryptoSeal, opensslSpeed, sizeName, sodiumChachaSeal
} from './measure'

export async function run (ctx: BenchContext): Promise<void> {
  const sizes = ctx.quick ? [4 * KIB] : [4 * KIB, 16 * KIB, 64 * KIB, 1024 * KIB]
  const ms = ctx.quick ? 60 : 1000
  const seconds = 1
  const threads = CRYPTO_THREADS
  const unit = 'MB/s'
  let noOpenssl = false
  const ossl = (cipher: 'aes-256-gcm' | 'chacha20-poly1305', n: number, multi = 1): number | null => {
    const v = opensslSpeed(cipher, n, seconds, multi)
    if (v === null && !noOpenssl) { noOpenssl = true; ctx.log('openssl CLI missing or unparsable: openssl baselines skipped') }
    return v
  }
  const rounds = ctx.quick ? 1 : 7
  ctx.log(`blocks of N bytes in 1 MiB batches (and one 4 MiB row); ${threads} crypto thread(s); ${rounds} paired round(s); MB = 10^6 bytes`)
  const samples = (xs: Array<number | null>): string => xs.map(x => x === null ? '-' : x.toFixed(0)).join('/')
  const ratios = (xs: Array<number | null>): string => xs.map(x => x === null ? '-' : x.toFixed(2)).join('/')
  /** Median of the non-null values, or null when there are none. */
  const mid = (xs: Array<number | null>): number | null => { const v = xs.filter((x): x is number => x !== null); return v.length === 0 ? null : median(v) }
  /** Median of paired ratios, to three decimals like the harness's own ratios. */
  const midRatio = (xs: Array<number | null>): number | null => { const m = mid(xs); return m === null ? null : Math.round(m * 1000) / 1000 }
  const paired = (a: Array<number | null>, b: Array<number | null>): Array<number | null> => a.map((x, i) => { const y = b[i]; return x === null || y === null || y === 0 ? null : x / y })
  const note = (values: number[], base: Array<number | null>, rs: Array<number | null>): string =>
    `samples ${samples(values)} vs ${samples(base)}; ratio = median of paired ${ratios(rs)}`
  const side = threads > 1 ? await SyncThreads.start(threads) : null
  for (const n of sizes) {
    const oneA: number[] = []; const oneB: number[] = []; const all: number[] = []; const o1s: Array<number | null> = []; const oNs: Array<number | null> = []
    const sides: number[] = []
    for (let r = 0; r < rounds; r++) {
      oneA.push(await engineSealSync('aes-256-gcm', n, ms))
      o1s.push(ossl('aes-256-gcm', n))
      all.push(await engineSealParallel('aes-256-gcm', n, ms, threads))
      if (side !== null) sides.push(await side.seal('aes-256-gcm', n, ms))
      oNs.push(threads > 1 ? ossl('aes-256-gcm', n, threads) : o1s[r])
      oneB.push(await engineSealSync('aes-256-gcm', n, ms))
    }
    const one = oneA.map((a, i) => (a + oneB[i]) / 2)
    const node = await nodeCryptoSeal('aes-256-gcm', n, ms)
    const vsOssl = paired(oneA, o1s)
    ctx.report({ name: `seal aes-256-gcm ${sizeName(n)} 1 thread`, value: median(oneA), unit, baseline: mid(o1s) === null ? null : 'openssl speed', baseline_value: mid(o1s), ratio: midRatio(vsOssl), note: note(oneA, o1s, vsOssl) })
    ctx.report({ name: `seal aes-256-gcm ${sizeName(n)} 1 thread vs node`, value: median(oneA), unit, baseline: 'node:crypto', baseline_value: node })
    const vsMulti = paired(all, oNs)
    ctx.report({ name: `seal aes-256-gcm ${sizeName(n)} ${threads} threads`, value: median(all), unit, baseline: mid(oNs) === null ? null : `openssl speed -multi ${threads}`, baseline_value: mid(oNs), ratio: midRatio(vsMulti), note: note(all, oNs, vsMulti) })
    if (threads > 1) {
      const scaling = paired(all, one)
      const osslScaling = paired(oNs, o1s)
      ctx.report({ name: `seal aes-256-gcm ${sizeName(n)} ${threads} threads vs 1 (target 1.8)`, value: median(all), unit, baseline: 'engine, 1 thread', baseline_value: median(one), ratio: midRatio(scaling), note: `${note(all, one, scaling)}; openssl -multi ${threads} vs 1 in the same rounds ${ratios(osslScaling)}` })
      const sideScaling = paired(sides, one)
      ctx.report({ name: `seal aes-256-gcm ${sizeName(n)} ${threads} sync worker threads side by side vs 1 (the pool's ceiling)`, value: median(sides), unit, baseline: 'engine, 1 thread', baseline_value: median(one), ratio: midRatio(sideScaling), note: note(sides, one, sideScaling) })
    }
  }
  await side?.stop()
  if (threads > 1) {
    // What two threads give when each batch is large enough to outweigh its hand-offs (docs/ENGINE.md "What an async
    // batch costs"): 16 KiB blocks in 4 MiB batches, both sides measured with that batch size, paired the same way.
    const big = 4096 * KIB
    const oneA: number[] = []; const oneB: number[] = []; const all: number[] = []
    for (let r = 0; r < rounds; r++) {
      oneA.push(await engineSealSync('aes-256-gcm', 16 * KIB, ms, big))
      all.push(await engineSealParallel('aes-256-gcm', 16 * KIB, ms, threads, big))
      oneB.push(await engineSealSync('aes-256-gcm', 16 * KIB, ms, big))
    }
    const one = oneA.map((a, i) => (a + oneB[i]) / 2)
    const scaling = paired(all, one)
    ctx.report({ name: `seal aes-256-gcm 16 KiB in 4 MiB batches ${threads} threads vs 1 (target 1.8)`, value: median(all), unit, baseline: 'engine, 1 thread, 4 MiB batches', baseline_value: median(one), ratio: midRatio(scaling), note: note(all, one, scaling) })
  }
  const openSize = ctx.quick ? 4 * KIB : 64 * KIB
  const open = await engineOpenSync('aes-256-gcm', openSize, ms)
  const o = ossl('aes-256-gcm', openSize)
  ctx.report({ name: `open aes-256-gcm ${sizeName(openSize)} 1 thread`, value: open, unit, baseline: o === null ? null : 'openssl speed (seal)', baseline_value: o })
  for (const n of ctx.quick ? [4 * KIB] : [4 * KIB, 64 * KIB]) {
    const one = await engineSealSync('chacha20-poly1305', n, ms)
    const sod = await sodiumChachaSeal(n, ms)
    const oc = ossl('chacha20-poly1305', n)
    ctx.report({ name: `seal chacha20-poly1305 ${sizeName(n)} 1 thread`, value: one, unit, baseline: oc === null ? null : 'openssl speed', baseline_value: oc })
    if (sod === null) ctx.log('sodium-native missing: chacha baseline skipped')
    else ctx.report({ name: `seal chacha20-poly1305 ${sizeName(n)} 1 thread vs sodium`, value: one, unit, baseline: 'sodium-native ietf', baseline_value: sod })
  }
}
