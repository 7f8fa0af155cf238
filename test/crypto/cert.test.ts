// Certificate builder tests: OpenSSL (through node:crypto and node:tls) parses, verifies and uses what we build.
import test from 'ava'
import crypto from 'node:crypto'
import tls from 'node:tls'
import type { AddressInfo } from 'node:net'
import { buildSelfSignedCert, der, derToPem } from '../../lib/crypto/cert'
import { generateIdentity, rawPublicKey } from '../../lib/crypto/identity'

test('the certificate parses, is self-signed by its key, and carries the identity key', t => {
  const id = generateIdentity()
  const cert = new crypto.X509Certificate(id.certPem)
  t.true(cert.verify(id.publicKeyObject))
  t.false(cert.verify(generateIdentity().publicKeyObject))
  t.is(cert.publicKey.asymmetricKeyType, 'ed25519')
  t.deepEqual(rawPublicKey(cert.publicKey), id.publicKey)
  t.is(cert.subject, `CN=${id.id.slice(0, 16)}`)
  t.is(cert.issuer, cert.subject)
  t.false(cert.ca)
  t.is(cert.keyUsage?.length ?? 0, 0, 'no extended key usage') // keyUsage here lists EKU OIDs in Node
  const from = Date.parse(cert.validFrom)
  const to = Date.parse(cert.validTo)
  t.true(from < Date.now() - 23 * 3600_000 && from > Date.now() - 25 * 3600_000)
  t.true(new Date(to).getUTCFullYear() >= new Date().getUTCFullYear() + 99, 'valid for a century (GeneralizedTime past 2049)')
})

test('serials are random, positive and minimally encoded', t => {
  const id = generateIdentity()
  const serials = new Set<string>()
  for (let i = 0; i < 20; i++) {
    const c = new crypto.X509Certificate(buildSelfSignedCert(id.keyObject, id.publicKeyObject, { commonName: 'x' }))
    t.true(c.verify(id.publicKeyObject))
    t.regex(c.serialNumber, /^[4-7][0-9A-F]{31}$/)
    serials.add(c.serialNumber)
  }
  t.is(serials.size, 20)
})

test('UTCTime before 2050, GeneralizedTime from 2050; explicit validity is kept', t => {
  const id = generateIdentity()
  const notBefore = new Date(Date.UTC(2049, 11, 31, 23, 59, 59))
  const notAfter = new Date(Date.UTC(2050, 0, 1, 0, 0, 0))
  const bytes = buildSelfSignedCert(id.keyObject, id.publicKeyObject, { commonName: 'time', notBefore, notAfter })
  t.true(bytes.includes(Buffer.from('491231235959Z')))
  t.true(bytes.includes(Buffer.from('20500101000000Z')))
  const c = new crypto.X509Certificate(bytes)
  t.is(Date.parse(c.validFrom), notBefore.getTime())
  t.is(Date.parse(c.validTo), notAfter.getTime())
})

test('DER lengths use the short and long forms', t => {
  t.deepEqual(der(0x04, Buffer.alloc(127)).subarray(0, 2), Buffer.from([0x04, 127]))
  t.deepEqual(der(0x04, Buffer.alloc(128)).subarray(0, 3), Buffer.from([0x04, 0x81, 128]))
  t.deepEqual(der(0x04, Buffer.alloc(300)).subarray(0, 4), Buffer.from([0x04, 0x82, 0x01, 0x2c]))
  t.regex(derToPem(Buffer.alloc(60)), /^-----BEGIN CERTIFICATE-----\n[A-Za-z0-9+/]{64}\n[A-Za-z0-9+/=]+\n-----END CERTIFICATE-----\n$/)
})

test('a non-Ed25519 key is refused', t => {
  const { privateKey, publicKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' })
  t.throws(() => buildSelfSignedCert(privateKey, publicKey, { commonName: 'x' }), { instanceOf: TypeError })
})

test('node:tls accepts the certificates for a mutually authenticated TLS 1.3 connection', async t => {
  const server = generateIdentity()
  const client = generateIdentity()
  const srv = tls.createServer({ key: server.keyPem, cert: server.certPem, minVersion: 'TLSv1.3', requestCert: true, rejectUnauthorized: false }, s => s.end('ok'))
  t.teardown(() => { srv.close() })
  await new Promise<void>(resolve => srv.listen(0, '127.0.0.1', resolve))
  const { port } = srv.address() as AddressInfo
  const seen = new Promise<Buffer | undefined>(resolve => srv.once('secureConnection', (s: tls.TLSSocket) => {
    const c = s.getPeerX509Certificate()
    resolve(c === undefined ? undefined : rawPublicKey(c.publicKey))
  }))
  const got = await new Promise<{ text: string, proto: string | null, key: Buffer }>((resolve, reject) => {
    const sock = tls.connect({ host: '127.0.0.1', port, key: client.keyPem, cert: client.certPem, rejectUnauthorized: false, minVersion: 'TLSv1.3' }, () => {
      const key = rawPublicKey(sock.getPeerX509Certificate()!.publicKey)
      let text = ''
      sock.on('data', (d: Buffer) => { text += d.toString() })
      sock.on('end', () => resolve({ text, proto: sock.getProtocol(), key }))
    })
    sock.on('error', reject)
  })
  t.is(got.text, 'ok')
  t.is(got.proto, 'TLSv1.3')
  t.deepEqual(got.key, server.publicKey)
  t.deepEqual(await seen, client.publicKey)
})
