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
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { AAD_CTX_CONFIG_STORE, KDF_CTX_STORE_KEY } from '../crypto/contexts'
import { openAtRest, sealAtRest } from '../crypto/seal'
import { PemError } from '../wire/errors'
import { pack, unpack } from '../wire/frame'
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

export class ConfigStore {
  private current: ConfigState
  private constructor (private readonly file: string, private readonly key: Buffer, state: ConfigState) { this.current = state }

  static exists (dataDir: string): boolean { return fs.existsSync(path.join(dataDir, 'store.bin')) }

  static create (dataDir: string, key: Buffer, state: ConfigState = emptyState()): ConfigStore {
    const store = new ConfigStore(path.join(dataDir, 'store.bin'), key, state)
    store.write(state)
    return store
  }

  static open (dataDir: string, key: Buffer): ConfigStore {
    const file = path.join(dataDir, 'store.bin')
    let bytes: Buffer
    try { bytes = fs.readFileSync(file) } catch (err) { throw new PemError('PEM_ERR_STORE', `cannot read ${file}: ${(err as Error).message}`) }
    if (bytes.length < HEADER_BYTES || !bytes.subarray(0, 8).equals(MAGIC)) throw new PemError('PEM_ERR_STORE', `${file} is not a configuration store`)
    const fmt = bytes.readUInt16BE(8)
    if (fmt !== FORMAT_VERSION) throw new PemError('PEM_ERR_STORE', `${file} has store format ${fmt}; this build reads ${FORMAT_VERSION}`)
    const plain = openAtRest(key, bytes.subarray(HEADER_BYTES), aad(bytes.subarray(0, HEADER_BYTES)))
    const state = unpack(plain) as ConfigState
    if (state.version !== Number(bytes.readBigUInt64BE(10))) throw new PemError('PEM_ERR_STORE', `${file}: header and content disagree on the version`)
    return new ConfigStore(file, key, state)
  }

  get state (): Readonly<ConfigState> { return this.current }

  /**
   * Applies an admin change: the mutator edits a copy, the version goes up by one, and the new state is on disk
   * before this returns. A mutator that throws changes nothing.
   */
  commit (by: string, mutate: (draft: ConfigState) => void): ConfigState {
    const draft = structuredClone(this.current)
    for (const list of Object.values(draft.keys)) for (const k of list) k.material = Buffer.from(k.material)
    mutate(draft)
    draft.version = this.current.version + 1
    draft.changedBy = by
    draft.changedAt = new Date().toISOString()
    this.write(draft)
    this.current = draft
    return draft
  }

  private write (state: ConfigState): void {
    const head = header(state.version)
    const body = sealAtRest(this.key, pack(state), aad(head))
    const tmp = `${this.file}.tmp`
    const fd = fs.openSync(tmp, 'w', 0o600)
    try {
      fs.writeSync(fd, head)
      fs.writeSync(fd, body)
      fs.fsyncSync(fd)
    } finally { fs.closeSync(fd) }
    fs.renameSync(tmp, this.file)
    const dir = fs.openSync(path.dirname(this.file), 'r')
    try { fs.fsyncSync(dir) } finally { fs.closeSync(dir) }
  }
}
