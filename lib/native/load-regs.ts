// Load meter: CPU, NIC and crypto-engine utilisation (0..1) from deltas of the native load registers.
import { raw } from './binding'
import { call } from './errors'

/** Register indices, as exported by native/load_regs.cc. */
export const REG = {
  CPU_BUSY_JIFFIES: raw.REG_CPU_BUSY_JIFFIES,
  CPU_TOTAL_JIFFIES: raw.REG_CPU_TOTAL_JIFFIES,
  NIC_RX_BYTES: raw.REG_NIC_RX_BYTES,
  NIC_TX_BYTES: raw.REG_NIC_TX_BYTES,
  NIC_SPEED_MBPS: raw.REG_NIC_SPEED_MBPS,
  CRYPTO_BUSY_NS: raw.REG_CRYPTO_BUSY_NS,
  CRYPTO_THREADS: raw.REG_CRYPTO_THREADS,
  MONO_NS: raw.REG_MONO_NS,
  COUNT: raw.REG_COUNT
} as const

// The addon keeps one chosen interface per env; meters for different interfaces switch it before each read.
let selectedNic: string | null = null

function selectNic (nic: string): void {
  if (selectedNic === nic) return
  call(() => raw.setNicInterface(nic))
  selectedNic = nic
}

/** Reads the registers into `out` (REG.COUNT elements) for interface `nic`. Throws ENGINE_ERR_LOAD_REGS. */
export function readRegs (out: Float64Array, nic = 'lo'): Float64Array {
  selectNic(nic)
  call(() => raw.readRegs(out))
  return out
}

/** Adds busy time to the crypto accumulator (the engine does this itself; exported for tests and other engines). */
export function cryptoBusyAdd (ns: number): void {
  call(() => raw.cryptoBusyAdd(ns))
}

export interface LoadMeterOptions {
  /** Network interface under /sys/class/net, e.g. 'eth0' or 'lo'. */
  nic: string
  /** Capacity in bytes/s per direction, used when the link speed is unknown (loopback, virtual). Default 1.25e9. */
  nicCapacityBps?: number
  /** Crypto threads the busy time is divided by. Default: REG_CRYPTO_THREADS (the engine pool's threads: the cores). */
  cryptoThreads?: number
}

export interface LoadSample {
  cpu: number
  nic: number
  crypto: number
}

const DEFAULT_NIC_CAPACITY_BPS = 1.25e9

/**
 * Utilisation since the previous sample. The constructor takes the first reading, so the first sample covers the
 * time since the meter was made (0 when nothing elapsed). One Float64Array pair is reused: sampling allocates only
 * the returned object.
 */
export class LoadMeter {
  readonly nic: string
  private readonly capacityBps: number
  private readonly cryptoThreads: number | undefined
  private prev: Float64Array = new Float64Array(REG.COUNT)
  private cur: Float64Array = new Float64Array(REG.COUNT)

  constructor (opts: LoadMeterOptions) {
    if (typeof opts?.nic !== 'string' || opts.nic.length === 0) throw new TypeError('LoadMeter: nic must be a non-empty string')
    const cap = opts.nicCapacityBps ?? DEFAULT_NIC_CAPACITY_BPS
    if (!(cap > 0) || !Number.isFinite(cap)) throw new RangeError('LoadMeter: nicCapacityBps must be a positive number')
    if (opts.cryptoThreads !== undefined && !(Number.isInteger(opts.cryptoThreads) && opts.cryptoThreads > 0)) {
      throw new RangeError('LoadMeter: cryptoThreads must be a positive integer')
    }
    this.nic = opts.nic
    this.capacityBps = cap
    this.cryptoThreads = opts.cryptoThreads
    readRegs(this.prev, this.nic)
  }

  sample (): LoadSample {
    const c = readRegs(this.cur, this.nic)
    const p = this.prev
    const dTotal = c[REG.CPU_TOTAL_JIFFIES] - p[REG.CPU_TOTAL_JIFFIES]
    const cpu = dTotal > 0 ? (c[REG.CPU_BUSY_JIFFIES] - p[REG.CPU_BUSY_JIFFIES]) / dTotal : 0
    const dtNs = c[REG.MONO_NS] - p[REG.MONO_NS]
    let nic = 0
    let crypto = 0
    if (dtNs > 0) {
      const seconds = dtNs / 1e9
      const speed = c[REG.NIC_SPEED_MBPS]
      const capacity = speed > 0 ? speed * 1e6 / 8 : this.capacityBps
      // Full duplex: the busier direction is the bottleneck.
      const bytes = Math.max(c[REG.NIC_RX_BYTES] - p[REG.NIC_RX_BYTES], c[REG.NIC_TX_BYTES] - p[REG.NIC_TX_BYTES])
      nic = bytes / seconds / capacity
      const threads = this.cryptoThreads ?? Math.max(1, c[REG.CRYPTO_THREADS])
      crypto = (c[REG.CRYPTO_BUSY_NS] - p[REG.CRYPTO_BUSY_NS]) / (dtNs * threads)
    }
    this.prev = c
    this.cur = p
    return { cpu: clamp01(cpu), nic: clamp01(nic), crypto: clamp01(crypto) }
  }
}

function clamp01 (x: number): number {
  return Number.isFinite(x) ? Math.min(1, Math.max(0, x)) : 0
}
