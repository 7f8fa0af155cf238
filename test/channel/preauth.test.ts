// Before authentication, on real TLS sockets: frames refused from their header (size, opcode) before the Hello and on
// enrollment channels, and the per-source connection limits of listen() (lib/channel/limits.ts).
import test from 'ava'
import net from 'node:net'
import tls from 'node:tls'
import { generateIdentity, type Identity } from '../../lib/crypto/identity'
import { ALPN_ENROLL, connect, listen, type ChannelServer, type ListenOptions, type RefuseReason } from '../../lib/channel/tls'
import { sourceOf, SourceLimiter } from '../../lib/channel/limits'
import { ERRORS } from '../../lib/wire/errors'
import { FLAG_ERROR, FLAG_REPLY, FrameSplitter, MAX_FRAME_BYTES, PREAUTH_FRAME_BYTES, encodeFrame, type Frame } from '../../lib/wire/frame'
import { Op } from '../../lib/wire/opcodes'

const HELLO_ENROLL = { min: 1, max: 1, cur: 1, role: 'enroll' }

interface Harness { srv: ChannelServer, port: number, server: Identity, refused: RefuseReason[], requests: number }

async function start (t: { teardown: (fn: () => Promise<void>) => void }, extra: Partial<ListenOptions> = {}): Promise<Harness> {
  const server = generateIdentity()
  const h = { server, refused: [], requests: 0 } as unknown as Harness
  h.srv = await listen({
    identity: server,
    authorize: p => p.alpn === ALPN_ENROLL ? 'enroll' : 'session',
    onRefused: reason => h.refused.push(reason),
    onChannel: ch => { ch.onRequest = (op) => { h.requests++; return op === Op.Enroll ? { host: ch.peer.id, servers: [] } : { load: { total: 0, cpu: 0, nic: 0, crypto: 0 }, weight: 1, pv: 1 } } },
    ...extra
  })
  h.port = h.srv.address().port
  t.teardown(async () => { await h.srv.close() })
  return h
}

interface Raw { sock: tls.TLSSocket, frames: Frame[], closed: Promise<void>, frame: () => Promise<Frame> }

/** A TLS client that writes raw bytes and collects the frames it gets back. */
function rawTls (t: { teardown: (fn: () => void) => void }, port: number, alpn: string): Promise<Raw> {
  const identity = generateIdentity()
  return new Promise((resolve, reject) => {
    const sock = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, minVersion: 'TLSv1.3', ALPNProtocols: [alpn], key: identity.keyPem, cert: identity.certPem })
    t.teardown(() => sock.destroy())
    const split = new FrameSplitter()
    const waiters: Array<(f: Frame) => void> = []
    let seen = 0
    const raw: Raw = {
      sock,
      frames: [],
      closed: new Promise<void>(resolve => sock.on('close', () => resolve())),
      frame: async () => await new Promise<Frame>(resolve => { if (raw.frames.length > seen) resolve(raw.frames[seen++]); else waiters.push(f => { seen++; resolve(f) }) })
    }
    sock.on('data', (d: Buffer) => { for (const f of split.push(d)) { raw.frames.push(f); waiters.shift()?.(f) } })
    sock.on('error', () => {})
    sock.once('secureConnect', () => resolve(raw))
    sock.once('error', reject)
  })
}

/** Only the 10 header bytes of a frame announcing `length`: a refusal can only have come from the header. */
function headerOnly (op: number, id: number, length: number, flags = 0): Buffer {
  const b = Buffer.alloc(10)
  b.writeUInt32BE(length, 0); b[4] = op; b[5] = flags; b.writeUInt32BE(id, 6)
  return b
}

const notice = (f: Frame | undefined): unknown => f === undefined ? undefined : [f.id, f.flags, (f.body as [number, string])[0]]

test('before the Hello: a frame announcing more than PREAUTH_FRAME_BYTES is refused from its header alone', async t => {
  const h = await start(t)
  for (const length of [PREAUTH_FRAME_BYTES + 1, MAX_FRAME_BYTES]) {
    const raw = await rawTls(t, h.port, 'pem/1')
    raw.sock.write(headerOnly(Op.Hello, 1, length)) // no body follows: the server must not wait for it
    await raw.closed
    t.deepEqual(notice(raw.frames[0]), [0, FLAG_REPLY | FLAG_ERROR, ERRORS.PEM_ERR_FRAME_TOO_LARGE.id])
  }
  t.is(h.requests, 0)
  t.deepEqual(h.refused, ['hello', 'hello'], 'counted as refused at the Hello')
})

test('before the Hello: any frame but a Hello request is refused from its header, its body never read', async t => {
  const h = await start(t)
  for (const head of [headerOnly(Op.Decide, 1, 100), headerOnly(Op.Hello, 0, 100), headerOnly(Op.Hello, 1, 100, FLAG_REPLY)]) {
    const raw = await rawTls(t, h.port, 'pem/1')
    raw.sock.write(head)
    await raw.closed
    t.deepEqual(notice(raw.frames[0]), [0, FLAG_REPLY | FLAG_ERROR, ERRORS.PEM_ERR_BAD_FRAME.id])
  }
  // a Hello of the pre-authentication size still opens the channel
  const ok = await rawTls(t, h.port, 'pem/1')
  ok.sock.write(encodeFrame(Op.Hello, 1, { min: 1, max: 1, cur: 1, role: 'host', pad: 'x'.repeat(PREAUTH_FRAME_BYTES - 80) }))
  const reply = await ok.frame()
  t.is(reply.flags, FLAG_REPLY)
  t.is(h.requests, 0)
})

test('enrollment channel: a frame over PREAUTH_FRAME_BYTES closes it, from the header; a session channel takes it', async t => {
  const h = await start(t)
  const raw = await rawTls(t, h.port, ALPN_ENROLL)
  raw.sock.write(encodeFrame(Op.Hello, 1, HELLO_ENROLL))
  t.is((await raw.frame()).flags, FLAG_REPLY)
  raw.sock.write(headerOnly(Op.Enroll, 2, PREAUTH_FRAME_BYTES + 1))
  await raw.closed
  t.deepEqual(notice(raw.frames[1]), [0, FLAG_REPLY | FLAG_ERROR, ERRORS.PEM_ERR_FRAME_TOO_LARGE.id])
  // Through the Channel API: the client learns the code from the server's notice.
  const enroll = await connect({ host: '127.0.0.1', port: h.port, identity: generateIdentity(), role: 'enroll', expectedId: h.server.id })
  await t.throwsAsync(enroll.request(Op.Enroll, { token: 'x'.repeat(PREAUTH_FRAME_BYTES), name: 'web-1' }), { code: 'PEM_ERR_CLOSED' })
  t.is(enroll.closeReason?.code, 'PEM_ERR_FRAME_TOO_LARGE')
  const session = await connect({ host: '127.0.0.1', port: h.port, identity: generateIdentity(), role: 'host', expectedId: h.server.id })
  t.teardown(() => session.close())
  await t.throwsAsync(session.request(Op.Ping, { pad: 'x'.repeat(64 * 1024) }), { code: 'PEM_ERR_BAD_BODY' })
  t.false(session.closed, 'a session channel reads frames up to maxFrameBytes')
  t.is(h.requests, 0)
})

test('enrollment channel: a request other than Enroll gets PEM_ERR_NOT_ENROLLED without its body being decoded', async t => {
  const h = await start(t)
  const raw = await rawTls(t, h.port, ALPN_ENROLL)
  raw.sock.write(encodeFrame(Op.Hello, 1, HELLO_ENROLL))
  await raw.frame()
  // 0xc1 is never valid msgpack: decoding it would close the channel with PEM_ERR_BAD_FRAME
  const junk = Buffer.concat([headerOnly(Op.Decide, 2, 6 + 3), Buffer.from([0xc1, 0xc1, 0xc1])])
  const junkNotice = Buffer.concat([headerOnly(Op.Ping, 0, 6 + 1), Buffer.from([0xc1])]) // unsolicited: dropped unread
  raw.sock.write(Buffer.concat([junk, junkNotice, encodeFrame(Op.Enroll, 3, { token: 't', name: 'web-1' })]))
  const refused = await raw.frame()
  t.deepEqual([refused.op, refused.id, refused.flags, (refused.body as [number, string])[0]], [Op.Decide, 2, FLAG_REPLY | FLAG_ERROR, ERRORS.PEM_ERR_NOT_ENROLLED.id])
  const enrolled = await raw.frame()
  t.deepEqual([enrolled.op, enrolled.id, enrolled.flags], [Op.Enroll, 3, FLAG_REPLY])
  t.is(h.requests, 1, 'only the Enroll reached the handler')
})

test('enrollment channel: closed by the server after enrollChannelMs, a session channel is not', async t => {
  const h = await start(t, { enrollChannelMs: 200 })
  const enroll = await connect({ host: '127.0.0.1', port: h.port, identity: generateIdentity(), role: 'enroll', expectedId: h.server.id })
  const closed = new Promise(resolve => enroll.once('close', resolve))
  const session = await connect({ host: '127.0.0.1', port: h.port, identity: generateIdentity(), role: 'host', expectedId: h.server.id })
  t.teardown(() => session.close())
  await closed // without the deadline it would stay open, and the test time out
  t.is(enroll.closeReason?.code, 'PEM_ERR_CLOSED')
  t.truthy(await session.request(Op.Ping, null))
  t.false(session.closed)
})

/** A bare TCP connection from `localAddress`; `closed` resolves when the server drops it. */
async function tcp (port: number, localAddress: string): Promise<{ sock: net.Socket, closed: Promise<void> }> {
  const sock = net.connect({ host: '127.0.0.1', port, localAddress })
  sock.on('error', () => {})
  const closed = new Promise<void>(resolve => sock.on('close', () => resolve()))
  await new Promise<void>((resolve, reject) => { sock.once('connect', resolve); sock.once('error', reject) })
  return { sock, closed }
}

test('connection limits: a source holding perSource connections gets its next one closed unread', async t => {
  const h = await start(t, { limits: { perSource: 2, ratePerS: 1000, burst: 1000, pending: 100 } })
  const held: net.Socket[] = []
  t.teardown(() => { for (const s of held) s.destroy() })
  for (let i = 0; i < 2; i++) held.push((await tcp(h.port, '127.0.0.2')).sock)
  await (await tcp(h.port, '127.0.0.2')).closed
  t.deepEqual(h.refused, ['source-connections'])
  const other = await connect({ host: '127.0.0.1', port: h.port, identity: generateIdentity(), role: 'host', expectedId: h.server.id })
  t.teardown(() => other.close())
  t.truthy(await other.request(Op.Ping, null), 'another source is served')
})

test('connection limits: a source past its burst of new connections is refused until its bucket refills', async t => {
  const h = await start(t, { limits: { perSource: 100, ratePerS: 0.001, burst: 3, pending: 100 } })
  for (let i = 0; i < 3; i++) { const c = await tcp(h.port, '127.0.0.3'); c.sock.destroy() }
  await (await tcp(h.port, '127.0.0.3')).closed
  t.deepEqual(h.refused, ['source-rate'])
})

test('connection limits: handshakes in progress are capped over all sources; an opened channel no longer counts', async t => {
  const h = await start(t, { limits: { perSource: 100, ratePerS: 1000, burst: 1000, pending: 3 } })
  const held: net.Socket[] = []
  t.teardown(() => { for (const s of held) s.destroy() })
  const a = await connect({ host: '127.0.0.1', port: h.port, identity: generateIdentity(), role: 'host', expectedId: h.server.id })
  t.teardown(() => a.close())
  for (const local of ['127.0.0.4', '127.0.0.5', '127.0.0.6']) held.push((await tcp(h.port, local)).sock)
  await (await tcp(h.port, '127.0.0.7')).closed
  t.deepEqual(h.refused, ['pending'])
  t.truthy(await a.request(Op.Ping, null), 'the open channel keeps working')
  t.is(h.srv.channels.size, 1)
})

test('SourceLimiter: IPv4-mapped addresses count as IPv4, IPv6 by /64; closing gives the slot back', t => {
  t.is(sourceOf('::ffff:10.1.2.3'), '10.1.2.3')
  t.is(sourceOf('2001:db8:1:2:aaaa::1'), '2001:db8:1:2::/64')
  t.is(sourceOf('2001:db8:1:2::ffff'), '2001:db8:1:2::/64')
  t.is(sourceOf('::1'), '0:0:0:0::/64')
  let now = 0
  const l = new SourceLimiter({ perSource: 1, ratePerS: 1, burst: 1, pending: 10 }, () => now)
  const first = l.admit('2001:db8:1:2::1')
  t.deepEqual(first, { source: '2001:db8:1:2::/64' })
  t.is(l.admit('2001:db8:1:2::2'), 'source-connections')
  l.release('2001:db8:1:2::/64', true)
  t.is(l.admit('2001:db8:1:2::3'), 'source-rate')
  now = 1000
  t.deepEqual(l.admit('2001:db8:1:2::3'), { source: '2001:db8:1:2::/64' })
  l.opened()
  t.deepEqual(l.tracked, { sources: 1, pending: 0 })
})
