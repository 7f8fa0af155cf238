// Identity tests: key file creation and mode checks, ids, and the human key encoding.
import test from 'ava'
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { createIdentity, encodePublicKey, generateIdentity, keyId, loadIdentity, parsePublicKey, publicKeyFromRaw, rawPublicKey } from '../../lib/crypto/identity'

function tmpDir (t: { teardown: (fn: () => void) => void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pem-id-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  return dir
}

test('createIdentity writes a 0600 PKCS8 key and loadIdentity reads back the same identity', t => {
  const file = path.join(tmpDir(t), 'identity.key')
  const a = createIdentity(file)
  t.is(fs.statSync(file).mode & 0o777, 0o600)
  t.true(fs.readFileSync(file, 'utf8').startsWith('-----BEGIN PRIVATE KEY-----'))
  t.deepEqual(fs.readdirSync(path.dirname(file)), ['identity.key'], 'no temporary file left behind')
  const b = loadIdentity(file)
  t.is(b.id, a.id)
  t.deepEqual(b.publicKey, a.publicKey)
  t.is(a.publicKey.length, 32)
  t.is(a.id, crypto.createHash('sha256').update(a.publicKey).digest('hex'))
  t.is(a.signKey.length, 64)
  t.deepEqual(a.signKey.subarray(32), a.publicKey, 'sodium secret key is seed || public key')
})

test('createIdentity refuses to overwrite an existing key file', t => {
  const file = path.join(tmpDir(t), 'identity.key')
  const a = createIdentity(file)
  t.throws(() => createIdentity(file), { code: 'PEM_ERR_BAD_CONFIG' })
  t.is(loadIdentity(file).id, a.id, 'the first key is intact')
})

for (const mode of [0o644, 0o640, 0o604, 0o660, 0o601]) {
  test(`loadIdentity refuses a key file with mode ${mode.toString(8)}`, t => {
    const file = path.join(tmpDir(t), 'identity.key')
    createIdentity(file)
    fs.chmodSync(file, mode)
    const err = t.throws(() => loadIdentity(file), { code: 'PEM_ERR_BAD_CONFIG' })
    t.regex(err?.message ?? '', /chmod 600/)
  })
}

test('loadIdentity accepts 0400 and refuses junk, a missing file and a symlink', t => {
  const dir = tmpDir(t)
  const file = path.join(dir, 'identity.key')
  const a = createIdentity(file)
  fs.chmodSync(file, 0o400)
  t.is(loadIdentity(file).id, a.id)
  const junk = path.join(dir, 'junk.key')
  fs.writeFileSync(junk, 'not a key', { mode: 0o600 })
  t.throws(() => loadIdentity(junk), { code: 'PEM_ERR_BAD_CONFIG' })
  t.throws(() => loadIdentity(path.join(dir, 'missing.key')), { code: 'PEM_ERR_BAD_CONFIG' })
  const link = path.join(dir, 'link.key')
  fs.symlinkSync(file, link)
  t.throws(() => loadIdentity(link), { code: 'PEM_ERR_BAD_CONFIG' })
  const rsa = path.join(dir, 'rsa.key')
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 1024 })
  fs.writeFileSync(rsa, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 })
  t.throws(() => loadIdentity(rsa), { code: 'PEM_ERR_BAD_CONFIG' })
})

test('public keys encode as ed25519:<base64url> and parse back', t => {
  const id = generateIdentity()
  const text = encodePublicKey(id.publicKey)
  t.regex(text, /^ed25519:[A-Za-z0-9_-]{43}$/)
  t.deepEqual(parsePublicKey(text), id.publicKey)
  t.is(keyId(parsePublicKey(text)), id.id)
  t.deepEqual(rawPublicKey(publicKeyFromRaw(id.publicKey)), id.publicKey)
})

const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'

test('parsePublicKey rejects bad input by code', t => {
  const good = encodePublicKey(generateIdentity().publicKey)
  const body = good.slice(8)
  // The last of 43 digits carries 2 unused bits: flipping one spells the same bytes non-canonically.
  const nonCanonical = body.slice(0, -1) + B64URL[B64URL.indexOf(body[42]) ^ 1]
  t.deepEqual(Buffer.from(nonCanonical, 'base64url'), Buffer.from(body, 'base64url'))
  const bad = [
    '', 'ed25519:', body, 'ED25519:' + body, 'x25519:' + body, good.slice(0, -1), good + 'A',
    good.slice(0, -1) + '=', good.slice(0, -1) + '+', 'ed25519:' + nonCanonical, ` ${good}`,
    'ed25519:' + Buffer.alloc(32).toString('base64url'), // not a valid point
    'ed25519:' + Buffer.from('01'.padEnd(64, '0'), 'hex').toString('base64url') // the identity point: small order
  ]
  for (const s of bad) t.throws(() => parsePublicKey(s), { code: 'PEM_ERR_BAD_ARGUMENT' }, JSON.stringify(s))
  t.throws(() => parsePublicKey(42 as unknown as string), { code: 'PEM_ERR_BAD_ARGUMENT' })
  t.throws(() => encodePublicKey(Buffer.alloc(31)), { code: 'PEM_ERR_BAD_ARGUMENT' })
})
