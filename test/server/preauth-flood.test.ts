// Pre-authentication flood against a real spd on loopback (issue 15, finding 3): unauthenticated connections held
// open, oversized and junk frames before the Hello and on enrollment channels, non-TLS junk and a connection burst,
// each from its own 127.0.0.x source, while an enrolled host on 127.0.0.1 keeps getting decisions; then the admin
// API's body limits and per-source login throttling. Asserts error codes and refusal counters, never timings.
import test from 'ava'
import crypto from 'node:crypto'
import fs from 'node:fs'
import https from 'node:https'
import net from 'node:net'
import path from 'node:path'
import tls from 'node:tls'
import { ALPN_ENROLL, ALPN_SESSION, connect } from '../../lib/channel/tls'
import { deriveAdminKeyPair, loginInput } from '../../lib/crypto/admin-key'
import { SIG_CTX_ADMIN_LOGIN } from '../../lib/crypto/contexts'
import { generateIdentity, loadIdentity } from '../../lib/crypto/identity'
import { sign } from '../../lib/crypto/sign'
import { attrsOf } from '../../lib/pem-fs/attrs'
import { AUDIT_FILE, IDENTITY_FILE } from '../../lib/server/member'
import { ClusterClient } from '../../lib/pem-fs/client'
import { hostIdentity, readCluster } from '../../lib/pem-fs/host-config'
import { ERRORS } from '../../lib/wire/errors'
import { FLAG_ERROR, FLAG_REPLY, FrameSplitter, MAX_FRAME_BYTES, encodeFrame, type Frame } from '../../lib/wire/frame'
import { Op } from '../../lib/wire/opcodes'
import type { DecideReply } from '../../lib/wire/packets'
import { tempDir, type Spd } from '../../scripts/procs'
import { spdWithEnrolledHost, stopEnrolledHost, type EnrolledHost } from '../helpers/enrolled-host'

const POLICY = 'format: 1\nguards:\n  /srv/data:\n    rules:\n      - id: public\n        resources: { dirs: [/public] }\n        effect: permit\n'
// Small limits so that bounded floods cross them; a refill of 1 connection per 100 s makes the burst exact.
const CONNECTIONS = { perSource: 16, ratePerS: 0.01, burst: 40, pending: 256 }

let spd: Spd
let hostDir: string
let client: ClusterClient
let env: EnrolledHost | undefined
const work = tempDir('preauth-flood')
const hostPort = (): number => Number(spd.listen.split(':')[1])

test.before(async () => {
  env = await spdWithEnrolledHost(work, 'spd-flood', { load: { threshold: 1 }, connections: CONNECTIONS }, POLICY, 'honest')
  ;({ spd, hostDir, client } = env)
})

test.after.always(async () => { await stopEnrolledHost(env) })

async function decideHonestly (): Promise<DecideReply> {
  return await client.decide({ guard: '/srv/data', path: '/public/report', action: 'read', attrs: attrsOf(process.pid, 1000, 1000) })
}

/** An HTTPS request to the admin API from `localAddress`; `body` may be withheld (only its Content-Length sent). */
interface AdminReply { status: number, body: { error: { code: string, message: string }, token: string, challenge?: string, kdf?: unknown } }

async function admin (method: string, path: string, opts: { body?: string, declaredBytes?: number, token?: string, localAddress?: string } = {}): Promise<AdminReply> {
  const [host, port] = spd.admin.split(':')
  return await new Promise((resolve, reject) => {
    const headers: Record<string, string> = { 'content-type': 'application/json' }
    if (opts.token !== undefined) headers.authorization = `Bearer ${opts.token}`
    const bytes = opts.declaredBytes ?? (opts.body === undefined ? 0 : Buffer.byteLength(opts.body))
    if (bytes > 0) headers['content-length'] = String(bytes)
    const req = https.request({ host, port: Number(port), method, path, headers, rejectUnauthorized: false, localAddress: opts.localAddress ?? '127.0.0.1', agent: false }, res => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) }))
    })
    req.on('error', reject)
    if (opts.declaredBytes !== undefined) req.flushHeaders() // the body never comes: only a check before reading it can answer
    else req.end(opts.body)
  })
}

/** spd's refusal counters by reason, from GET /metrics. */
async function refusals (): Promise<Record<string, number>> {
  const [host, port] = spd.admin.split(':')
  const text = await new Promise<string>((resolve, reject) => {
    https.get({ host, port: Number(port), path: '/metrics', rejectUnauthorized: false, agent: false }, res => {
      let s = ''
      res.on('data', (c: Buffer) => { s += c.toString('utf8') })
      res.on('end', () => resolve(s))
    }).on('error', reject)
  })
  const out: Record<string, number> = {}
  for (const m of text.matchAll(/^spd_refused_connections_total\{reason="([a-z-]+)"\} (\d+)$/gm)) out[m[1]] = Number(m[2])
  return out
}

async function tcp (localAddress: string): Promise<{ sock: net.Socket, closed: Promise<void> }> {
  const sock = net.connect({ host: '127.0.0.1', port: hostPort(), localAddress })
  sock.on('error', () => {})
  const closed = new Promise<void>(resolve => sock.on('close', () => resolve()))
  await new Promise<void>((resolve, reject) => { sock.once('connect', resolve); sock.once('error', reject) })
  return { sock, closed }
}

/** A TLS connection with a self-made certificate; resolves with the frames spd sent once spd has closed it. */
async function tlsThenClosed (localAddress: string, alpn: string, write: (sock: tls.TLSSocket, frames: Frame[]) => Promise<void> | void): Promise<Frame[]> {
  const me = generateIdentity()
  const sock = tls.connect({ socket: net.connect({ host: '127.0.0.1', port: hostPort(), localAddress }), rejectUnauthorized: false, minVersion: 'TLSv1.3', ALPNProtocols: [alpn], key: me.keyPem, cert: me.certPem })
  const frames: Frame[] = []
  const split = new FrameSplitter()
  sock.on('data', (d: Buffer) => { try { frames.push(...split.push(d)) } catch { sock.destroy() } })
  sock.on('error', () => {})
  const closed = new Promise<void>(resolve => sock.on('close', () => resolve()))
  await Promise.race([new Promise<void>(resolve => sock.once('secureConnect', () => resolve())), closed])
  if (!sock.destroyed) await write(sock, frames)
  await closed
  return frames
}

function header (op: number, id: number, length: number): Buffer {
  const b = Buffer.alloc(10)
  b.writeUInt32BE(length, 0); b[4] = op; b.writeUInt32BE(id, 6)
  return b
}
const codeOf = (f: Frame | undefined): number | undefined => f !== undefined && (f.flags & FLAG_ERROR) !== 0 ? (f.body as [number, string])[0] : undefined
const waitFrames = async (frames: Frame[], n: number): Promise<void> => { while (frames.length < n) await new Promise(resolve => setTimeout(resolve, 10)) }

test.serial('a pre-authentication flood is refused by code and counted, while the enrolled host keeps getting decisions', async t => {
  t.true((await decideHonestly()).ok)
  const before = await refusals()
  let honest = 0
  let flooding = true
  const honestLoop = (async () => {
    while (flooding) {
      if (!(await decideHonestly()).ok) throw new Error('an honest decision was refused during the flood')
      honest++
      await new Promise(resolve => setTimeout(resolve, 5))
    }
  })()

  // 1. 40 bare TCP connections held open from one source: 16 are admitted (they would time out in the handshake),
  //    24 are closed unread.
  const held = await Promise.all(Array.from({ length: 40 }, async () => await tcp('127.0.0.2')))
  t.teardown(() => { for (const h of held) h.sock.destroy() })
  let heldClosed = 0
  for (const h of held) void h.closed.then(() => heldClosed++)

  // 2. The finding's attack: a self-made certificate on the enrollment ALPN, then a frame announcing 4 MiB (only its
  //    header is sent: a server that waited for the body would never answer), or junk as the first frame.
  const firstFrames: Array<[Buffer, number]> = [
    [header(Op.Hello, 1, MAX_FRAME_BYTES), ERRORS.PEM_ERR_FRAME_TOO_LARGE.id],
    [Buffer.concat([header(Op.Decide, 1, 6 + 64), Buffer.alloc(64, 0x80)]), ERRORS.PEM_ERR_BAD_FRAME.id], // not a Hello
    [Buffer.concat([header(0xee, 1, 6 + 1), Buffer.from([0xc0])]), ERRORS.PEM_ERR_BAD_OPCODE.id],
    [Buffer.concat([header(Op.Hello, 1, 6 + 3), Buffer.from([0xc1, 0xc1, 0xc1])]), ERRORS.PEM_ERR_BAD_FRAME.id] // not msgpack
  ]
  const preHello: Frame[][] = []
  for (let i = 0; i < 24; i++) preHello.push(await tlsThenClosed('127.0.0.3', ALPN_ENROLL, sock => { sock.write(firstFrames[i % firstFrames.length][0]) }))
  preHello.forEach((frames, i) => t.is(codeOf(frames[0]), firstFrames[i % firstFrames.length][1], `pre-Hello flood connection ${i}`))

  // 3. Past the Hello on an enrollment channel: an oversized frame closes it, other requests are refused unread.
  const enrollHello = encodeFrame(Op.Hello, 1, { min: 1, max: 1, cur: 1, role: 'enroll' })
  const enrolling = await Promise.all(Array.from({ length: 8 }, async () => await tlsThenClosed('127.0.0.6', ALPN_ENROLL, async (sock, frames) => {
    sock.write(Buffer.concat([enrollHello, header(Op.Decide, 2, 6 + 3), Buffer.from([0xc1, 0xc1, 0xc1])]))
    await waitFrames(frames, 2)
    sock.write(header(Op.BlocksSeal, 3, MAX_FRAME_BYTES))
  })))
  for (const frames of enrolling) {
    t.deepEqual(frames.map(f => [f.op, f.id, codeOf(f) ?? f.flags]), [[Op.Hello, 1, FLAG_REPLY], [Op.Decide, 2, ERRORS.PEM_ERR_NOT_ENROLLED.id], [Op.Hello, 0, ERRORS.PEM_ERR_FRAME_TOO_LARGE.id]])
  }

  // 4. A self-made certificate on the session ALPN never gets a channel; non-TLS junk fails the handshake.
  const strangers = await Promise.all(Array.from({ length: 8 }, async () => await tlsThenClosed('127.0.0.4', ALPN_SESSION, () => {})))
  for (const frames of strangers) t.is(codeOf(frames[0]), ERRORS.PEM_ERR_NOT_ENROLLED.id)
  await Promise.all(Array.from({ length: 8 }, async () => { const c = await tcp('127.0.0.4'); c.sock.write(Buffer.alloc(512, 0x17)); await c.closed }))

  // 5. A burst of 60 new connections from one source: its bucket holds 40.
  for (let i = 0; i < 60; i++) { const c = await tcp('127.0.0.5'); c.sock.destroy() }

  while (heldClosed < 24) await new Promise(resolve => setTimeout(resolve, 20))
  flooding = false
  await honestLoop
  // The honest host can still open a new channel and is answered over it; spd accepts connections in order, so by
  // now it has also seen every flood connection above.
  const fresh = await connect({ host: '127.0.0.1', port: hostPort(), identity: hostIdentity(hostDir), role: 'host', expectedId: readCluster(hostDir).servers[0].id })
  t.teardown(() => fresh.close())
  t.is((await fresh.request(Op.Ping, null) as { pv: number }).pv, client.pv)

  const after = await refusals()
  const grew = (reason: string): number => (after[reason] ?? 0) - (before[reason] ?? 0)
  t.log(`honest decisions during the flood: ${honest}; refusals: ${JSON.stringify(after)}`)
  t.true(honest >= 1)
  t.true(grew('source-connections') >= 24, 'the held connections beyond perSource')
  t.true(grew('source-connections') + grew('source-rate') >= 24 + 20, 'and the burst beyond its bucket')
  t.is(grew('hello'), 24, 'every pre-Hello flood connection')
  t.is(grew('unauthorized'), 8)
  t.true(grew('handshake') >= 8, 'the non-TLS junk')
  // The audit log got a few of each reason, not one line per refused connection.
  const audited = fs.readFileSync(path.join(spd.dir, AUDIT_FILE), 'utf8').split('\n').filter(l => l.includes('"host_refused"')).map(l => JSON.parse(l) as { reason: string })
  const lines = (reason: string): number => audited.filter(a => a.reason === reason).length
  t.true(lines('source-connections') >= 1 && lines('source-connections') < 24, `${lines('source-connections')} audit lines`)
  t.true(lines('hello') >= 1 && lines('hello') < 24, `${lines('hello')} audit lines`)
})

test.serial('admin API: the session is checked before a body is read; bodies are size-limited; logins are throttled per source', async t => {
  // No session: a 4 MiB policy upload is refused from its headers (the body is never sent).
  const anon = await admin('PUT', '/v1/policy', { declaredBytes: 4 * 1024 * 1024 })
  t.is(anon.status, 401); t.is(anon.body.error.code, 'PEM_ERR_AUTH')
  // A login body over 4 KiB is refused unread, whatever it holds.
  const bigLogin = await admin('POST', '/v1/login', { declaredBytes: 5000 })
  t.is(bigLogin.status, 400); t.regex(bigLogin.body.error.message, /over 4096 bytes/)
  // A guess answers a fresh challenge with a signature of no key. Parallel guesses from one source: one is checked,
  // the others are refused before any check.
  const guess = async (from: string): Promise<AdminReply> => {
    const c = await admin('POST', '/v1/login/challenge', { body: JSON.stringify({ user: 'admin' }), localAddress: from })
    return await admin('POST', '/v1/login', { body: JSON.stringify({ user: 'admin', challenge: c.body.challenge, signature: crypto.randomBytes(64).toString('base64url') }), localAddress: from })
  }
  for (let i = 0; i < 3; i++) t.is((await guess('127.0.0.9')).status, 401)
  const guesses = await Promise.all(Array.from({ length: 6 }, async () => await guess('127.0.0.9')))
  const codes = guesses.map(g => g.body.error.code as string)
  t.log(codes.join(' '))
  t.true(codes.every(c => c === 'PEM_ERR_AUTH' || c === 'PEM_ERR_RATE_LIMITED'), codes.join())
  t.true(codes.includes('PEM_ERR_RATE_LIMITED'))
  t.is(guesses.find(g => g.body.error.code === 'PEM_ERR_RATE_LIMITED')?.status, 429)
  // Another source logs in with the right password; its session may send a large body, up to the larger limit.
  const c = await admin('POST', '/v1/login/challenge', { body: JSON.stringify({ user: 'admin' }), localAddress: '127.0.0.10' })
  const spdId = loadIdentity(path.join(spd.dir, IDENTITY_FILE)).id
  const kdf = c.body.kdf as { N: number, r: number, p: number, salt: string }
  const pair = await deriveAdminKeyPair('correct horse battery', kdf, Buffer.from(kdf.salt, 'base64url'))
  const signature = sign(SIG_CTX_ADMIN_LOGIN, loginInput(spdId, 'admin', Buffer.from(c.body.challenge as string, 'base64url')), pair.signKey).toString('base64url')
  const ok = await admin('POST', '/v1/login', { body: JSON.stringify({ user: 'admin', challenge: c.body.challenge, signature }), localAddress: '127.0.0.10' })
  t.is(ok.status, 200)
  const token = ok.body.token as string
  const diff = await admin('POST', '/v1/policy/diff', { token, body: JSON.stringify({ text: POLICY + '# ' + 'x'.repeat(64 * 1024) + '\n' }) })
  t.is(diff.status, 200, JSON.stringify(diff.body))
  const huge = await admin('PUT', '/v1/policy', { token, declaredBytes: 5 * 1024 * 1024 })
  t.is(huge.status, 400); t.regex(huge.body.error.message, /over 4194304 bytes/)
})
