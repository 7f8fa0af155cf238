// The host's policy version fence (lib/pem-fs/client.ts): a version one server announces is not adopted and does not
// get the others marked down (issue 15 finding 1); a version a majority reports is adopted and the laggard is then down.
import test from 'ava'
import crypto from 'node:crypto'
import { identityFromKey } from '../../lib/crypto/identity'
import { ClusterClient, type ServerState } from '../../lib/pem-fs/client'
import { ERRORS } from '../../lib/wire/errors'
import { Op } from '../../lib/wire/opcodes'

function hostIdentity (): ReturnType<typeof identityFromKey> {
  const der = Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), Buffer.alloc(32, 9)])
  return identityFromKey(crypto.createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }))
}

const LOAD = { total: 0.3, cpu: 0.3, nic: 0, crypto: 0 }

/** A server at `version()` that answers like handleDecide: a request of another non-zero version is stale. */
function serverAt (version: () => number): { closed: boolean, close: () => void, request: (op: number, body: { pv: number }) => Promise<unknown>, asked: number[] } {
  const ch = {
    closed: false,
    asked: [] as number[],
    close: () => { ch.closed = true },
    request: async (_op: number, body: { pv: number }) => {
      ch.asked.push(body.pv)
      const pv = version()
      const stale = body.pv !== 0 && body.pv !== pv
      return { ok: !stale, reason: stale ? ERRORS.PEM_ERR_STALE_POLICY.id : 0, rule: null, load: LOAD, weight: 50, pv, bypass: true, ttl: 0, key: null, compression: 'none', grant: null }
    }
  }
  return ch
}

const ask = { guard: '/g', path: '/x', action: 'read' as const, attrs: {} as never }

/** Three servers a, b, c asked in that order (round robin stays on a server while it serves); the host has worked
 * with all three at `version` before. */
function hostWith (version: number, channels: Array<ReturnType<typeof serverAt>>): ClusterClient {
  const c = new ClusterClient(hostIdentity(), ['a', 'b', 'c'].map(id => ({ id, key: `k-${id}`, addr: '127.0.0.1:9', name: id })), { selection: 'round-robin', random: () => 0, retryDownMs: 60_000 })
  c.servers.forEach((s, i) => { s.channel = channels[i] as unknown as ServerState['channel']; s.pv = version })
  c.pv = version
  return c
}

test('one server announcing a huge version: the host keeps its fence and the others, and is served by them', async t => {
  const rogue = serverAt(() => Number.MAX_SAFE_INTEGER)
  const honest = [serverAt(() => 7), serverAt(() => 7)]
  const c = hostWith(7, [rogue, ...honest])
  for (let i = 0; i < 4; i++) {
    const d = await c.decide(ask)
    t.true(d.ok)
    t.not(d.server, 'a', 'not served under the announced version')
  }
  t.is(c.pv, 7, 'the fence is the version a majority reports')
  t.true(c.servers.slice(1).every(s => s.state === 'up'), 'the honest servers are not marked down')
  t.false(honest.some(h => h.asked.includes(Number.MAX_SAFE_INTEGER)), 'nobody was asked under the announced version')
  c.close()
})

test('a version a majority reports is adopted; a server then behind it is marked down', async t => {
  const versions = [3, 3, 3]
  const c = hostWith(3, versions.map((_, i) => serverAt(() => versions[i])))
  versions[0] = 4
  t.is((await c.decide(ask)).server, 'b', 'a alone is ahead: b serves version 3')
  t.is(c.pv, 3)
  versions[1] = 4
  const d = await c.decide(ask)
  t.true(d.ok)
  t.is(c.pv, 4, 'a and b report 4: adopted')
  t.is(d.pv, 4)
  versions[0] = 3 // a restarted from an older configuration
  t.is((await c.decide(ask)).server, 'b')
  t.is(c.servers[0].state, 'down', 'behind the confirmed fence: down')
  c.close()
})

/** A server at `pv` whose Servers reply lists `listed`, whose decisions answer `decide` (default: like serverAt). */
function listingServer (pv: number, listed: string[], decide?: number): { closed: boolean, close: () => void, request: (op: number, body: { pv: number } | null) => Promise<unknown> } {
  const base = serverAt(() => pv)
  return {
    closed: false,
    close: () => {},
    request: async (op, body) => {
      if (op === Op.Servers) return { pv, servers: listed.map(id => ({ id, key: `k-${id}`, addr: '127.0.0.1:9', name: id })) }
      if (op === Op.Ping) return { load: LOAD, weight: 50, pv }
      if (decide !== undefined) return { ok: false, reason: decide, rule: null, load: LOAD, weight: 50, pv, bypass: false, ttl: 0, key: null, compression: 'none', grant: null }
      return await base.request(op, body as { pv: number })
    }
  }
}

/** Two servers a and b at version 5 with the host; b's channel is `b` (null: it is not running, 127.0.0.1:9 refuses). */
function hostOfTwo (a: ReturnType<typeof listingServer>, b: ReturnType<typeof listingServer> | null): ClusterClient {
  const c = new ClusterClient(hostIdentity(), ['a', 'b'].map(id => ({ id, key: `k-${id}`, addr: '127.0.0.1:9', name: id })), { selection: 'round-robin', random: () => 0, retryDownMs: 60_000, timeoutMs: 1000 })
  c.servers[0].channel = a as unknown as ServerState['channel']
  c.servers[1].channel = b as unknown as ServerState['channel']
  c.servers.forEach(s => { s.pv = 5 })
  c.pv = 5
  return c
}

test('of two servers one departed: the survivor is ahead, its list leaves the departed one out, the host adopts it and is served', async t => {
  const c = hostOfTwo(listingServer(6, ['a']), null)
  const d = await c.decide(ask)
  t.true(d.ok)
  t.is(d.server, 'a')
  t.is(c.pv, 6, 'confirmed over the list of one')
  t.deepEqual(c.servers.map(s => s.entry.id), ['a'])
  c.close()
})

test('a list that drops a server still answering pings is not adopted (no server talks the host out of a reachable one)', async t => {
  const c = hostOfTwo(listingServer(Number.MAX_SAFE_INTEGER, ['a']), listingServer(5, ['a', 'b'], ERRORS.PEM_ERR_OVERLOAD.id))
  await t.throwsAsync(c.decide(ask), { message: /over its load threshold|not yet reported by a majority/ })
  t.deepEqual(c.servers.map(s => s.entry.id), ['a', 'b'], 'the list is kept')
  t.is(c.pv, 5, 'the fence is kept')
  c.close()
})

test('a list that does not name the server sending it, or drops nobody, is not adopted', async t => {
  for (const listed of [['b'], ['a', 'b']]) {
    const c = hostOfTwo(listingServer(6, listed), null)
    await t.throwsAsync(c.decide(ask), { message: /ECONNREFUSED|not yet reported by a majority/ }) // the last server's refusal
    t.deepEqual(c.servers.map(s => s.entry.id), ['a', 'b'], listed.join())
    t.is(c.pv, 5)
    c.close()
  }
})
