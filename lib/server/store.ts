// Configuration store: the member's ConfigState, versioned, encrypted at rest, replaced atomically on disk.
//
// File <data-dir>/store.bin (integers big endian), lib/wire/FORMAT.md §3:
//   8 bytes  magic "PEMSTORE"
//   2 bytes  store format version (1)
//   8 bytes  configuration version
//   N bytes  sealed msgpack(ConfigState): XChaCha20-Poly1305, nonce ‖ ciphertext ‖ tag,
//            AAD = AAD_CTX_CONFIG_STORE ‖ the 18 bytes above
// A commit writes store.bin.tmp, fsyncs it, renames it over store.bin and fsyncs the directory, so a crash leaves
// either the old or the new file. The key is derived from the member's identity key (HKDF, context below).
// Changes arrive only through the cluster protocol (lib/server/cluster/service.ts): install() writes the exact
// plaintext the cluster agreed on, so its SHA-256 (the digest every member advertises) survives restarts.
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { AAD_CTX_CONFIG_STORE, KDF_CTX_STORE_KEY } from '../crypto/contexts'
import { openAtRest, sealAtRest } from '../crypto/seal'
import { PemError } from '../wire/errors'
import { pack, unpack } from '../wire/frame'
import { replaceDurably } from './durable-file'
import { emptyState, type ConfigState } from './state'

const MAGIC = Buffer.from('PEMSTORE')
const FORMAT_VERSION = 1
const HEADER_BYTES = 18

/** The store key, derived from the 32-byte seed of the member's identity key (Identity.signKey[0..32)). */
export function storeKeyFrom (identitySeed: Uint8Array): Buffer {
  return Buffer.from(crypto.hkdfSync('sha256', identitySeed.subarray(0, 32), Buffer.alloc(0), KDF_CTX_STORE_KEY, 32))
}

function header (version: number): Buffer {
  const h = Buffer.alloc(HEADER_BYTES)
  MAGIC.copy(h, 0)
  h.writeUInt16BE(FORMAT_VERSION, 8)
  h.writeBigUInt64BE(BigInt(version), 10)
  return h
}

function aad (head: Buffer): Buffer { return Buffer.concat([Buffer.from(AAD_CTX_CONFIG_STORE), head]) }

/** The bytes of store.bin holding `plaintext` (pack of a ConfigState of that version), as consecutive buffers. */
export function encodeStoreFile (key: Buffer, version: number, plaintext: Buffer): Buffer[] {
  const head = header(version)
  return [head, sealAtRest(key, plaintext, aad(head))]
}

/** Opens the bytes of store.bin (`where` names it in errors); anything wrong with them is PEM_ERR_STORE. */
export function decodeStoreFile (key: Buffer, bytes: Buffer, where: string): { state: ConfigState, plain: Buffer } {
  if (bytes.length < HEADER_BYTES || !bytes.subarray(0, 8).equals(MAGIC)) throw new PemError('PEM_ERR_STORE', `${where} is not a configuration store`)
  const fmt = bytes.readUInt16BE(8)
  if (fmt !== FORMAT_VERSION) throw new PemError('PEM_ERR_STORE', `${where} has store format ${fmt}; this build reads ${FORMAT_VERSION}`)
  const opened = openAtRest(key, bytes.subarray(HEADER_BYTES), aad(bytes.subarray(0, HEADER_BYTES)))
  const plain = Buffer.from(opened.buffer, opened.byteOffset, opened.byteLength)
  let state: ConfigState
  try { state = unpack(plain) as ConfigState } catch (err) { throw new PemError('PEM_ERR_STORE', `${where}: content does not decode: ${(err as Error).message}`) }
  if (state === null || typeof state !== 'object' || Array.isArray(state) || state.version !== Number(bytes.readBigUInt64BE(10))) {
    throw new PemError('PEM_ERR_STORE', `${where}: header and content disagree on the version`)
  }
  return { state, plain }
}

export class ConfigStore {
  private current: ConfigState
  private plain: Buffer
  private constructor (private readonly file: string, private readonly key: Buffer, state: ConfigState, plaintext: Buffer) {
    this.current = state
    this.plain = plaintext
  }

  static exists (dataDir: string): boolean { return fs.existsSync(path.join(dataDir, 'store.bin')) }

  static create (dataDir: string, key: Buffer, state: ConfigState = emptyState()): ConfigStore {
    const plaintext = pack(state)
    const store = new ConfigStore(path.join(dataDir, 'store.bin'), key, state, plaintext)
    store.write(state.version, plaintext)
    return store
  }

  static open (dataDir: string, key: Buffer): ConfigStore {
    const file = path.join(dataDir, 'store.bin')
    let bytes: Buffer
    try { bytes = fs.readFileSync(file) } catch (err) { throw new PemError('PEM_ERR_STORE', `cannot read ${file}: ${(err as Error).message}`) }
    const { state, plain } = decodeStoreFile(key, bytes, file)
    return new ConfigStore(file, key, state, plain)
  }

  get state (): Readonly<ConfigState> { return this.current }

  /** The exact bytes of the installed configuration (its SHA-256 is the digest the cluster advertises). */
  get plaintext (): Buffer { return this.plain }

  /**
   * Makes a configuration the cluster agreed on durable: on disk before this returns. Versions only go up
   * (PEM_ERR_ROLLBACK otherwise); `plaintext` must be pack(state) as the cluster hashed it.
   */
  install (state: ConfigState, plaintext: Buffer): void {
    if (state.version <= this.current.version) throw new PemError('PEM_ERR_ROLLBACK', `version ${state.version} is not above the installed ${this.current.version}`)
    this.replace(state, plaintext)
  }

  /** `spd trust` only: replace a fresh member's state by its trust state (version 0), before it ever joined. */
  resetForJoin (state: ConfigState): void { this.replace(state, pack(state)) }

  private replace (state: ConfigState, plaintext: Buffer): void {
    this.write(state.version, plaintext)
    this.current = state
    this.plain = plaintext
  }

  private write (version: number, plaintext: Buffer): void {
    replaceDurably(this.file, encodeStoreFile(this.key, version, plaintext), 'store')
  }
}
