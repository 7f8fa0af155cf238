// Frozen AEAD vectors (test/fixtures/vectors/*.json): the engine opens each one; node:crypto still agrees with them.
import test from 'ava'
import { createEngine, importKey, type AeadCipher } from '../../lib/native/crypto-engine'
import { fixture, nodeSeal } from './node-aead'

interface Vector { cipher?: AeadCipher, key: string, nonce: string, aad: string, plaintext: string, ciphertext: string, tag: string }
interface VectorFile { cipher?: AeadCipher, vectors: Vector[] }

const files = ['aes-256-gcm.json', 'chacha20-poly1305.json', 'published.json']

for (const name of files) {
  test(`${name}: every vector opens to its plaintext, and a wrong tag fails`, t => {
    const doc = fixture<VectorFile>(name)
    t.true(doc.vectors.length >= 3)
    for (const [i, v] of doc.vectors.entries()) {
      const cipher = v.cipher ?? doc.cipher
      if (cipher === undefined) throw new Error(`${name}#${i} names no cipher`)
      const hex = (s: string): Buffer => Buffer.from(s, 'hex')
      const sealed = Buffer.concat([hex(v.nonce), hex(v.ciphertext), hex(v.tag)])
      const aad = hex(v.aad)
      const engine = createEngine({ cipher })
      const key = importKey(hex(v.key))
      const out = Buffer.alloc(hex(v.plaintext).length)
      engine.openBatchSync(key, sealed, Uint32Array.from([sealed.length]), aad.length > 0 ? aad : null, aad.length, out)
      t.is(out.toString('hex'), v.plaintext, `${name}#${i}`)
      t.is(nodeSeal(cipher, hex(v.key), hex(v.nonce), hex(v.plaintext), aad).toString('hex'), sealed.toString('hex'))
      sealed[sealed.length - 1] ^= 0x80
      t.throws(() => engine.openBatchSync(key, sealed, Uint32Array.from([sealed.length]), aad.length > 0 ? aad : null, aad.length, out), { code: 'ENGINE_ERR_AUTH' })
    }
  })
}
