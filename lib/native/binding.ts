// The only place that loads the addon (node-gyp-build on the package root); RawBinding types what native/ exports.
import fs from 'node:fs'
import path from 'node:path'

/** native/load_regs.cc */
export interface RawRegs {
  readRegs (out: Float64Array): void
  setNicInterface (name: string): void
  cryptoBusyAdd (ns: number): void
  readonly REG_CPU_BUSY_JIFFIES: number
  readonly REG_CPU_TOTAL_JIFFIES: number
  readonly REG_NIC_RX_BYTES: number
  readonly REG_NIC_TX_BYTES: number
  readonly REG_NIC_SPEED_MBPS: number
  readonly REG_CRYPTO_BUSY_NS: number
  readonly REG_CRYPTO_THREADS: number
  readonly REG_MONO_NS: number
  readonly REG_COUNT: number
}

export type RawBinding = RawRegs

/** The package root: the nearest ancestor of this file that holds binding.gyp (works from lib/ and dist/lib/). */
function packageRoot (): string {
  let dir = __dirname
  for (;;) {
    if (fs.existsSync(path.join(dir, 'binding.gyp'))) return dir
    const up = path.dirname(dir)
    if (up === dir) throw new Error(`binding.gyp not found above ${__dirname}`)
    dir = up
  }
}

// eslint-disable-next-line @typescript-eslint/no-var-requires
export const raw: RawBinding = require('node-gyp-build')(packageRoot())
