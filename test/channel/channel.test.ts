// Channel RPC tests on real TLS sockets: pipelining, timeouts, closing, bad frames and bodies, coalesced writes.
import test from 'ava'
import tls from 'node:tls'
import { generateIdentity, type Identity } from '../../lib/crypto/identity'
import { PooledReply, type Channel, type RequestHandler } from '../../lib/channel/channel'
import { dataPool } from '../../lib/channel/buffer-pool'
import crypto from 'node:crypto'
import { connect, listen, type ChannelServer } from '../../lib/channel/tls'
import { PemError } from '../../lib/wire/errors'
import { FLAG_ERROR, FLAG_REPLY, FrameSplitter, encodeFrame, type Frame } from '../../lib/wire/frame'
import { Op } from '../../lib/wire/opcodes'
import type { DecideBody, DecideReply } from '../../lib/wire/packets'

const server = generateIdentity()
const client = generateIdentity()
const LOAD = { total: 0.2, cpu: 0.1, nic: 0.05, crypto: 0 }
const HELLO = { min: 1, max: 1, cur: 1, role: 'host' }

function decide (path: string): DecideBody {
  return { pv: 1, guard: '/data', path, action: 'read', attrs: { uid: 1000, gids: [1000], pid: 42, sid: 42, exe: '/bin/cat', exeHash: '', auth: 0 } }
}
function decision (rule: string): DecideReply {
  return { ok: true, reason: 0, rule, load: LOAD, weight: 10, pv: 1, bypass: false, ttl: 1000, key: null, compression: 'none', grant: null, scope: null }
}

interface Setup { srv: ChannelServer, port: number, serverChannels: Channel[], handlerErrors: unknown[] }

async function setup (t: { teardown: (fn: () => Promise<void> | void) => void }, handler: RequestHandler): Promise<Setup> {
  const s: Setup = { serverChannels: [], handlerErrors: [] } as unknown as Setup
  s.srv = await listen({
    identity: server,
    authorize: (p) => p.id === client.id ? 'session' : false,
    onChannel: (ch) => {
      s.serverChannels.push(ch)
      ch.onRequest = handler
      ch.on('handlerError', (e) => s.handlerErrors.push(e))
    }
  })
  s.port = s.srv.address().port
  t.teardown(async () => { await s.srv.close() })
  return s
}

async function open (t: { teardown: (fn: () => void) => void }, s: Setup, identity: Identity = client): Promise<Channel> {
  const ch = await connect({ host: '127.0.0.1', port: s.port, identity, role: 'host', expectedId: server.id })
  t.teardown(() => ch.close())
  return ch
}

const sleep = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms))

test('1000 requests in flight, answered out of order, each get their own reply', async t => {
  const s = await setup(t, async (_op, body) => {
    const path = (body as DecideBody).path
    await sleep(Math.floor(Math.random() * 30))
    return decision(path.slice(1))
  })
  const ch = await open(t, s)
  const order: number[] = []
  const all = Array.from({ length: 1000 }, async (_, i) => {
    const r = await ch.request(Op.Decide, decide(`/${i}`)) as DecideReply
    order.push(i)
    return r.rule
  })
  t.deepEqual(await Promise.all(all), Array.from({ length: 1000 }, (_, i) => String(i)))
  t.notDeepEqual(order, [...order].sort((a, b) => a - b), 'replies did arrive out of order')
  t.is(ch.inFlight, 0)
})

test('a request times out with PEM_ERR_TIMEOUT; its late reply is ignored and the channel goes on', async t => {
  let release: () => void = () => {}
  const s = await setup(t, async (_op, body) => {
    const path = (body as DecideBody).path
    if (path === '/slow') await new Promise<void>(resolve => { release = resolve })
    return decision(path)
  })
  const ch = await open(t, s)
  const started = Date.now()
  await t.throwsAsync(ch.request(Op.Decide, decide('/slow'), { timeoutMs: 60 }), { code: 'PEM_ERR_TIMEOUT' })
  t.true(Date.now() - started < 1000)
  t.is(ch.inFlight, 0, 'the pending entry is gone')
  release()
  await sleep(20)
  t.is(((await ch.request(Op.Decide, decide('/fast'))) as DecideReply).rule, '/fast')
  t.false(ch.closed)
})

test('the peer closing mid-request rejects every pending request with PEM_ERR_CLOSED', async t => {
  let count = 0
  const s = await setup(t, async (_op, _body, ch) => {
    if (++count === 5) setTimeout(() => ch.close(), 10)
    return await new Promise(() => {})
  })
  const ch = await open(t, s)
  const closed = new Promise<PemError>(resolve => ch.once('close', resolve))
  const pending = Array.from({ length: 5 }, () => ch.request(Op.Ping, null, { timeoutMs: 5000 }))
  for (const p of pending) await t.throwsAsync(p, { code: 'PEM_ERR_CLOSED' })
  t.is((await closed).code, 'PEM_ERR_CLOSED')
  await t.throwsAsync(ch.request(Op.Ping, null), { code: 'PEM_ERR_CLOSED' })
  t.throws(() => ch.notify(Op.Ping, null), { code: 'PEM_ERR_CLOSED' })
})

test('a bad request body gets a PEM_ERR_BAD_BODY reply and the channel stays usable', async t => {
  let calls = 0
  const s = await setup(t, (_op, body) => { calls++; return decision((body as DecideBody).path) })
  const ch = await open(t, s)
  await t.throwsAsync(ch.request(Op.Decide, { ...decide('/x'), action: 'launch' }), { code: 'PEM_ERR_BAD_BODY' })
  await t.throwsAsync(ch.request(Op.Decide, 'not a map'), { code: 'PEM_ERR_BAD_BODY' })
  await t.throwsAsync(ch.request(Op.Ping, { unexpected: true }), { code: 'PEM_ERR_BAD_BODY' })
  t.is(calls, 0, 'the handler never saw a bad body')
  t.is(((await ch.request(Op.Decide, decide('/ok'))) as DecideReply).rule, '/ok')
  t.false(ch.closed)
})

test('handler errors travel by code; foreign errors become PEM_ERR_UNKNOWN without their text', async t => {
  const s = await setup(t, async (_op, body) => {
    const path = (body as DecideBody).path
    if (path === '/deny') throw new PemError('PEM_ERR_POLICY_DENY', 'rule r7 denies')
    if (path === '/stale') throw new PemError('PEM_ERR_STALE_POLICY', '9')
    if (path === '/sync') throw new Error('secret internals')
    return { bad: 'reply' }
  })
  const ch = await open(t, s)
  const deny = await t.throwsAsync(ch.request(Op.Decide, decide('/deny')), { code: 'PEM_ERR_POLICY_DENY' })
  t.is(deny?.message, 'rule r7 denies')
  await t.throwsAsync(ch.request(Op.Decide, decide('/stale')), { code: 'PEM_ERR_STALE_POLICY', message: '9' })
  const unknown = await t.throwsAsync(ch.request(Op.Decide, decide('/sync')), { code: 'PEM_ERR_UNKNOWN' })
  t.notRegex(unknown?.message ?? '', /secret/)
  t.is(s.handlerErrors.length, 1)
  await t.throwsAsync(ch.request(Op.Decide, decide('/bad-reply')), { code: 'PEM_ERR_BAD_BODY' }, 'replies are checked too')
  t.false(ch.closed)
})

test('an opcode without a handler, a second Hello and an unknown opcode are refused by code', async t => {
  const s = await setup(t, () => null)
  s.srv.channels.forEach(c => { c.onRequest = undefined })
  const ch = await open(t, s)
  s.serverChannels[0].onRequest = undefined
  await t.throwsAsync(ch.request(Op.Ping, null), { code: 'PEM_ERR_BAD_OPCODE' })
  await t.throwsAsync(ch.request(Op.Hello, HELLO), { code: 'PEM_ERR_BAD_FRAME' })
  await t.throwsAsync(ch.request(0x7f as Op, null), { code: 'PEM_ERR_BAD_OPCODE' })
  t.false(ch.closed)
})

test('unsolicited frames (id 0) reach onMessage both ways', async t => {
  const got: unknown[] = []
  const s = await setup(t, () => null)
  const ch = await open(t, s)
  const arrived = new Promise<void>(resolve => { ch.onMessage = (op, body) => { got.push([op, body]); resolve() } })
  s.serverChannels[0].notify(Op.Heartbeat, { hi: 1 })
  await arrived
  t.deepEqual(got, [[Op.Heartbeat, { hi: 1 }]])
  const back = new Promise<unknown>(resolve => { s.serverChannels[0].onMessage = (_op, body) => resolve(body) })
  ch.notify(Op.Heartbeat, [1, 2])
  t.deepEqual(await back, [1, 2])
})

test('frames the server sends right behind its Hello reply reach the handlers given to connect', async t => {
  const replies: unknown[] = []
  let replied: () => void = () => {}
  const replyArrived = new Promise<void>(resolve => { replied = resolve })
  const srv = await listen({
    identity: server,
    authorize: () => 'session',
    onChannel: (ch) => {
      ch.notify(Op.Heartbeat, 'first')
      ch.request(Op.Heartbeat, 'second').then(r => replies.push(r), (e: PemError) => replies.push(e.code)).finally(() => replied())
    }
  })
  t.teardown(async () => { await srv.close() })
  const got: unknown[] = []
  const done = new Promise<void>(resolve => {
    const ch = connect({
      host: '127.0.0.1',
      port: srv.address().port,
      identity: client,
      role: 'host',
      expectedId: server.id,
      onMessage: (_op, body) => { got.push(['message', body]) },
      onRequest: (_op, body) => { got.push(['request', body]); resolve(); return 'ok' }
    })
    ch.then(c => t.teardown(() => c.close()), () => resolve())
  })
  await done
  await replyArrived
  t.deepEqual(got, [['message', 'first'], ['request', 'second']])
  t.deepEqual(replies, ['ok'])
})

for (const [name, bytes, code] of [
  ['an oversized length header', Buffer.from([0xff, 0xff, 0xff, 0xff, 0x03, 0, 0, 0, 0, 9]), 'PEM_ERR_FRAME_TOO_LARGE'],
  ['a length below the header size', Buffer.from([0, 0, 0, 2, 0x03, 0, 0, 0, 0, 9]), 'PEM_ERR_BAD_FRAME'],
  ['an unknown opcode', Buffer.from([0, 0, 0, 7, 0x7e, 0, 0, 0, 0, 9, 0xc0]), 'PEM_ERR_BAD_OPCODE'],
  ['a body that is not msgpack', Buffer.from([0, 0, 0, 7, 0x03, 0, 0, 0, 0, 9, 0xc1]), 'PEM_ERR_BAD_FRAME'],
  ['an error flag on a request', encodeFrame(Op.Ping, 9, [1, 'x'], FLAG_ERROR), 'PEM_ERR_BAD_FRAME']
] as const) {
  test(`${name} closes that channel with ${code}; the server keeps serving others`, async t => {
    const s = await setup(t, () => ({ load: LOAD, weight: 1, pv: 1 }))
    const good = await open(t, s)
    const raw = await rawClient(t, s.port, client)
    raw.sock.write(encodeFrame(Op.Hello, 1, HELLO))
    await raw.frame()
    raw.sock.write(bytes)
    await raw.closed
    const last = raw.frames[raw.frames.length - 1]
    t.is(last.id, 0)
    t.is(last.flags, FLAG_REPLY | FLAG_ERROR)
    t.is(PemError.fromWire((last.body as [number, string])[0], '').code, code)
    t.deepEqual(await good.request(Op.Ping, null), { load: LOAD, weight: 1, pv: 1 })
    const again = await open(t, s)
    t.deepEqual(await again.request(Op.Ping, null), { load: LOAD, weight: 1, pv: 1 })
  })
}

test('anything before the Hello is PEM_ERR_BAD_FRAME and closes; no channel is opened', async t => {
  let served = 0
  const s = await setup(t, () => { served++; return null })
  const raw = await rawClient(t, s.port, client)
  raw.sock.write(encodeFrame(Op.Ping, 1, null))
  await raw.closed
  t.deepEqual(raw.frames.map(f => [f.id, f.flags, (f.body as unknown[])[0]]), [[0, 3, 1]])
  t.is(s.serverChannels.length, 0)
  t.is(served, 0)
})

test('a bad Hello body closes with PEM_ERR_BAD_BODY', async t => {
  const s = await setup(t, () => null)
  const raw = await rawClient(t, s.port, client)
  raw.sock.write(encodeFrame(Op.Hello, 1, { min: 1, max: 1, cur: 1, role: 'root' }))
  await raw.closed
  t.deepEqual(raw.frames.map(f => [f.id, (f.body as unknown[])[0]]), [[0, 10]])
  t.is(s.serverChannels.length, 0)
})

test('100 requests arriving together are answered in one coalesced socket write', async t => {
  const s = await setup(t, (op) => op === Op.Ping ? { load: LOAD, weight: 1, pv: 1 } : null)
  const raw = await rawClient(t, s.port, client)
  raw.sock.write(encodeFrame(Op.Hello, 1, HELLO))
  await raw.frame()
  const serverSocket = (s.serverChannels[0] as unknown as { socket: tls.TLSSocket }).socket
  let writes = 0
  const write = serverSocket.write.bind(serverSocket) as (...a: unknown[]) => boolean
  serverSocket.write = ((...a: unknown[]) => { writes++; return write(...a) }) as typeof serverSocket.write
  raw.sock.write(Buffer.concat(Array.from({ length: 100 }, (_, i) => encodeFrame(Op.Ping, i + 2, null))))
  while (raw.frames.length < 101) await raw.frame()
  t.deepEqual(raw.frames.slice(1).map(f => f.id), Array.from({ length: 100 }, (_, i) => i + 2))
  t.true(writes >= 1 && writes <= 2, `${writes} socket writes for 100 replies`)
})

test('a client closing mid-request does not disturb the server', async t => {
  const s = await setup(t, async () => { await sleep(30); return { load: LOAD, weight: 1, pv: 1 } })
  const ch = await open(t, s)
  const p = ch.request(Op.Ping, null)
  ch.close()
  await t.throwsAsync(p, { code: 'PEM_ERR_CLOSED' })
  await sleep(60)
  const other = await open(t, s)
  t.deepEqual(await other.request(Op.Ping, null), { load: LOAD, weight: 1, pv: 1 })
})

interface Raw { sock: tls.TLSSocket, frames: Frame[], closed: Promise<void>, frame: () => Promise<Frame> }

function rawClient (t: { teardown: (fn: () => void) => void }, port: number, identity: Identity): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const sock = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, minVersion: 'TLSv1.3', ALPNProtocols: ['pem/1'], key: identity.keyPem, cert: identity.certPem })
    t.teardown(() => sock.destroy())
    const split = new FrameSplitter()
    let waiter: ((f: Frame) => void) | undefined
    let seen = 0
    const raw: Raw = {
      sock,
      frames: [],
      closed: new Promise<void>(resolve => sock.on('close', () => resolve())),
      frame: async () => await new Promise<Frame>((resolve) => {
        if (raw.frames.length > seen) { resolve(raw.frames[seen++]); return }
        waiter = (f) => { seen++; resolve(f) }
      })
    }
    sock.on('data', (d: Buffer) => {
      for (const f of split.push(d)) {
        raw.frames.push(f)
        if (waiter !== undefined) { const w = waiter; waiter = undefined; w(f) }
      }
    })
    sock.on('error', () => {})
    sock.once('secureConnect', () => resolve(raw))
    sock.once('error', reject)
  })
}

test('32 large requests in flight both ways never stall on backpressure (client keeps reading replies)', async t => {
  const s = await setup(t, (_op, body) => body)
  const ch = await open(t, s)
  const body = { grant: 'g', header: Buffer.alloc(50), blocks: Array.from({ length: 64 }, (_, i) => i), lens: Array(64).fill(16384), data: Buffer.alloc(64 * 16384, 7) }
  let done = 0
  await Promise.all(Array.from({ length: 32 }, async () => {
    for (let i = 0; i < 4; i++) { await ch.request(Op.BlocksSeal, body, { timeoutMs: 5000 }); done++ }
  }))
  t.is(done, 128)
})

test('pooled frames: an echo of 48 large requests in flight returns each one intact while their buffers are reused', async t => {
  // The server assembles each request in a buffer of dataPool and gives it back once the reply (here: a view of the
  // request itself) is written; released too early, a later request would overwrite a reply still being sent.
  const s = await setup(t, (_op, body) => body)
  const ch = await open(t, s)
  const before = dataPool.retained
  const bodies = Array.from({ length: 48 }, (_, i) => {
    const data = crypto.randomBytes(96 * 1024 + i * 1000)
    return { grant: 'g', header: Buffer.alloc(50), blocks: [0, 1, 2], lens: [data.length - 2, 1, 1], data }
  })
  for (let round = 0; round < 3; round++) {
    const replies = await Promise.all(bodies.map(async b => await ch.request(Op.BlocksSeal, b, { timeoutMs: 10000 }) as { data: Buffer }))
    replies.forEach((r, i) => t.true(r.data.equals(bodies[i].data), `round ${round}, request ${i}`))
    for (const r of replies) dataPool.give(r.data) // the client side's frames too: reused by the next round
  }
  t.true(dataPool.retained > before, 'buffers came back to the pool')
})

test('pooled frames: a PooledReply\'s buffers go back to the pool after the reply is written', async t => {
  const given: Buffer[] = []
  const s = await setup(t, (_op, body) => {
    const n = (body as { data: Buffer }).data.length
    const out = dataPool.take(n)
    out.fill(0x5a)
    given.push(out)
    return new PooledReply({ lens: [n], data: out }, [out])
  })
  const ch = await open(t, s)
  const data = Buffer.alloc(300 * 1024, 1)
  const r = await ch.request(Op.BlocksOpen, { grant: 'g', header: Buffer.alloc(50), blocks: [0], lens: [data.length], data }) as { data: Buffer }
  t.true(r.data.equals(Buffer.alloc(data.length, 0x5a)))
  await sleep(50)
  const free = Array.from({ length: 8 }, () => dataPool.take(data.length)) // everything of that size class now free
  t.true(free.some(b => b.buffer === given[0].buffer), 'the reply buffer is handed out again')
  for (const b of free) dataPool.give(b)
})
