// A child process that serves one native FUSE session for the tests (test/native/fuse-session.test.ts): a scripted
// decide (deny / never answer / hook / answer with a scope, by path prefix), an io hook standing in for encryption (a header, then XOR), and commands on
// stdin ("invalidate", "revoke [fh]", "notify PATH", "stats", "unmount") answered with one JSON line each on stdout. Prints
// {"ready":true} once the mount serves; SIGTERM unmounts cleanly and exits 0.
import fs from 'node:fs'
import readline from 'node:readline'
import { FuseSession, type DecideAnswer, type DecideRequest, type IoRequest } from '../../lib/native/fuse-session'

interface Config {
  dir: string
  backing: string
  deny?: string[] // path prefixes refused with EACCES
  hang?: string[] // path prefixes never answered
  xor?: string[] // path prefixes whose handles go to the io hook (bytes XOR 0x5a on disk)
  scopes?: Record<string, string> // path prefix -> the scope answered for the paths under it
  decideTimeoutMs?: number
  ttlMs?: number
  attrTimeoutMs?: number
}

const cfg = JSON.parse(process.argv[2]) as Config
const under = (p: string, prefixes: string[] | undefined): boolean => (prefixes ?? []).some(x => p === x || p.startsWith(x.endsWith('/') ? x : x + '/'))
const decided: Record<string, number> = {}
const nodeids = new Map<string, number>() // path -> nodeid, from the questions that name a node

function decide (r: DecideRequest): DecideAnswer | Promise<never> {
  decided[r.action] = (decided[r.action] ?? 0) + 1
  if (r.nodeid > 0) nodeids.set(r.path, r.nodeid)
  if (under(r.path, cfg.hang)) return new Promise<never>(() => {})
  if (under(r.path, cfg.deny)) return { ok: false, errno: 'EACCES', ttlMs: cfg.ttlMs ?? 2000 }
  const scope = Object.entries(cfg.scopes ?? {}).find(([prefix]) => under(r.path, [prefix]))?.[1]
  return { ok: true, ttlMs: cfg.ttlMs ?? 2000, bypass: !under(r.path, cfg.xor), scope }
}

// The stand-in format of hooked files: a 16-byte header, then the bytes XOR 0x5a (so the size applications see
// differs from the backing size, as with the real encrypted format).
const HEADER = Buffer.from('PEMFS-XOR-HEADER')
const H = HEADER.length
const xor = (b: Buffer): Buffer => { for (let i = 0; i < b.length; i++) b[i] ^= 0x5a; return b }
const hooked: Record<string, number> = {}

function io (r: IoRequest): { value?: number, data?: Buffer } {
  hooked[r.kind] = (hooked[r.kind] ?? 0) + 1
  switch (r.kind) {
    case 'open':
      if ((r.flags & fs.constants.O_TRUNC) !== 0) fs.ftruncateSync(r.fd, 0)
      if (fs.fstatSync(r.fd).size === 0) fs.writeSync(r.fd, HEADER, 0, H, 0)
      return {}
    case 'read': {
      const b = Buffer.alloc(r.size)
      const n = fs.readSync(r.fd, b, 0, r.size, r.offset + H)
      return { data: xor(b.subarray(0, n)) }
    }
    case 'write': {
      const d = xor(Buffer.from(r.data as Buffer))
      return { value: fs.writeSync(r.fd, d, 0, d.length, r.offset + H) }
    }
    case 'truncate': fs.ftruncateSync(r.fd, r.size + H); return {}
    case 'size': return { value: Math.max(0, r.size - H) }
    case 'fsync': fs.fsyncSync(r.fd); return {}
    default: return {}
  }
}

const backingFd = fs.openSync(cfg.backing, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY)
const session = FuseSession.mount(cfg.dir, backingFd, decide, { io, decideTimeoutMs: cfg.decideTimeoutMs, entryTimeoutMs: 1000, attrTimeoutMs: cfg.attrTimeoutMs ?? 1000 })
const out = (o: unknown): void => { process.stdout.write(JSON.stringify(o) + '\n') }
process.on('SIGTERM', () => { session.unmount(); process.exit(0) })
readline.createInterface({ input: process.stdin }).on('line', line => {
  const [cmd, arg] = line.trim().split(/\s+/)
  if (cmd === 'invalidate') { session.invalidate(); out({ ok: true }) } else if (cmd === 'revoke') out({ revoked: session.revoke(Number(arg ?? 0)) })
  else if (cmd === 'stats') out({ ...session.stats(), decided, hooked, handles: session.handles() })
  else if (cmd === 'notify') { const id = nodeids.get(arg); if (id !== undefined) session.notify(id); out({ nodeid: id ?? null }) } else if (cmd === 'unmount') { session.unmount(); out({ ok: true }) }
})
out({ ready: true })
