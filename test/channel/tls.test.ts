// TLS channel tests on real sockets: key pinning both ways, refusal at the handshake, enrollment ALPN, Hello versions.
import test from 'ava'
import net from 'node:net'
import tls from 'node:tls'
import { generateIdentity, type Identity } from '../../lib/crypto/identity'
import type { Channel, PeerInfo } from '../../lib/channel/channel'
import { ALPN_ENROLL, connect, listen, type ChannelServer, type ListenOptions, type RefuseReason } from '../../lib/channel/tls'
import { FLAG_REPLY, FrameSplitter, encodeFrame, type Frame } from '../../lib/wire/frame'
import { Op } from '../../lib/wire/opcodes'
import type { PemError } from '../../lib/wire/errors'

const PING_REPLY = { load: { total: 0.5, cpu: 0.25, nic: 0, crypto: 0 }, weight: 10, pv: 7 }

interface Harness {
  srv: ChannelServer
  port: number
  server: Identity
  refused: Array<{ reason: RefuseReason, peer: Partial<PeerInfo> }>
  authorized: PeerInfo[]
  channels: Channel[]
  requests: number
}

async function start (t: { teardown: (fn: () => Promise<void>) => void }, allowed: Identity[], extra: Partial<ListenOptions> = {}): Promise<Harness> {
  const server = generateIdentity()
  const ids = new Set(allowed.map(i => i.id))
  const h = { server, refused: [], authorized: [], channels: [], requests: 0 } as unknown as Harness
  h.srv = await listen({
    identity: server,
    authorize: (p) => { h.authorized.push(p); return ids.has(p.id) ? 'session' : false },
    onRefused: (reason, peer) => h.refused.push({ reason, peer }),
    onChannel: (ch) => {
      h.channels.push(ch)
      ch.onRequest = (op) => {
        h.requests++
        if (op === Op.Enroll) return { host: ch.peer.id, servers: [] }
        return PING_REPLY
      }
    },
    hello: () => ({ name: 'spd-test', pv: 7 }),
    ...extra
  })
  h.port = h.srv.address().port
  t.teardown(async () => { await h.srv.close() })
  return h
}

test('mutual authentication with pinned keys; both sides know the other id', async t => {
  const client = generateIdentity()
  const h = await start(t, [client])
  const ch = await connect({ host: '127.0.0.1', port: h.port, identity: client, role: 'host', expectedId: h.server.id })
  t.teardown(() => ch.close())
  t.is(ch.version, 1)
  t.is(ch.peer.id, h.server.id)
  t.deepEqual(ch.peer.key, h.server.publicKey)
  t.deepEqual(ch.helloReply, { version: 1, server: h.server.id, name: 'spd-test', pv: 7 })
  t.deepEqual(await ch.request(Op.Ping, null), PING_REPLY)
  t.is(h.channels.length, 1)
  t.is(h.channels[0].peer.id, client.id)
  t.is(h.channels[0].role, 'host')
  t.is(h.channels[0].mode, 'session')
  t.is(h.channels[0].peer.alpn, 'pem/1')
  t.is(h.channels[0].peer.remoteAddress, '127.0.0.1')
})

test('a pin function sees the server key; a wrong server key is PEM_ERR_PEER_KEY', async t => {
  const client = generateIdentity()
  const h = await start(t, [client])
  const seen: string[] = []
  const ok = await connect({ host: '127.0.0.1', port: h.port, identity: client, role: 'member', pin: (p) => { seen.push(p.id); return p.key.equals(h.server.publicKey) } })
  ok.close()
  t.deepEqual(seen, [h.server.id])
  await t.throwsAsync(connect({ host: '127.0.0.1', port: h.port, identity: client, role: 'host', expectedId: generateIdentity().id }), { code: 'PEM_ERR_PEER_KEY' })
  await t.throwsAsync(connect({ host: '127.0.0.1', port: h.port, identity: client, role: 'host', pin: () => false }), { code: 'PEM_ERR_PEER_KEY' })
  await t.throwsAsync(connect({ host: '127.0.0.1', port: h.port, identity: client, role: 'host', pin: () => { throw new Error('boom') } }), { code: 'PEM_ERR_PEER_KEY' })
  await t.throwsAsync(connect({ host: '127.0.0.1', port: h.port, identity: client, role: 'host' }), { code: 'PEM_ERR_BAD_ARGUMENT' })
  t.is(h.requests, 0)
})

test('an unknown client key is refused at the handshake: no channel, no request read, a coded error', async t => {
  const known = generateIdentity()
  const stranger = generateIdentity()
  const h = await start(t, [known])
  const err = await t.throwsAsync(connect({ host: '127.0.0.1', port: h.port, identity: stranger, role: 'host', expectedId: h.server.id }))
  t.is((err as PemError | undefined)?.code, 'PEM_ERR_NOT_ENROLLED')
  // A raw client that pipelines a Hello and a Decide right after the handshake gets nothing served either.
  const raw = await rawClient(h.port, stranger)
  raw.sock.write(Buffer.concat([encodeFrame(Op.Hello, 1, { min: 1, max: 1, cur: 1, role: 'host' }), encodeFrame(Op.Ping, 2, null)]))
  await raw.closed
  t.deepEqual(raw.frames.map(f => [f.id, f.flags, f.body]), [[0, 3, [13, 'host key is not enrolled']]])
  t.is(h.channels.length, 0, 'onChannel never ran')
  t.is(h.requests, 0, 'onRequest never ran')
  t.deepEqual(h.refused.map(r => [r.reason, r.peer.id]), [['unauthorized', stranger.id], ['unauthorized', stranger.id]])
})

test('a client without a certificate is refused with reason no-certificate', async t => {
  const h = await start(t, [])
  const raw = await rawClient(h.port)
  raw.sock.write(encodeFrame(Op.Hello, 1, { min: 1, max: 1, cur: 1, role: 'host' }))
  await raw.closed
  t.is(h.authorized.length, 0, 'authorize is not even asked')
  t.deepEqual(h.refused.map(r => r.reason), ['no-certificate'])
  t.is(h.requests, 0)
})

test('enrollment ALPN: an unknown key may enroll and do nothing else', async t => {
  const host = generateIdentity()
  const h = await start(t, [], { authorize: (p) => p.alpn === ALPN_ENROLL ? 'enroll' : false })
  const ch = await connect({ host: '127.0.0.1', port: h.port, identity: host, role: 'enroll', expectedId: h.server.id })
  t.teardown(() => ch.close())
  t.is(ch.peer.alpn, 'pem-enroll/1')
  t.deepEqual(await ch.request(Op.Enroll, { token: 'tok', name: 'web-1' }), { host: host.id, servers: [] })
  await t.throwsAsync(ch.request(Op.Ping, null), { code: 'PEM_ERR_NOT_ENROLLED' })
  t.is(h.requests, 1, 'the Ping never reached the handler')
  // The same unknown key on the session ALPN is refused at the handshake.
  await t.throwsAsync(connect({ host: '127.0.0.1', port: h.port, identity: host, role: 'host', expectedId: h.server.id }), { code: 'PEM_ERR_NOT_ENROLLED' })
  // A session role over the enrollment ALPN is refused by the Hello.
  await t.throwsAsync(connect({ host: '127.0.0.1', port: h.port, identity: host, role: 'host', alpn: ALPN_ENROLL, expectedId: h.server.id }), { code: 'PEM_ERR_NOT_ENROLLED' })
  t.deepEqual(h.refused.map(r => r.reason), ['unauthorized', 'hello'])
})

test('authorize must match the ALPN: an enroll verdict on the session protocol is refused', async t => {
  const host = generateIdentity()
  const h = await start(t, [], { authorize: () => 'enroll' })
  await t.throwsAsync(connect({ host: '127.0.0.1', port: h.port, identity: host, role: 'host', expectedId: h.server.id }), { code: 'PEM_ERR_NOT_ENROLLED' })
  t.deepEqual(h.refused.map(r => r.reason), ['alpn-mismatch'])
  t.is(h.channels.length, 0)
})

test('an async authorize works, and one that throws refuses', async t => {
  const client = generateIdentity()
  let fail = false
  const h = await start(t, [], { authorize: async (): Promise<'session'> => { await new Promise(resolve => setTimeout(resolve, 10)); if (fail) throw new Error('db down'); return 'session' } })
  const ch = await connect({ host: '127.0.0.1', port: h.port, identity: client, role: 'host', expectedId: h.server.id })
  t.deepEqual(await ch.request(Op.Ping, null), PING_REPLY)
  ch.close()
  fail = true
  await t.throwsAsync(connect({ host: '127.0.0.1', port: h.port, identity: client, role: 'host', expectedId: h.server.id }), { code: 'PEM_ERR_NOT_ENROLLED' })
  t.deepEqual(h.refused.map(r => r.reason), ['authorize-failed'])
})

test('Hello: the highest common version wins; no overlap is PEM_ERR_VERSION either way', async t => {
  const client = generateIdentity()
  const h = await start(t, [client], { versions: { min: 1, max: 3, cur: 3 } })
  const opts = { host: '127.0.0.1', port: h.port, identity: client, role: 'host' as const, expectedId: h.server.id }
  const a = await connect({ ...opts, versions: { min: 1, max: 5, cur: 5 } })
  t.is(a.version, 3); a.close()
  const b = await connect({ ...opts, versions: { min: 2, max: 2, cur: 2 } })
  t.is(b.version, 2); b.close()
  await t.throwsAsync(connect({ ...opts, versions: { min: 4, max: 9, cur: 9 } }), { code: 'PEM_ERR_VERSION' })
  const low = await start(t, [client], { versions: { min: 2, max: 2, cur: 2 } })
  await t.throwsAsync(connect({ ...opts, port: low.port, expectedId: low.server.id }), { code: 'PEM_ERR_VERSION' })
  t.is(low.channels.length, 0)
})

test('a server that answers Hello with a version outside our range is PEM_ERR_VERSION', async t => {
  const server = generateIdentity()
  const client = generateIdentity()
  const fake = tls.createServer({ key: server.keyPem, cert: server.certPem, minVersion: 'TLSv1.3', requestCert: true, rejectUnauthorized: false, ALPNProtocols: ['pem/1'] }, (s) => {
    const split = new FrameSplitter()
    s.on('data', (d: Buffer) => { for (const f of split.push(d)) s.write(encodeFrame(f.op, f.id, { version: 9, server: server.id, name: 'x', pv: 0 }, FLAG_REPLY)) })
    s.on('error', () => {})
  })
  t.teardown(() => { fake.close() })
  await new Promise<void>(resolve => fake.listen(0, '127.0.0.1', resolve))
  const port = (fake.address() as net.AddressInfo).port
  await t.throwsAsync(connect({ host: '127.0.0.1', port, identity: client, role: 'host', expectedId: server.id }), { code: 'PEM_ERR_VERSION' })
})

test('nothing listening is PEM_ERR_UNREACHABLE; a silent listener is PEM_ERR_TIMEOUT', async t => {
  const client = generateIdentity()
  const probe = net.createServer()
  await new Promise<void>(resolve => probe.listen(0, '127.0.0.1', resolve))
  const freePort = (probe.address() as net.AddressInfo).port
  await new Promise<void>(resolve => probe.close(() => resolve()))
  await t.throwsAsync(connect({ host: '127.0.0.1', port: freePort, identity: client, role: 'host', expectedId: 'x' }), { code: 'PEM_ERR_UNREACHABLE' })
  const sockets: net.Socket[] = []
  const silent = net.createServer(s => sockets.push(s))
  t.teardown(() => { for (const s of sockets) s.destroy(); silent.close() })
  await new Promise<void>(resolve => silent.listen(0, '127.0.0.1', resolve))
  const started = Date.now()
  await t.throwsAsync(connect({ host: '127.0.0.1', port: (silent.address() as net.AddressInfo).port, identity: client, role: 'host', expectedId: 'x', connectTimeoutMs: 150 }), { code: 'PEM_ERR_TIMEOUT' })
  t.true(Date.now() - started < 1000)
})

test('closing the server closes its channels: pending requests reject with PEM_ERR_CLOSED', async t => {
  const client = generateIdentity()
  const h = await start(t, [client], { onChannel: (ch) => { h.channels.push(ch); ch.onRequest = () => new Promise(() => {}) } })
  const ch = await connect({ host: '127.0.0.1', port: h.port, identity: client, role: 'host', expectedId: h.server.id })
  const pending = Array.from({ length: 5 }, () => ch.request(Op.Ping, null, { timeoutMs: 5000 }))
  await new Promise(resolve => setTimeout(resolve, 20))
  t.is(h.srv.channels.size, 1)
  await h.srv.close()
  for (const p of pending) await t.throwsAsync(p, { code: 'PEM_ERR_CLOSED' })
  t.true(ch.closed)
  t.is(h.srv.channels.size, 0)
})

interface Raw { sock: tls.TLSSocket, frames: Frame[], closed: Promise<void> }

function rawClient (port: number, identity?: Identity, alpn = 'pem/1'): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const sock = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, minVersion: 'TLSv1.3', ALPNProtocols: [alpn], ...(identity === undefined ? {} : { key: identity.keyPem, cert: identity.certPem }) })
    const frames: Frame[] = []
    const split = new FrameSplitter()
    sock.on('data', (d: Buffer) => frames.push(...split.push(d)))
    const closed = new Promise<void>(resolve => sock.on('close', () => resolve()))
    sock.on('error', () => {})
    sock.once('secureConnect', () => resolve({ sock, frames, closed }))
    sock.once('error', reject)
  })
}
