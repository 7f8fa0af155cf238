// AEAD engine over the addon: key handles, HKDF file keys, and sealed/opened batches of blocks in caller-owned buffers.
// Layout of a sealed block: nonce (12) | ciphertext (L) | tag (16). Design and numbers: docs/ENGINE.md
import { PemError } from '../wire/errors'
import {
  EMPTY, SYNC_BELOW_BYTES, badLength, checkBytes, checkLens, groupCount, overlaps, sameView, settle,
  splitBlocks, sumLens
} from './batch'
import { raw, type RawEngine, type RawEngineInfo, type RawKey } from './binding'
import { call, fromNative } from './errors'

export const NONCE_BYTES: number = raw.NONCE_BYTES
export const TAG_BYTES: number = raw.TAG_BYTES
export const KEY_BYTES: number = raw.KEY_BYTES
export const OVERHEAD_BYTES: number = raw.OVERHEAD_BYTES
export const FILE_ID_BYTES: number = raw.FILE_ID_BYTES
export const MAX_BLOCK_BYTES: number = raw.MAX_BLOCK_BYTES
/** Threads of the engine pool, and groups a large batch is spread over by default: cores in our affinity mask. */
export const CRYPTO_THREADS: number = raw.CRYPTO_THREADS
/** HKDF info label of deriveFileKey: label | file id (16) | key version (u32 big endian). */
export const HKDF_INFO_FILE_KEY: string = raw.HKDF_INFO_FILE_KEY

export type AeadCipher = 'aes-256-gcm' | 'chacha20-poly1305'
export type KeyHandle = RawKey
export type EngineInfo = RawEngineInfo

/** A 32-byte key copied into native memory. Wipe your copy of `bytes` afterwards. */
export function importKey (bytes: Uint8Array): KeyHandle {
  checkBytes('bytes', bytes)
  if (bytes.length !== KEY_BYTES) throw badLength(`a key is ${KEY_BYTES} bytes, got ${bytes.length}`)
  return call(() => raw.createKey(bytes))
}

export function generateKey (): KeyHandle { return call(() => raw.generateKey()) }

/** HKDF-SHA256(key, no salt, HKDF_INFO_FILE_KEY | fileId | u32be(version)) as a new key handle. */
export function deriveFileKey (key: KeyHandle, fileId: Uint8Array, version: number): KeyHandle {
  checkBytes('fileId', fileId)
  if (fileId.length !== FILE_ID_BYTES) throw badLength(`a file id is ${FILE_ID_BYTES} bytes`)
  if (!Number.isInteger(version) || version < 0 || version > 0xffffffff) {
    throw new PemError('ENGINE_ERR_BAD_ARGUMENT', 'key version must be a u32')
  }
  return call(() => raw.deriveFileKey(key, fileId, version))
}

/**
 * Writes the key's 32 bytes into `out` (exactly KEY_BYTES). Only for handing a per-file key on, sealed: pass a
 * sodium_malloc buffer and sodium_memzero it as soon as the sealed copy is made (lib/server/keys.ts sealFileKey).
 */
export function copyKeyInto (key: KeyHandle, out: Uint8Array): void {
  checkBytes('out', out)
  if (out.length !== KEY_BYTES) throw badLength(`a key is ${KEY_BYTES} bytes, out holds ${out.length}`)
  call(() => raw.copyKeyInto(key, out))
}

/** Bytes the sealed form of blocks with these plaintext lengths takes. */
export function sealedLength (lens: Uint32Array): number { return sumLens(lens, OVERHEAD_BYTES) }
/** Plaintext bytes of sealed blocks with these lengths. */
export function openedLength (sealedLens: Uint32Array): number { return sumLens(sealedLens, -OVERHEAD_BYTES) }

export interface EngineOptions {
  /** OpenSSL 3 provider name; 'default' is the built-in one. */
  provider?: string
  cipher?: AeadCipher
  /** true (default): the cipher must come from `provider`. false: `provider` is preferred, 'default' may serve it. */
  strict?: boolean
  /** Groups a large async batch is split into (default CRYPTO_THREADS). */
  threads?: number
  /** Async calls below this many bytes run synchronously (default 64 KiB). */
  syncBelowBytes?: number
}

/** Throws ENGINE_ERR_PROVIDER when the provider cannot be loaded or does not offer the cipher. */
export function createEngine (opts: EngineOptions = {}): CryptoEngine {
  return new CryptoEngine(opts)
}

const rethrowNative = (err: unknown): never => { throw fromNative(err) }

interface Checked { n: number, inBytes: number, outBytes: number, inPlace: boolean }

export class CryptoEngine {
  private readonly native: RawEngine
  private readonly threads: number
  private readonly syncBelow: number

  constructor (opts: EngineOptions = {}) {
    const { provider = 'default', cipher = 'aes-256-gcm', strict = true } = opts
    this.threads = opts.threads ?? CRYPTO_THREADS
    this.syncBelow = opts.syncBelowBytes ?? SYNC_BELOW_BYTES
    if (!Number.isInteger(this.threads) || this.threads < 1) throw new PemError('ENGINE_ERR_BAD_ARGUMENT', 'threads must be >= 1')
    this.native = call(() => raw.createEngine(provider, cipher, strict))
  }

  /** Provider that serves the cipher, the one asked for, and the code path, e.g. 'default/aesni'. */
  info (): EngineInfo { return this.native.info() }

  /**
   * Seals blocks: input holds them back to back (lens[i] bytes each); out receives nonce|ciphertext|tag per block
   * (sealedLength(lens) bytes). AAD: aadLen bytes per block. Pass one buffer as both input and out to seal in place:
   * it then has the sealed layout with each plaintext at its ciphertext position (offset 12 in its slot).
   */
  sealBatchSync (key: KeyHandle, input: Uint8Array, lens: Uint32Array, aad: Uint8Array | null, aadLen: number, out: Uint8Array): number {
    this.check(true, input, lens, aad, aadLen, out)
    return call(() => this.native.seal(key, input, lens, aad ?? EMPTY, aadLen, out))
  }

  sealBatch (key: KeyHandle, input: Uint8Array, lens: Uint32Array, aad: Uint8Array | null, aadLen: number, out: Uint8Array): Promise<number> {
    return this.run(true, key, input, lens, aad ?? EMPTY, aadLen, out)
  }

  /**
   * Opens sealed blocks (lens are sealed lengths, each >= 28) into out (openedLength(lens) bytes). A block that
   * fails authentication throws ENGINE_ERR_AUTH with `index` = the first bad block; its output is wiped. In place
   * (same buffer as input and out) each plaintext lands at its ciphertext position.
   */
  openBatchSync (key: KeyHandle, input: Uint8Array, lens: Uint32Array, aad: Uint8Array | null, aadLen: number, out: Uint8Array): number {
    this.check(false, input, lens, aad, aadLen, out)
    return call(() => this.native.open(key, input, lens, aad ?? EMPTY, aadLen, out))
  }

  openBatch (key: KeyHandle, input: Uint8Array, lens: Uint32Array, aad: Uint8Array | null, aadLen: number, out: Uint8Array): Promise<number> {
    return this.run(false, key, input, lens, aad ?? EMPTY, aadLen, out)
  }

  // Never throws: failures are rejections. Not an async function, and a one-group batch hands back the pool's own
  // promise: each promise layer is a microtask per batch on the JS thread (docs/ENGINE.md "What an async batch costs").
  private run (seal: boolean, key: KeyHandle, input: Uint8Array, lens: Uint32Array, aad: Uint8Array, aadLen: number, out: Uint8Array): Promise<number> {
    try {
      const c = this.check(seal, input, lens, aad, aadLen, out)
      const native = this.native
      if (c.inBytes < this.syncBelow) return Promise.resolve(seal ? native.seal(key, input, lens, aad, aadLen, out) : native.open(key, input, lens, aad, aadLen, out))
      const parts = groupCount(c.inBytes, c.n, this.threads)
      if (parts === 1) return (seal ? native.sealAsync(key, input, lens, aad, aadLen, out) : native.openAsync(key, input, lens, aad, aadLen, out)).catch(rethrowNative)
      return this.runGroups(seal, key, input, lens, aad, aadLen, out, c, parts)
    } catch (err) { return Promise.reject(fromNative(err)) }
  }

  /** A batch cut into `parts` contiguous groups, one pool task each; settled into one result or the first bad block. */
  private async runGroups (seal: boolean, key: KeyHandle, input: Uint8Array, lens: Uint32Array, aad: Uint8Array, aadLen: number, out: Uint8Array, c: Checked, parts: number): Promise<number> {
    const native = this.native
    const groups = splitBlocks(lens, c.inBytes, parts)
    const runs: Array<Promise<number>> = []
    let inOff = 0
    let outOff = 0
    for (const g of groups) {
      const gl = lens.subarray(g.start, g.end)
      const gIn = sumLens(gl)
      const gOut = seal ? gIn + gl.length * OVERHEAD_BYTES : gIn - gl.length * OVERHEAD_BYTES
      const gAad = aad.subarray(g.start * aadLen, g.end * aadLen)
      // In place, both views are the same slice of the sealed layout.
      const sealedLen = seal ? gOut : gIn
      const src = c.inPlace ? input.subarray(inOff, inOff + sealedLen) : input.subarray(inOff, inOff + gIn)
      const dst = c.inPlace ? src : out.subarray(outOff, outOff + gOut)
      runs.push(seal ? native.sealAsync(key, src, gl, gAad, aadLen, dst) : native.openAsync(key, src, gl, gAad, aadLen, dst))
      inOff += c.inPlace ? sealedLen : gIn
      outOff += c.inPlace ? sealedLen : gOut
    }
    return await settle(groups, runs)
  }

  private check (seal: boolean, input: Uint8Array, lens: Uint32Array, aad: Uint8Array | null, aadLen: number, out: Uint8Array): Checked {
    checkBytes('input', input)
    checkLens('lens', lens)
    checkBytes('out', out)
    if (aad !== null) checkBytes('aad', aad)
    const n = lens.length
    if (!Number.isInteger(aadLen) || aadLen < 0 || aadLen > 65536) throw badLength('aadLen must be an integer in 0..65536')
    if ((aad?.length ?? 0) !== n * aadLen) throw badLength(`aad must hold lens.length * aadLen = ${n * aadLen} bytes`)
    let sum = 0
    for (let i = 0; i < n; i++) {
      const l = lens[i]
      if (seal ? l > MAX_BLOCK_BYTES : l < OVERHEAD_BYTES || l - OVERHEAD_BYTES > MAX_BLOCK_BYTES) {
        throw badLength(seal ? `block ${i} is longer than MAX_BLOCK_BYTES` : `sealed block ${i} has a bad length ${l}`)
      }
      sum += l
    }
    const delta = n * OVERHEAD_BYTES
    const inPlace = sameView(input, out)
    if (inPlace) {
      const want = seal ? sum + delta : sum
      if (input.length !== want) throw badLength(`in place, the buffer must hold exactly ${want} bytes`)
      return { n, inBytes: want, outBytes: want, inPlace }
    }
    if (overlaps(input, out)) throw new PemError('ENGINE_ERR_BAD_ARGUMENT', 'input and out overlap; pass one buffer as both for in place')
    const outBytes = seal ? sum + delta : sum - delta
    if (input.length !== sum) throw badLength(`input must hold exactly sum(lens) = ${sum} bytes`)
    if (out.length < outBytes) throw badLength(`out must hold at least ${outBytes} bytes`)
    return { n, inBytes: sum, outBytes, inPlace }
  }
}
