// Engine seal throughput (AES-256-GCM, ChaCha20-Poly1305) per block size, one thread and all cores, beside
// `openssl speed`, node:crypto and sodium-native measured in the same run. The AES-GCM rows are medians of five
// rounds in which the engine and openssl take turns (this VM's speed drifts within a minute; the samples are noted).
import { median, type BenchContext } from '../harness'
import { CRYPTO_THREADS } from '../../lib/native/crypto-engine'
import {
  KIB, engineOpenSync, engineSealParallel, engineSealSync, nodeCryptoSeal, opensslSpeed, sizeName, sodiumChachaSeal
} from './measure'

export async function run (ctx: BenchContext): Promise<void> {
  const sizes = ctx.quick ? [4 * KIB] : [4 * KIB, 16 * KIB, 64 * KIB, 1024 * KIB]
  const ms = ctx.quick ? 60 : 1000
  const seconds = ctx.quick ? 1 : 2
  const threads = CRYPTO_THREADS
  const unit = 'MB/s'
  let noOpenssl = false
  const ossl = (cipher: 'aes-256-gcm' | 'chacha20-poly1305', n: number, multi = 1): number | null => {
    const v = opensslSpeed(cipher, n, seconds, multi)
    if (v === null && !noOpenssl) { noOpenssl = true; ctx.log('openssl CLI missing or unparsable: openssl baselines skipped') }
    return v
  }
  ctx.log(`blocks of N bytes in 1 MiB batches (and one 4 MiB row); ${threads} crypto thread(s); MB = 10^6 bytes`)
  const rounds = ctx.quick ? 1 : 5
  const samples = (xs: Array<number | null>): string => xs.map(x => x === null ? '-' : x.toFixed(0)).join('/')
  const mid = (xs: Array<number | null>): number | null => xs.includes(null) ? null : median(xs as number[])
  for (const n of sizes) {
    const one: number[] = []; const all: number[] = []; const o1s: Array<number | null> = []; const oNs: Array<number | null> = []
    for (let r = 0; r < rounds; r++) {
      one.push(await engineSealSync('aes-256-gcm', n, ms))
      o1s.push(ossl('aes-256-gcm', n))
      all.push(await engineSealParallel('aes-256-gcm', n, ms, threads))
      oNs.push(threads > 1 ? ossl('aes-256-gcm', n, threads) : o1s[r])
    }
    const node = await nodeCryptoSeal('aes-256-gcm', n, ms)
    const o1 = mid(o1s); const oN = mid(oNs)
    const note = (a: Array<number | null>, b: Array<number | null>): string | undefined => rounds > 1 ? `rounds ${samples(a)} vs ${samples(b)}` : undefined
    ctx.report({ name: `seal aes-256-gcm ${sizeName(n)} 1 thread`, value: median(one), unit, baseline: o1 === null ? null : 'openssl speed', baseline_value: o1, note: note(one, o1s) })
    ctx.report({ name: `seal aes-256-gcm ${sizeName(n)} 1 thread vs node`, value: median(one), unit, baseline: 'node:crypto', baseline_value: node })
    ctx.report({ name: `seal aes-256-gcm ${sizeName(n)} ${threads} threads`, value: median(all), unit, baseline: oN === null ? null : `openssl speed -multi ${threads}`, baseline_value: oN, note: note(all, oNs) })
    if (threads > 1) ctx.report({ name: `seal aes-256-gcm ${sizeName(n)} ${threads} threads vs 1 (target 1.8)`, value: median(all), unit, baseline: 'engine, 1 thread', baseline_value: median(one), note: note(all, one) })
  }
  if (threads > 1) {
    // What two threads give when each batch is large enough to outweigh its hand-offs (docs/ENGINE.md "What an async
    // batch costs"): 16 KiB blocks in 4 MiB batches, both sides measured with that batch size.
    const big = 4096 * KIB
    const one: number[] = []; const all: number[] = []
    for (let r = 0; r < rounds; r++) {
      one.push(await engineSealSync('aes-256-gcm', 16 * KIB, ms, big))
      all.push(await engineSealParallel('aes-256-gcm', 16 * KIB, ms, threads, big))
    }
    ctx.report({ name: `seal aes-256-gcm 16 KiB in 4 MiB batches ${threads} threads vs 1 (target 1.8)`, value: median(all), unit, baseline: 'engine, 1 thread, 4 MiB batches', baseline_value: median(one), note: rounds > 1 ? `rounds ${samples(all)} vs ${samples(one)}` : undefined })
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
