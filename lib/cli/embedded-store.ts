// The embedded store file `.pemfs-embedded` in a guarded directory (docs/PEMFS.md "Standalone: `--embedded`",
// lib/wire/FORMAT.md §8): it names the private spd that holds the directory's keys by a random id, so a moved or
// renamed directory finds its store, and carries that spd's named keys wrapped under a key derived from the
// recovery key (scrypt), so another machine can rebuild the store from the directory alone. JSON:
//   {"pemfs": "embedded store", "format": 1, "store": 32 hex, "created": ISO date,
//    "kdf": {"name": "scrypt", "N", "r", "p", "salt": base64url 16 bytes},
//    "keys": base64url sealAtRest(scrypt(recovery key), key set (lib/server/key-set.ts),
//            AAD = AAD_CTX_EMBEDDED_KEYS ‖ 0x00 ‖ store ‖ 0x00 ‖ "N.r.p" ‖ 0x00 ‖ salt)}
// The recovery key is 32 random bytes, written as 8 groups of 8 hex digits joined by '-'.
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { AAD_CTX_EMBEDDED_KEYS } from '../crypto/contexts'
import { checkScryptParams, deriveKey, SCRYPT_DEFAULT, type ScryptParams } from '../crypto/password'
import { openAtRest, sealAtRest } from '../crypto/seal'
import { decodeKeySet, encodeKeySet, type KeySet } from '../server/key-set'
import { replaceDurably } from '../server/durable-file'
import { PemError } from '../wire/errors'

export const STORE_FILE = '.pemfs-embedded'
const FORMAT = 1

export interface StoreFile { store: string, created: string, kdf: ScryptParams & { salt: Buffer }, keys: Buffer }

export function newStoreId (): string { return crypto.randomBytes(16).toString('hex') }

export function formatRecoveryKey (key: Buffer): string {
  return (key.toString('hex').match(/.{8}/g) as string[]).join('-')
}

export function newRecoveryKey (): string { return formatRecoveryKey(crypto.randomBytes(32)) }

/** The recovery key's 32 bytes; dashes and white space are ignored, case too. Anything else: PEM_ERR_BAD_ARGUMENT. */
export function parseRecoveryKey (text: string, where: string): Buffer {
  const hex = text.replace(/[\s-]/g, '').toLowerCase()
  if (!/^[0-9a-f]{64}$/.test(hex)) throw new PemError('PEM_ERR_BAD_ARGUMENT', `${where} is not a recovery key (64 hex digits, in groups of 8 joined by '-')`)
  return Buffer.from(hex, 'hex')
}

function aad (store: string, kdf: StoreFile['kdf']): Buffer {
  return Buffer.concat([Buffer.from(`${AAD_CTX_EMBEDDED_KEYS}\0${store}\0${kdf.N}.${kdf.r}.${kdf.p}\0`), kdf.salt])
}

/** Reads DIR/.pemfs-embedded; undefined when there is none; a malformed one is PEM_ERR_BAD_CONFIG naming it. */
export function readStoreFile (dir: string): StoreFile | undefined {
  const file = path.join(dir, STORE_FILE)
  let text: string
  try { text = fs.readFileSync(file, 'utf8') } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw new PemError('PEM_ERR_BAD_CONFIG', `cannot read ${file}: ${(err as Error).message}`)
  }
  const bad = (what: string): never => { throw new PemError('PEM_ERR_BAD_CONFIG', `${file} is not a pemfs embedded store file: ${what}`) }
  let d: Record<string, unknown> = {}
  try { d = JSON.parse(text) } catch { bad('not JSON') }
  if (d === null || typeof d !== 'object' || d.pemfs !== 'embedded store') bad('no "pemfs": "embedded store"')
  if (d.format !== FORMAT) bad(`format ${String(d.format)}; this build reads ${FORMAT}`)
  if (typeof d.store !== 'string' || !/^[0-9a-f]{32}$/.test(d.store)) bad('"store" must be 32 hex digits')
  const k = d.kdf as Record<string, unknown> | null
  if (k === null || typeof k !== 'object' || k.name !== 'scrypt' || typeof k.salt !== 'string') bad('"kdf" must be scrypt with a salt')
  const kdf = { N: Number(k?.N), r: Number(k?.r), p: Number(k?.p), salt: Buffer.from(String(k?.salt), 'base64url') }
  if (!checkScryptParams(kdf) || kdf.salt.length < 16) bad('"kdf" parameters out of range')
  if (typeof d.keys !== 'string') bad('no "keys"')
  return { store: d.store as string, created: String(d.created), kdf, keys: Buffer.from(d.keys as string, 'base64url') }
}

/** The key set in `f` opened with the recovery key; a wrong key (or an altered file) is PEM_ERR_AUTH. */
export async function openStoreKeys (f: StoreFile, recoveryKey: Buffer, file: string): Promise<KeySet> {
  const wrap = await deriveKey(recoveryKey, f.kdf.salt, f.kdf)
  let plain: Buffer
  try { plain = openAtRest(wrap, f.keys, aad(f.store, f.kdf)) } catch {
    throw new PemError('PEM_ERR_AUTH', `the recovery key does not open ${file} (a wrong key, or the file was altered): nothing was changed`)
  } finally { wrap.fill(0) }
  return decodeKeySet(plain, file)
}

/** Writes DIR/.pemfs-embedded (0600, atomically) with `keys` wrapped under the recovery key; a fresh salt each time. */
export async function writeStoreFile (dir: string, store: string, created: string, keys: KeySet, recoveryKey: Buffer): Promise<void> {
  const kdf = { ...SCRYPT_DEFAULT, salt: crypto.randomBytes(16) }
  const wrap = await deriveKey(recoveryKey, kdf.salt, kdf)
  let sealed: Buffer
  try { sealed = sealAtRest(wrap, encodeKeySet(keys), aad(store, kdf)) } finally { wrap.fill(0) }
  const doc = { pemfs: 'embedded store', format: FORMAT, store, created, kdf: { name: 'scrypt', N: kdf.N, r: kdf.r, p: kdf.p, salt: kdf.salt.toString('base64url') }, keys: sealed.toString('base64url') }
  replaceDurably(path.join(dir, STORE_FILE), [Buffer.from(JSON.stringify(doc, null, 2) + '\n')], 'embedded store file')
}
