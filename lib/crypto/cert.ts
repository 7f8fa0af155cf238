// Self-signed X.509 v3 certificates for Ed25519 keys, built in DER by hand (RFC 5280, RFC 8410). Used only as the
// TLS carrier of a key: peers pin the key, never the certificate (docs/CHANNEL.md), so nothing here is trusted by itself.
//
// Certificate  SEQUENCE { tbsCertificate, AlgorithmIdentifier {1.3.101.112}, BIT STRING signature(64) }
// tbs          SEQUENCE { [0]{INTEGER 2}, INTEGER serial(16 random bytes), AlgorithmIdentifier {1.3.101.112},
//                         issuer Name, SEQUENCE { notBefore, notAfter }, subject Name, SubjectPublicKeyInfo(44 bytes),
//                         [3]{ SEQUENCE { basicConstraints cA=false (critical), keyUsage digitalSignature (critical) } } }
// Name         SEQUENCE { SET { SEQUENCE { OID 2.5.4.3 (CN), UTF8String } } }
// Time         UTCTime YYMMDDHHMMSSZ before 2050, GeneralizedTime YYYYMMDDHHMMSSZ from 2050 on (RFC 5280 §4.1.2.5)
import crypto from 'node:crypto'

const ED25519_OID = Buffer.from('06032b6570', 'hex') // OID 1.3.101.112
const CN_OID = Buffer.from('0603550403', 'hex') // OID 2.5.4.3
const BASIC_CONSTRAINTS_OID = Buffer.from('0603551d13', 'hex') // OID 2.5.29.19
const KEY_USAGE_OID = Buffer.from('0603551d0f', 'hex') // OID 2.5.29.15
const DAY_MS = 86_400_000

/** One DER TLV: tag, definite length (short or long form), contents. */
export function der (tag: number, ...contents: Buffer[]): Buffer {
  const body = Buffer.concat(contents)
  const n = body.length
  let head: Buffer
  if (n < 0x80) head = Buffer.from([tag, n])
  else {
    const lenBytes: number[] = []
    for (let v = n; v > 0; v = Math.floor(v / 256)) lenBytes.unshift(v & 0xff)
    head = Buffer.from([tag, 0x80 | lenBytes.length, ...lenBytes])
  }
  return Buffer.concat([head, body])
}

const seq = (...c: Buffer[]): Buffer => der(0x30, ...c)

function derTime (d: Date): Buffer {
  const y = d.getUTCFullYear()
  const p2 = (n: number): string => String(n).padStart(2, '0')
  const rest = `${p2(d.getUTCMonth() + 1)}${p2(d.getUTCDate())}${p2(d.getUTCHours())}${p2(d.getUTCMinutes())}${p2(d.getUTCSeconds())}Z`
  if (y >= 1950 && y < 2050) return der(0x17, Buffer.from(`${p2(y % 100)}${rest}`, 'ascii'))
  return der(0x18, Buffer.from(`${String(y).padStart(4, '0')}${rest}`, 'ascii'))
}

function name (cn: string): Buffer {
  return seq(der(0x31, seq(CN_OID, der(0x0c, Buffer.from(cn, 'utf8')))))
}

export interface CertOptions {
  /** Common name for issuer and subject; default: the first 16 hex digits of the key id. */
  commonName: string
  notBefore?: Date
  notAfter?: Date
}

/** Build and self-sign a certificate for an Ed25519 key pair; returns DER. */
export function buildSelfSignedCert (privateKey: crypto.KeyObject, publicKey: crypto.KeyObject, opts: CertOptions): Buffer {
  if (privateKey.asymmetricKeyType !== 'ed25519' || publicKey.asymmetricKeyType !== 'ed25519') {
    throw new TypeError('buildSelfSignedCert needs an Ed25519 key pair')
  }
  const now = Date.now()
  const notBefore = opts.notBefore ?? new Date(now - DAY_MS)
  const notAfter = opts.notAfter ?? new Date(now + 100 * 365.25 * DAY_MS)
  const serial = crypto.randomBytes(16)
  serial[0] = (serial[0] & 0x7f) | 0x40 // positive and minimally encoded (RFC 5280 §4.1.2.2: at most 20 octets)
  const algorithm = seq(ED25519_OID) // RFC 8410 §3: parameters absent
  const extensions = der(0xa3, seq(
    seq(BASIC_CONSTRAINTS_OID, der(0x01, Buffer.from([0xff])), der(0x04, seq())),
    seq(KEY_USAGE_OID, der(0x01, Buffer.from([0xff])), der(0x04, der(0x03, Buffer.from([0x07, 0x80]))))
  ))
  const subject = name(opts.commonName)
  const tbs = seq(
    der(0xa0, der(0x02, Buffer.from([2]))), // version v3
    der(0x02, serial),
    algorithm,
    subject, // issuer = subject: self-signed
    seq(derTime(notBefore), derTime(notAfter)),
    subject,
    publicKey.export({ type: 'spki', format: 'der' }),
    extensions
  )
  const signature = crypto.sign(null, tbs, privateKey)
  return seq(tbs, algorithm, der(0x03, Buffer.from([0]), signature))
}

export function derToPem (derBytes: Buffer, label = 'CERTIFICATE'): string {
  const b64 = derBytes.toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n$/, '')
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`
}
