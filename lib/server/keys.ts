// spd's data-path state: the crypto engines (one per cipher, the configured one loaded at start), per-file keys
// derived from the named policy keys (bounded LRU of native handles); scratch buffers come from the data pool
// (lib/channel/buffer-pool.ts).
// Key material leaves this process only as a per-file key sealed to an enrolled host (sealedFileKey, host placement);
// otherwise hosts see grants, headers and sealed records.
import { sealFileKey } from '../crypto/file-key'
import type { Identity } from '../crypto/identity'
import {
  copyKeyInto, createEngine, deriveFileKey, importKey, type AeadCipher, type CryptoEngine, type KeyHandle
} from '../native/crypto-engine'
import { PemError } from '../wire/errors'
import type { FileCipher } from '../wire/file-format'
import { GrantTable } from './grants'
import type { KeyVersion, RetiredKeyVersion } from './state'

export const FILE_KEYS_MAX = 4096
/**
 * Data batches below this many bytes are sealed/opened on the event loop: a FUSE request's batch (128 KiB of blocks)
 * costs less CPU there than queued to the thread pool and split over threads (benchmarks/data: per-request CPU).
 */
export const DATA_SYNC_BELOW_BYTES = 512 * 1024

/** Handles by string id, least recently used dropped (and wiped) first. */
class HandleLru {
  private readonly map = new Map<string, KeyHandle>()
  constructor (private readonly max: number) {}
  get (id: string, make: () => KeyHandle): KeyHandle {
    let h = this.map.get(id)
    if (h !== undefined) { this.map.delete(id); this.map.set(id, h); return h }
    h = make()
    this.map.set(id, h)
    while (this.map.size > this.max) {
      const [oldId, old] = this.map.entries().next().value as [string, KeyHandle]
      this.map.delete(oldId)
      old.destroy()
    }
    return h
  }

  get size (): number { return this.map.size }
  clear (): void { for (const h of this.map.values()) h.destroy(); this.map.clear() }
}

export interface CryptoConfig { provider: string, cipher: AeadCipher }

export class DataService {
  readonly grants = new GrantTable()
  private readonly engines = new Map<FileCipher, CryptoEngine>()
  private readonly baseKeys = new HandleLru(1024)
  private readonly fileKeys = new HandleLru(FILE_KEYS_MAX)

  /** Loads the configured provider and cipher now: one that cannot load throws ENGINE_ERR_PROVIDER (start-up error). */
  constructor (readonly crypto: CryptoConfig, private readonly keys: () => Record<string, KeyVersion[]>, private readonly retired: () => Record<string, RetiredKeyVersion[]> = () => ({})) {
    this.engines.set(crypto.cipher, createEngine({ provider: crypto.provider, cipher: crypto.cipher, syncBelowBytes: DATA_SYNC_BELOW_BYTES }))
  }

  get cipher (): FileCipher { return this.crypto.cipher }

  /** The engine of the configured cipher; a file sealed under the other one gets its own engine on first use. */
  engine (cipher: FileCipher): CryptoEngine {
    let e = this.engines.get(cipher)
    if (e === undefined) {
      e = createEngine({ provider: this.crypto.provider, cipher, strict: false, syncBelowBytes: DATA_SYNC_BELOW_BYTES })
      this.engines.set(cipher, e)
    }
    return e
  }

  /** Newest version of a named key; PEM_ERR_NO_KEY when the policy store has no such key. */
  newestVersion (name: string): number {
    const list = this.keys()[name]
    if (list === undefined || list.length === 0) throw new PemError('PEM_ERR_NO_KEY', `no key '${name}'`)
    return list[0].version
  }

  /**
   * HKDF(named key version, file id, version), cached. A retired version: PEM_ERR_KEY_RETIRED; another version this
   * member does not hold: PEM_ERR_KEY_VERSION.
   */
  fileKey (name: string, version: number, fileId: Buffer): KeyHandle {
    const list = this.keys()[name]
    if (list === undefined) throw new PemError('PEM_ERR_NO_KEY', `no key '${name}'`)
    const kv = list.find(k => k.version === version)
    if (kv === undefined) {
      const r = this.retired()[name]?.find(k => k.version === version)
      if (r !== undefined) throw new PemError('PEM_ERR_KEY_RETIRED', `key '${name}' version ${version} was retired (${r.retired} by ${r.by}): files under it can no longer be opened`)
      throw new PemError('PEM_ERR_KEY_VERSION', `key '${name}' has no version ${version}`)
    }
    // The creation time is part of the id: a re-created key of the same name and version never hits an old handle.
    const baseId = `${name}\0${version}\0${kv.created}`
    return this.fileKeys.get(`${baseId}\0${fileId.toString('hex')}`, () =>
      deriveFileKey(this.baseKeys.get(baseId, () => importKey(kv.material)), fileId, version))
  }

  /**
   * The per-file key (the same HKDF as fileKey) sealed to `hostKey` (raw Ed25519), bound to file id and version.
   * The bytes leave the native handle only into a sodium_malloc buffer that is wiped once sealed (crypto/file-key.ts).
   */
  sealedFileKey (name: string, version: number, fileId: Buffer, member: Identity, hostKey: Buffer): Buffer {
    const handle = this.fileKey(name, version, fileId)
    return sealFileKey(member, hostKey, fileId, version, out => copyKeyInto(handle, out))
  }

  get cachedFileKeys (): number { return this.fileKeys.size }

  /** Wipes every cached key handle (a version was retired: none of its handles may outlive it). */
  forgetKeys (): void { this.fileKeys.clear(); this.baseKeys.clear() }

  close (): void { this.forgetKeys() }
}
