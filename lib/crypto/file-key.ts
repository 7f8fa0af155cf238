// A per-file key sealed by one member to one host (FileKey, issue 18): the fixed plaintext layout in a pair box
// (crypto/seal.ts sealPair: crypto_kx between the two enrolled identities, XChaCha20-Poly1305), opened and checked
// on the host. Layout (lib/wire/FORMAT.md §4.5), 58 bytes: magic "PEMK" (4) | layout version u16 (2) | file id (16) |
// key version u32 (4) | key (32). Every buffer that holds the key is sodium_malloc'd and wiped after use; the
// buffers are allocated once and reused (a sodium_malloc costs an mmap, two mprotects and an mlock: ~100-200 µs,
// more than the box itself).
import { PemError } from '../wire/errors'
import { FILE_ID_BYTES } from '../wire/file-format'
import { SEALED_FILE_KEY_BYTES } from '../wire/packets'
import type { Identity } from './identity'
import { AAD_CTX_FILE_KEY } from './contexts'
import { openPair, PAIR_OVERHEAD, sealPair } from './seal'
import { sodium } from './sodium'

export const FILE_KEY_MAGIC = Buffer.from('PEMK', 'latin1')
export const FILE_KEY_LAYOUT = 2
export const FILE_KEY_BYTES = 32
export const FILE_KEY_PLAIN_BYTES = 4 + 2 + FILE_ID_BYTES + 4 + FILE_KEY_BYTES // 58
const KEY_AT = FILE_KEY_PLAIN_BYTES - FILE_KEY_BYTES

if (FILE_KEY_PLAIN_BYTES + PAIR_OVERHEAD !== SEALED_FILE_KEY_BYTES) throw new Error('SEALED_FILE_KEY_BYTES disagrees with the layout')

// The layout's plaintext while a key is sealed or opened (both synchronous, so never in use by two calls at once).
let scratch: Buffer | null = null
const plainScratch = (): Buffer => (scratch ??= sodium.sodium_malloc(FILE_KEY_PLAIN_BYTES))

// Opened keys wait in these slots until the native session has its copy (releaseFileKey); past SLOTS held at once
// a key gets a sodium_malloc buffer of its own.
const SLOTS = 256
let slots: Buffer | null = null
const freeSlots: number[] = []
const slotOf = new WeakMap<Buffer, number>()

function takeKeyBuffer (): Buffer {
  if (slots === null) {
    slots = sodium.sodium_malloc(SLOTS * FILE_KEY_BYTES)
    for (let i = SLOTS - 1; i >= 0; i--) freeSlots.push(i)
  }
  const i = freeSlots.pop()
  if (i === undefined) return sodium.sodium_malloc(FILE_KEY_BYTES)
  const b = slots.subarray(i * FILE_KEY_BYTES, (i + 1) * FILE_KEY_BYTES)
  slotOf.set(b, i)
  return b
}

/** Wipes a key openFileKey returned and gives its buffer back; call it once, when the key has been handed over. */
export function releaseFileKey (key: Buffer): void {
  sodium.sodium_memzero(key)
  const i = slotOf.get(key)
  if (i === undefined) return
  slotOf.delete(key)
  freeSlots.push(i)
}

/**
 * Seals `key` (32 bytes) from `member` for the holder of `hostKey` (raw Ed25519 public key), bound to the file id and
 * key version. `fill` writes the key into the plaintext buffer (a sodium_malloc buffer, wiped before this returns).
 */
export function sealFileKey (member: Identity, hostKey: Uint8Array, fileId: Uint8Array, keyVersion: number, fill: (key: Buffer) => void): Buffer {
  if (fileId.length !== FILE_ID_BYTES) throw new PemError('PEM_ERR_BAD_ARGUMENT', `a file id is ${FILE_ID_BYTES} bytes`)
  const plain = plainScratch()
  try {
    FILE_KEY_MAGIC.copy(plain, 0)
    plain.writeUInt16BE(FILE_KEY_LAYOUT, 4)
    plain.set(fileId, 6)
    plain.writeUInt32BE(keyVersion, 6 + FILE_ID_BYTES)
    fill(plain.subarray(KEY_AT))
    return sealPair(member, hostKey, plain, AAD_CTX_FILE_KEY)
  } finally {
    sodium.sodium_memzero(plain)
  }
}

/**
 * Opens a file key the member with raw Ed25519 key `memberKey` sealed to this host (`identity`) and checks that it is
 * for this file id and key version; returns the 32 key bytes in a sodium_malloc buffer (give it back with
 * releaseFileKey, which wipes it). A box for another host, from another member, altered, or for another file:
 * PEM_ERR_KEY_NOT_GRANTED.
 */
export function openFileKey (identity: Identity, memberKey: Uint8Array, sealed: Uint8Array, fileId: Uint8Array, keyVersion: number): Buffer {
  const plain = plainScratch()
  try {
    if (openPair(identity, memberKey, sealed, plain, AAD_CTX_FILE_KEY) === false) throw new PemError('PEM_ERR_KEY_NOT_GRANTED', 'the sealed file key does not open with this host\'s key and the member\'s')
    if (!plain.subarray(0, 4).equals(FILE_KEY_MAGIC) || plain.readUInt16BE(4) !== FILE_KEY_LAYOUT) {
      throw new PemError('PEM_ERR_KEY_NOT_GRANTED', 'the sealed file key has an unknown layout')
    }
    if (!plain.subarray(6, 6 + FILE_ID_BYTES).equals(fileId)) throw new PemError('PEM_ERR_KEY_NOT_GRANTED', 'the sealed file key is for another file')
    const v = plain.readUInt32BE(6 + FILE_ID_BYTES)
    if (v !== keyVersion) throw new PemError('PEM_ERR_KEY_VERSION', `the sealed file key is for key version ${v}, the header names ${keyVersion}`)
    const key = takeKeyBuffer()
    plain.copy(key, 0, KEY_AT)
    return key
  } finally {
    sodium.sodium_memzero(plain)
  }
}
