// Engine benchmark helpers: AEAD throughput loops (engine, node:crypto, sodium-native), `openssl speed` and the
// zstd/lz4 CLIs as external baselines, and a child-process runner for OPENSSL_ia32cap-masked runs.
import { execFileSync, spawnSync } from 'node:child_process'
import crypto from 'node:crypto'
import { Worker } from 'node:worker_threads'
import { CRYPTO_THREADS, createEngine, generateKey, sealedLength, type AeadCipher } from '../../lib/native/crypto-engine'
import { opsPerSecond } from '../harness'

export const MB = 1e6 // throughputs are decimal MB/s, like `openssl speed` (1000s of bytes)
export const KIB = 1024

export function sizeName (n: number): string { return n >= 1 << 20 ? `${n >> 20} MiB` : `${n >> 10} KiB` }

/** Blocks of `block` bytes in batches of at least 1 MiB (one block when the block is bigger). */
function batchOf (block: number, batchBytes = 1 << 20): { lens: Uint32Array, input: Buffer, out: Buffer } {
  const count = Math.max(1, Math.floor(batchBytes / block))
  const lens = new Uint32Array(count).fill(block)
  return { lens, input: crypto.randomBytes(count * block), out: Buffer.alloc(sealedLength(lens)) }
}

/** MB/s of a step that returns the bytes it processed (the harness counts them as "operations"). */
async function timed (ms: number, step: () => Promise<number> | number): Promise<number> {
  return await opsPerSecond(ms, step) / MB
}

/** Engine seal MB/s on the JS thread (sync batches): the single-thread figure. */
export async function engineSealSync (cipher: AeadCipher, block: number, ms: number, batchBytes?: number): Promise<number> {
  const engine = createEngine({ cipher })
  const key = generateKey()
  const b = batchOf(block, batchBytes)
  engine.sealBatchSync(key, b.input, b.lens, null, 0, b.out)
  return await timed(ms, () => engine.sealBatchSync(key, b.input, b.lens, null, 0, b.out) - b.lens.length * 28)
}

/**
 * Engine seal MB/s on the engine pool with 2 × `threads` async batches in flight: the all-cores figure, as spd runs
 * under load. With only `threads` in flight each pool thread idles while its batch's completion goes through the JS
 * thread and the next one is queued (measured here: 2 in flight gave 1.4–1.7× one, 4 in flight 1.9×).
 */
export async function engineSealParallel (cipher: AeadCipher, block: number, ms: number, threads = CRYPTO_THREADS, batchBytes?: number): Promise<number> {
  const engine = createEngine({ cipher, threads: 1, syncBelowBytes: 0 })
  const key = generateKey()
  const batches = Array.from({ length: 2 * threads }, () => batchOf(block, batchBytes))
  const t0 = process.hrtime.bigint()
  let bytes = 0
  await Promise.all(batches.map(async b => {
    while (Number(process.hrtime.bigint() - t0) / 1e6 < ms) {
      await engine.sealBatch(key, b.input, b.lens, null, 0, b.out)
      bytes += b.input.length
    }
  }))
  return bytes / (Number(process.hrtime.bigint() - t0) / 1e9) / MB
}

/**
 * `n` worker threads of this process, each running engineSealSync on its own (no pool, no JS thread between them):
 * what that many threads of this code do side by side on this machine, the ceiling for the pool's figure.
 */
export class SyncThreads {
  private constructor (private readonly workers: Worker[]) {}

  static async start (n: number): Promise<SyncThreads> {
    const code = `const { parentPort } = require('node:worker_threads')
      const m = require(${JSON.stringify(__filename)})
      parentPort.on('message', a => m.engineSealSync(a.cipher, a.block, a.ms, a.batchBytes).then(v => parentPort.postMessage(v)))`
    const t = new SyncThreads(Array.from({ length: n }, () => new Worker(code, { eval: true })))
    await t.seal('aes-256-gcm', 16 * KIB, 50) // loaded and warm
    return t
  }

  /** Total MB/s of all threads sealing at once for `ms`. */
  async seal (cipher: AeadCipher, block: number, ms: number, batchBytes?: number): Promise<number> {
    const rates = await Promise.all(this.workers.map(async w => await new Promise<number>((resolve, reject) => {
      w.once('message', resolve)
      w.once('error', reject)
      w.postMessage({ cipher, block, ms, batchBytes })
    })))
    return rates.reduce((a, b) => a + b, 0)
  }

  async stop (): Promise<void> { await Promise.all(this.workers.map(async w => await w.terminate())) }
}

/** Engine open MB/s (sync), sealed by the engine first. */
export async function engineOpenSync (cipher: AeadCipher, block: number, ms: number): Promise<number> {
  const engine = createEngine({ cipher })
  const key = generateKey()
  const b = batchOf(block)
  engine.sealBatchSync(key, b.input, b.lens, null, 0, b.out)
  const sealedLens = b.lens.map(l => l + 28)
  const plain = Buffer.alloc(b.input.length)
  return await timed(ms, () => engine.openBatchSync(key, b.out, sealedLens, null, 0, plain))
}

/** node:crypto, one createCipheriv per block with a fresh random nonce (what a JS implementation would do). */
export async function nodeCryptoSeal (cipher: AeadCipher, block: number, ms: number): Promise<number> {
  const key = crypto.randomBytes(32)
  const pt = crypto.randomBytes(block)
  const nonce = Buffer.alloc(12)
  return await timed(ms, () => {
    let n = 0
    for (let i = 0; i < Math.max(1, (256 * KIB) / block); i++) {
      crypto.randomFillSync(nonce)
      const c = crypto.createCipheriv(cipher, key, nonce, { authTagLength: 16 } as crypto.CipherGCMOptions) as crypto.CipherGCM
      c.update(pt); c.final(); c.getAuthTag()
      n += block
    }
    return n
  })
}

/** sodium-native crypto_aead_chacha20poly1305_ietf_encrypt per block (it has no AES-GCM without AES-NI builds). */
export async function sodiumChachaSeal (block: number, ms: number): Promise<number | null> {
  let sodium: Record<string, any>
  try { sodium = require('sodium-native') } catch { return null }
  if (typeof sodium.crypto_aead_chacha20poly1305_ietf_encrypt !== 'function') return null
  const key = crypto.randomBytes(32)
  const pt = crypto.randomBytes(block)
  const out = Buffer.alloc(block + 16)
  const nonce = Buffer.alloc(12)
  return await timed(ms, () => {
    let n = 0
    for (let i = 0; i < Math.max(1, (256 * KIB) / block); i++) {
      sodium.randombytes_buf(nonce)
      sodium.crypto_aead_chacha20poly1305_ietf_encrypt(out, pt, null, null, nonce, key)
      n += block
    }
    return n
  })
}

export function haveCommand (cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0
}

/** `openssl speed -evp CIPHER -bytes N -seconds S [-multi K]` in MB/s, or null when the CLI is missing/unparsable. */
export function opensslSpeed (cipher: AeadCipher, bytes: number, seconds: number, multi = 1, env: NodeJS.ProcessEnv = {}): number | null {
  if (!haveCommand('openssl')) return null
  const args = ['speed', ...(multi > 1 ? ['-multi', String(multi)] : []), '-evp', cipher, '-bytes', String(bytes), '-seconds', String(seconds)]
  const r = spawnSync('openssl', args, { encoding: 'utf8', env: { ...process.env, ...env }, timeout: (seconds + 30) * 1000 })
  const m = /^(?:evp|[A-Za-z0-9-]+)\s+([\d.]+)k\s*$/m.exec(r.stdout ?? '')
  return m === null ? null : parseFloat(m[1]) * 1000 / MB
}

export interface CliBench { ratio: number, compressMBps: number, decompressMBps: number }

/** `zstd -b<level>` / `lz4 -b<level>` on a file with independent blocks of `block` bytes (their own bench mode). */
export function cliBench (cmd: 'zstd' | 'lz4', level: number, file: string, block: number): CliBench | null {
  if (!haveCommand(cmd)) return null
  const r = spawnSync(cmd, [`-b${level}`, '-i1', `-B${block}`, file], { encoding: 'utf8', timeout: 120000 })
  const text = `${r.stdout ?? ''}${r.stderr ?? ''}`
  const all = [...text.matchAll(/->\s*(\d+)\s*\(x?([\d.]+)\),\s*([\d.]+)\s*MB\/s\s*,\s*([\d.]+)\s*MB\/s/g)]
  const m = all.at(-1)
  if (m === undefined) return null
  return { ratio: parseFloat(m[2]), compressMBps: parseFloat(m[3]), decompressMBps: parseFloat(m[4]) }
}

/** Runs `fn(args)` from this module in a child node with extra environment; returns its JSON result. */
export function inChild<T> (fn: string, args: unknown[], env: NodeJS.ProcessEnv): T {
  const script = `require(${JSON.stringify(__filename)}).${fn}(...${JSON.stringify(args)}).then(r => process.stdout.write(JSON.stringify(r)))`
  return JSON.parse(execFileSync(process.execPath, ['-e', script], { env: { ...process.env, ...env }, encoding: 'utf8' })) as T
}

/** For inChild: engine info and sync seal MB/s at each block size. */
export async function childSeal (cipher: AeadCipher, blocks: number[], ms: number): Promise<{ path: string, mbps: number[] }> {
  const mbps: number[] = []
  for (const b of blocks) mbps.push(await engineSealSync(cipher, b, ms))
  return { path: createEngine({ cipher }).info().path, mbps }
}
