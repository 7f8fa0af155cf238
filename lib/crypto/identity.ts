// Ed25519 identities of members and hosts: key file (PKCS8 PEM, mode 0600), key id, TLS certificate, sodium signing key.
// A peer's id is the hex SHA-256 of its raw 32-byte public key (DESIGN §3). Humans see keys as `ed25519:<base64url>`.
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { PemError } from '../wire/errors'
import { buildSelfSignedCert, derToPem } from './cert'
import { sodium } from './sodium'

export const PUBLIC_KEY_BYTES = 32
export const KEY_PREFIX = 'ed25519:'
// DER prefixes of an Ed25519 SubjectPublicKeyInfo (RFC 8410) and of an unencrypted PKCS8 private key.
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex')
const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex')

export interface Identity {
  /** Raw Ed25519 public key, 32 bytes. */
  publicKey: Buffer
  /** Hex SHA-256 of publicKey: the member / host id. */
  id: string
  keyObject: crypto.KeyObject
  publicKeyObject: crypto.KeyObject
  /** Self-signed certificate carrying the key in TLS (rebuilt on every load; peers pin the key, not the cert). */
  certPem: string
  keyPem: string
  /** libsodium secret key seed || public key (64 bytes) in a sodium_malloc buffer, for lib/crypto/sign.ts. */
  signKey: Buffer
}

/** Hex SHA-256 of a raw public key. */
export function keyId (rawPublicKey: Uint8Array): string {
  return crypto.createHash('sha256').update(rawPublicKey).digest('hex')
}

/** `ed25519:<base64url of the 32 raw bytes>` (51 characters). */
export function encodePublicKey (rawPublicKey: Uint8Array): string {
  if (rawPublicKey.length !== PUBLIC_KEY_BYTES) throw new PemError('PEM_ERR_BAD_ARGUMENT', 'an Ed25519 public key is 32 bytes')
  return KEY_PREFIX + Buffer.from(rawPublicKey).toString('base64url')
}

// Keys parsed before (valid ones only): the point check costs ~100 µs, and hosts' keys are parsed per request.
const PARSED_KEPT = 1024
const parsedKeys = new Map<string, Buffer>()

/** Parse `ed25519:<base64url>`: exact length, canonical encoding, and a valid curve point of large order. */
export function parsePublicKey (text: string): Buffer {
  const known = parsedKeys.get(text)
  if (known !== undefined) return Buffer.from(known)
  if (typeof text !== 'string' || !text.startsWith(KEY_PREFIX)) throw new PemError('PEM_ERR_BAD_ARGUMENT', `public key must look like ${KEY_PREFIX}<base64url>`)
  const b64 = text.slice(KEY_PREFIX.length)
  if (!/^[A-Za-z0-9_-]{43}$/.test(b64)) throw new PemError('PEM_ERR_BAD_ARGUMENT', 'public key must be 43 base64url characters after the prefix')
  const raw = Buffer.from(b64, 'base64url')
  if (raw.length !== PUBLIC_KEY_BYTES || raw.toString('base64url') !== b64) throw new PemError('PEM_ERR_BAD_ARGUMENT', 'public key is not canonical base64url')
  if (!sodium.crypto_core_ed25519_is_valid_point(raw)) throw new PemError('PEM_ERR_BAD_ARGUMENT', 'public key is not a valid Ed25519 point')
  if (parsedKeys.size >= PARSED_KEPT) parsedKeys.delete(parsedKeys.keys().next().value as string)
  parsedKeys.set(text, Buffer.from(raw))
  return raw
}

/** Raw 32 bytes of an Ed25519 public KeyObject; throws PEM_ERR_PEER_KEY for any other key type. */
export function rawPublicKey (key: crypto.KeyObject): Buffer {
  if (key.asymmetricKeyType !== 'ed25519') throw new PemError('PEM_ERR_PEER_KEY', `key type ${String(key.asymmetricKeyType)} is not ed25519`)
  const spki = key.export({ type: 'spki', format: 'der' })
  if (spki.length !== SPKI_PREFIX.length + PUBLIC_KEY_BYTES || !spki.subarray(0, SPKI_PREFIX.length).equals(SPKI_PREFIX)) {
    throw new PemError('PEM_ERR_PEER_KEY', 'unexpected Ed25519 public key encoding')
  }
  return Buffer.from(spki.subarray(SPKI_PREFIX.length))
}

/** A public KeyObject from raw bytes (for crypto.verify / X509Certificate.verify). */
export function publicKeyFromRaw (raw: Uint8Array): crypto.KeyObject {
  if (raw.length !== PUBLIC_KEY_BYTES) throw new PemError('PEM_ERR_BAD_ARGUMENT', 'an Ed25519 public key is 32 bytes')
  return crypto.createPublicKey({ key: Buffer.concat([SPKI_PREFIX, raw]), format: 'der', type: 'spki' })
}

/** Build an Identity around a private key object (in memory; nothing is written). */
export function identityFromKey (keyObject: crypto.KeyObject): Identity {
  if (keyObject.type !== 'private' || keyObject.asymmetricKeyType !== 'ed25519') throw new PemError('PEM_ERR_BAD_CONFIG', 'identity key must be an Ed25519 private key')
  const publicKeyObject = crypto.createPublicKey(keyObject)
  const publicKey = rawPublicKey(publicKeyObject)
  const id = keyId(publicKey)
  const pkcs8 = keyObject.export({ type: 'pkcs8', format: 'der' })
  if (pkcs8.length !== PKCS8_PREFIX.length + 32 || !pkcs8.subarray(0, PKCS8_PREFIX.length).equals(PKCS8_PREFIX)) {
    throw new PemError('PEM_ERR_BAD_CONFIG', 'unexpected Ed25519 private key encoding')
  }
  const seed = sodium.sodium_malloc(sodium.crypto_sign_SEEDBYTES)
  pkcs8.copy(seed, 0, PKCS8_PREFIX.length)
  sodium.sodium_memzero(pkcs8)
  const signKey = sodium.sodium_malloc(sodium.crypto_sign_SECRETKEYBYTES)
  const pk = Buffer.alloc(sodium.crypto_sign_PUBLICKEYBYTES)
  sodium.crypto_sign_seed_keypair(pk, signKey, seed)
  sodium.sodium_memzero(seed)
  if (!pk.equals(publicKey)) throw new PemError('PEM_ERR_BAD_CONFIG', 'libsodium and OpenSSL disagree on the public key')
  const certDer = buildSelfSignedCert(keyObject, publicKeyObject, { commonName: id.slice(0, 16) })
  return {
    publicKey,
    id,
    keyObject,
    publicKeyObject,
    certPem: derToPem(certDer),
    keyPem: keyObject.export({ type: 'pkcs8', format: 'pem' }) as string,
    signKey
  }
}

/** A fresh identity that lives only in memory (tests, benchmarks). */
export function generateIdentity (): Identity {
  return identityFromKey(crypto.generateKeyPairSync('ed25519').privateKey)
}

/**
 * Create a new key pair and write its private key to `file` (PKCS8 PEM, mode 0600). Refuses to overwrite an
 * existing file. The write is atomic: a temporary file is fsynced and hard-linked into place.
 */
export function createIdentity (file: string): Identity {
  const { privateKey } = crypto.generateKeyPairSync('ed25519')
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${crypto.randomBytes(4).toString('hex')}.tmp`)
  const fd = fs.openSync(tmp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o600)
  try {
    fs.fchmodSync(fd, 0o600) // the umask cannot widen it, but make the intent explicit
    fs.writeSync(fd, pem)
    fs.fsyncSync(fd)
  } finally {
    fs.closeSync(fd)
  }
  try {
    fs.linkSync(tmp, file)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new PemError('PEM_ERR_BAD_CONFIG', `identity key file ${file} already exists`)
    throw err
  } finally {
    fs.rmSync(tmp, { force: true })
  }
  fsyncDir(path.dirname(file))
  return identityFromKey(privateKey)
}

/** Load an identity; the key file must be a regular file that group and other cannot access. */
export function loadIdentity (file: string): Identity {
  let fd: number
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW)
  } catch (err) {
    throw new PemError('PEM_ERR_BAD_CONFIG', `cannot open identity key file ${file}: ${(err as Error).message}`, { cause: err })
  }
  let text: string
  try {
    const st = fs.fstatSync(fd)
    if (!st.isFile()) throw new PemError('PEM_ERR_BAD_CONFIG', `identity key file ${file} is not a regular file`)
    if ((st.mode & 0o077) !== 0) {
      const mode = (st.mode & 0o777).toString(8).padStart(4, '0')
      throw new PemError('PEM_ERR_BAD_CONFIG', `identity key file ${file} has mode ${mode}: group/other may access it; run chmod 600 ${file}`)
    }
    if (st.size > 64 * 1024) throw new PemError('PEM_ERR_BAD_CONFIG', `identity key file ${file} is too large`)
    text = fs.readFileSync(fd, 'utf8')
  } finally {
    fs.closeSync(fd)
  }
  let key: crypto.KeyObject
  try {
    key = crypto.createPrivateKey({ key: text, format: 'pem' })
  } catch (err) {
    throw new PemError('PEM_ERR_BAD_CONFIG', `identity key file ${file} does not hold a PEM private key`, { cause: err })
  }
  return identityFromKey(key)
}

function fsyncDir (dir: string): void {
  let fd: number | undefined
  try {
    fd = fs.openSync(dir, 'r')
    fs.fsyncSync(fd)
  } catch { /* some file systems refuse fsync on directories; the link itself is already durable there */ } finally {
    if (fd !== undefined) fs.closeSync(fd)
  }
}
