// Test helper (not a test): node:crypto as the independent AEAD implementation the engine is compared with.
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import type { AeadCipher } from '../../lib/native/crypto-engine'

export const CIPHERS: AeadCipher[] = ['aes-256-gcm', 'chacha20-poly1305']

/** nonce | ciphertext | tag, like one engine block. */
export function nodeSeal (cipher: AeadCipher, key: Uint8Array, nonce: Uint8Array, pt: Uint8Array, aad: Uint8Array): Buffer {
  const c = crypto.createCipheriv(cipher, key, nonce, { authTagLength: 16 } as crypto.CipherGCMOptions) as unknown as crypto.CipherGCM
  if (aad.length > 0) c.setAAD(aad)
  return Buffer.concat([nonce, c.update(pt), c.final(), c.getAuthTag()])
}

/** Plaintext of one sealed block, or null when it does not authenticate. */
export function nodeOpen (cipher: AeadCipher, key: Uint8Array, sealed: Uint8Array, aad: Uint8Array): Buffer | null {
  const s = Buffer.from(sealed.buffer, sealed.byteOffset, sealed.length)
  const d = crypto.createDecipheriv(cipher, key, s.subarray(0, 12), { authTagLength: 16 } as crypto.CipherGCMOptions) as unknown as crypto.DecipherGCM
  d.setAuthTag(s.subarray(s.length - 16))
  if (aad.length > 0) d.setAAD(aad)
  try {
    return Buffer.concat([d.update(s.subarray(12, s.length - 16)), d.final()])
  } catch {
    return null
  }
}

export function root (): string {
  let dir = __dirname
  while (!fs.existsSync(path.join(dir, 'binding.gyp'))) {
    const up = path.dirname(dir)
    if (up === dir) throw new Error('binding.gyp not found')
    dir = up
  }
  return dir
}

export function fixture<T> (name: string): T {
  return JSON.parse(fs.readFileSync(path.join(root(), 'test/fixtures/vectors', name), 'utf8')) as T
}

/** Block i's slice of a batch laid out back to back with lens[i] + extra bytes per block. */
export function* blocks (buf: Uint8Array, lens: Uint32Array, extra: number): Generator<[number, Uint8Array]> {
  let off = 0
  for (let i = 0; i < lens.length; i++) {
    yield [i, buf.subarray(off, off + lens[i] + extra)]
    off += lens[i] + extra
  }
}
