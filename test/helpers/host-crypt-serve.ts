// A child process serving one native FUSE session in host placement for test/pem-fs/host-crypt.test.ts: every path
// is encrypted (decisions bypass: false) and the io hook answers `open` and `key` with the file's key derived from a
// fixed master key (the fixtures' key.hex, as key `fixture` version 3), writing a new header into an empty file it
// opens for writing (compressed with zstd, lz4 or zlib under a top directory of that name). Every io call is counted. Commands on stdin, one JSON line each on stdout: "stats", "reset",
// "ttl MS" (ttl of keys handed over from now on), "keyerr ERRNO|none" (how `key` questions are answered).
// Prints {"ready":true} once the mount serves; SIGTERM unmounts cleanly and exits 0.
import crypto from 'node:crypto'
import fs from 'node:fs'
import readline from 'node:readline'
import { FuseSession, type IoAnswer, type IoRequest } from '../../lib/native/fuse-session'
import { HKDF_INFO_FILE_KEY } from '../../lib/native/crypto-engine'
import { HEADER_MAX_BYTES, decodeHeader, encodeHeader, makeHeader, type FileCipher } from '../../lib/wire/file-format'

interface Config { dir: string, backing: string, masterKeyHex: string, ttlMs?: number, cipher?: FileCipher }

const cfg = JSON.parse(process.argv[2]) as Config
const master = Buffer.from(cfg.masterKeyHex, 'hex')
let ttlMs = cfg.ttlMs ?? 60_000
let keyErr: string | null = null
const hooked: Record<string, number> = {}
const headers = new Map<number, Buffer>() // nodeid -> header handed over

/** deriveFileKey (native/crypto_keys.cc) in node:crypto: HKDF-SHA256, no salt, info label | file id | u32 version. */
function fileKey (header: Buffer): Buffer {
  const h = decodeHeader(header)
  const v = Buffer.alloc(4)
  v.writeUInt32BE(h.keyVersion)
  return Buffer.from(crypto.hkdfSync('sha256', master, Buffer.alloc(0), Buffer.concat([Buffer.from(HKDF_INFO_FILE_KEY), h.fileId, v]), 32))
}

function headerOf (r: IoRequest): Buffer {
  const head = Buffer.alloc(HEADER_MAX_BYTES)
  const rfd = fs.openSync(`/proc/self/fd/${r.fd}`, fs.constants.O_RDONLY) // the handle's own fd may be write-only
  const n = fs.readSync(rfd, head, 0, head.length, 0)
  fs.closeSync(rfd)
  if (n > 0) return Buffer.from(head.subarray(0, decodeHeader(head.subarray(0, n)).headerBytes))
  const codec = (['zstd', 'lz4', 'zlib'] as const).find(c => r.path.startsWith(`/${c}/`)) ?? 'none' // by top directory
  const bytes = encodeHeader(makeHeader({ fileId: crypto.randomBytes(16), keyName: 'fixture', keyVersion: 3, cipher: cfg.cipher ?? 'aes-256-gcm', compression: codec }))
  if ((r.flags & 3) !== fs.constants.O_RDONLY) fs.writeSync(r.fd, bytes, 0, bytes.length, 0) // as crypt-io.ts does on create
  return bytes
}

function io (r: IoRequest): IoAnswer {
  hooked[r.kind] = (hooked[r.kind] ?? 0) + 1
  switch (r.kind) {
    case 'open': {
      const header = headerOf(r)
      headers.set(r.nodeid, header)
      return { hostKey: { key: fileKey(header), header, ttlMs } }
    }
    case 'key': {
      if (keyErr !== null) return { errno: keyErr }
      const header = headers.get(r.nodeid)
      return header === undefined ? { errno: 'EIO' } : { hostKey: { key: fileKey(header), header, ttlMs } }
    }
    case 'size': return { value: r.size } // files without a header that decodes show their backing size
    default: return { errno: 'EIO' } // host-mode handles never send these
  }
}

const backingFd = fs.openSync(cfg.backing, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY)
const session = FuseSession.mount(cfg.dir, backingFd, () => ({ ok: true, ttlMs: 60_000, bypass: false }), { io, entryTimeoutMs: 1000, attrTimeoutMs: 1000 })
const out = (o: unknown): void => { process.stdout.write(JSON.stringify(o) + '\n') }
process.on('SIGTERM', () => { session.unmount(); process.exit(0) })
readline.createInterface({ input: process.stdin }).on('line', line => {
  const [cmd, arg] = line.trim().split(/\s+/)
  if (cmd === 'stats') out({ ...session.stats(), hooked })
  else if (cmd === 'reset') { for (const k of Object.keys(hooked)) delete hooked[k]; out({ ok: true }) } else if (cmd === 'ttl') { ttlMs = Number(arg); out({ ok: true }) } else if (cmd === 'keyerr') { keyErr = arg === 'none' ? null : arg; out({ ok: true }) }
})
out({ ready: true })
