// Engine AES-256-GCM with AES-NI and PCLMULQDQ masked (OPENSSL_ia32cap=~0x200000200000000) in a child process,
// beside `openssl speed` under the same mask: what a CPU without the instructions would get.
import type { BenchContext } from '../harness'
import { KIB, inChild, opensslSpeed, sizeName } from './measure'

const MASK = '~0x200000200000000'

export async function run (ctx: BenchContext): Promise<void> {
  const sizes = ctx.quick ? [4 * KIB] : [16 * KIB, 1024 * KIB]
  const ms = ctx.quick ? 60 : 1000
  const masked = inChild<{ path: string, mbps: number[] }>('childSeal', ['aes-256-gcm', sizes, ms], { OPENSSL_ia32cap: MASK })
  const plain = inChild<{ path: string, mbps: number[] }>('childSeal', ['aes-256-gcm', sizes, ms], { OPENSSL_ia32cap: undefined })
  ctx.log(`OPENSSL_ia32cap=${MASK}: engine path ${masked.path} (unmasked: ${plain.path})`)
  sizes.forEach((n, i) => {
    const o = opensslSpeed('aes-256-gcm', n, ctx.quick ? 1 : 2, 1, { OPENSSL_ia32cap: MASK })
    if (o === null) ctx.log('openssl CLI missing: masked openssl baseline skipped')
    ctx.report({ name: `seal aes-256-gcm ${sizeName(n)} masked (${masked.path})`, value: masked.mbps[i], unit: 'MB/s', baseline: o === null ? null : 'openssl speed, same mask', baseline_value: o })
    ctx.report({ name: `seal aes-256-gcm ${sizeName(n)} masked vs unmasked`, value: masked.mbps[i], unit: 'MB/s', baseline: `engine ${plain.path}`, baseline_value: plain.mbps[i] })
  })
}
