// A member's named data keys as one blob, for the embedded store's file (lib/cli/embedded-store.ts): read offline
// from a stopped or running member's data dir (its identity opens store.bin), encoded as msgpack
// {format: 1, keys: {name: [{version, material (32 bytes), created}]}}, and checked when decoded for `spd init
// --import-keys`. Key bytes travel only as that blob: never in argv, logs or error messages.
import path from 'node:path'
import { loadIdentity } from '../crypto/identity'
import { PemError } from '../wire/errors'
import { pack, unpack } from '../wire/frame'
import { IDENTITY_FILE } from './member'
import type { KeyVersion } from './state'
import { ConfigStore, storeKeyFrom } from './store'

export type KeySet = Record<string, KeyVersion[]>
const FORMAT = 1
const KEY_NAME = /^[A-Za-z0-9._-]{1,64}$/

/** The named keys in `dataDir`'s store (newest version first in each list). */
export function readKeySet (dataDir: string): KeySet {
  const identity = loadIdentity(path.join(dataDir, IDENTITY_FILE))
  return ConfigStore.open(dataDir, storeKeyFrom(identity.signKey)).state.keys
}

export function encodeKeySet (keys: KeySet): Buffer {
  return pack({ format: FORMAT, keys })
}

/** The key set in `bytes`; anything malformed is PEM_ERR_BAD_ARGUMENT naming `where` and the key, never its bytes. */
export function decodeKeySet (bytes: Uint8Array, where: string): KeySet {
  const bad = (what: string): never => { throw new PemError('PEM_ERR_BAD_ARGUMENT', `${where}: ${what}`) }
  let doc: unknown
  try { doc = unpack(bytes) } catch { bad('not a key set') }
  const d = doc as { format?: unknown, keys?: unknown }
  if (d === null || typeof d !== 'object' || d.format !== FORMAT || d.keys === null || typeof d.keys !== 'object' || Array.isArray(d.keys)) bad(`not a key set of format ${FORMAT}`)
  const keys: KeySet = {}
  for (const [name, list] of Object.entries(d.keys as Record<string, unknown>)) {
    if (!KEY_NAME.test(name)) bad(`key name ${JSON.stringify(name.slice(0, 64))} is not 1-64 characters of A-Z a-z 0-9 . _ -`)
    if (!Array.isArray(list) || list.length === 0) bad(`key '${name}' has no versions`)
    keys[name] = (list as unknown[]).map((v, i) => {
      const k = v as { version?: unknown, material?: unknown, created?: unknown }
      if (k === null || typeof k !== 'object' || !Number.isSafeInteger(k.version) || (k.version as number) < 1) bad(`key '${name}' entry ${i}: version must be a positive integer`)
      if (!(k.material instanceof Uint8Array) || k.material.length !== 32) bad(`key '${name}' version ${String(k.version)}: material must be 32 bytes`)
      if (typeof k.created !== 'string' || Number.isNaN(Date.parse(k.created))) bad(`key '${name}' version ${String(k.version)}: created must be a date`)
      return { version: k.version as number, material: Buffer.from(k.material as Uint8Array), created: k.created as string }
    })
    for (let i = 1; i < keys[name].length; i++) if (keys[name][i].version >= keys[name][i - 1].version) bad(`key '${name}': versions must be listed newest first, each once`)
  }
  return keys
}

/** Same names, versions, material and creation times. */
export function sameKeySet (a: KeySet, b: KeySet): boolean {
  return encodeKeySet(a).equals(encodeKeySet(b))
}
