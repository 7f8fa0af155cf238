// Host-side server selection (lib/pem-fs/selection.ts): each strategy's choice on crafted tables, load aging, no
// herding under the default strategy, round robin moving on at full load; ClusterClient.replaceServers, and
// how decide() skips a server that rejected for overload (briefly, channel kept) or timed out (retryDownMs, closed).
import test from 'ava'
import crypto from 'node:crypto'
import { identityFromKey } from '../../lib/crypto/identity'
import { ClusterClient, type ServerState } from '../../lib/pem-fs/client'
import { ERRORS, PemError } from '../../lib/wire/errors'
import { agedLoad, createSelector, OVERLOAD_BACKOFF_MS, projectedLoad, UNKNOWN_LOAD, type SelectionName, type ServerView } from '../../lib/pem-fs/selection'
import { seededRandom } from '../../lib/server/cluster/transport-mock'

const NOW = 1_000_000

/** A table row: `load` reported `ageMs` ago (null: never heard from). */
function server (id: string, load: number | null, o: Partial<ServerView> & { ageMs?: number } = {}): ServerView {
  return { entry: { id }, state: 'up', downUntil: 0, load: load === null ? null : { total: load }, loadAt: load === null ? 0 : NOW - (o.ageMs ?? 0), weight: 50, latencyMs: 1, inflight: 0, preference: 0, ...o }
}

const first = (name: SelectionName, table: ServerView[], seed = 1, now = NOW): string => createSelector(name, { random: seededRandom(seed) }).order(table, now)[0]?.entry.id

/** How often each server is asked first over `n` choices of one selector (the table does not change). */
function counts (name: SelectionName, table: ServerView[], n: number, seed = 1): Record<string, number> {
  const sel = createSelector(name, { random: seededRandom(seed) })
  const out: Record<string, number> = {}
  for (let i = 0; i < n; i++) { const id = sel.order(table, NOW + i)[0].entry.id; out[id] = (out[id] ?? 0) + 1 }
  return out
}

// ---- aging and projection ----

test('a fresh load counts as reported; an old one decays toward unknown; none at all is unknown', t => {
  t.is(agedLoad(server('a', 0.9), NOW), 0.9)
  t.is(agedLoad(server('a', 0.9, { ageMs: 900 }), NOW), 0.9)
  const mid = agedLoad(server('a', 0.9, { ageMs: 3000 }), NOW)
  t.true(mid < 0.9 && mid > UNKNOWN_LOAD, `${mid}`)
  t.true(Math.abs(agedLoad(server('a', 0.9, { ageMs: 60_000 }), NOW) - UNKNOWN_LOAD) < 1e-6)
  t.true(Math.abs(agedLoad(server('a', 0.1, { ageMs: 60_000 }), NOW) - UNKNOWN_LOAD) < 1e-6, 'an idle report decays up to unknown too')
  t.is(agedLoad(server('a', null), NOW), UNKNOWN_LOAD)
})

test("the projection adds this host's own requests in flight", t => {
  t.true(projectedLoad(server('a', 0.3, { inflight: 10 }), NOW) > projectedLoad(server('a', 0.3), NOW))
})

// ---- least load ----

test('least-load asks the least projected load first, counting requests in flight and aging', t => {
  t.is(first('least-load', [server('a', 0.6), server('b', 0.2), server('c', 0.4)]), 'b')
  t.deepEqual(createSelector('least-load').order([server('a', 0.6), server('b', 0.2), server('c', 0.4)], NOW).map(s => s.entry.id), ['b', 'c', 'a'])
  t.is(first('least-load', [server('a', 0.3), server('b', 0.2, { inflight: 20 })]), 'a', 'its own in-flight requests make b the busier')
  t.is(first('least-load', [server('a', 0.3), server('b', 0.1, { ageMs: 60_000 })]), 'a', "b's idle report is a minute old: unknown")
  t.is(first('least-load', [server('a', 0.8), server('b', 0.95, { ageMs: 60_000 })]), 'b', "b's full report is a minute old: unknown")
})

test('least-load herds: hosts with the same view all ask the same server', t => {
  const table = [server('a', 0.31), server('b', 0.3), server('c', 0.32)]
  t.deepEqual(counts('least-load', table, 200), { b: 200 })
})

// ---- round robin ----

test('round-robin keeps the current server while it is below full load, whatever the others report', t => {
  const table = [server('a', 0.5), server('b', 0.1), server('c', 0.1)]
  const sel = createSelector('round-robin', { random: () => 0 }) // starts at the first server
  for (let i = 0; i < 20; i++) t.is(sel.order(table, NOW)[0].entry.id, 'a')
})

test('round-robin moves to the next in order when the current reports full load, and stays there', t => {
  const table = [server('a', 0.5), server('b', 0.5), server('c', 0.1)]
  const sel = createSelector('round-robin', { random: () => 0 })
  t.is(sel.order(table, NOW)[0].entry.id, 'a')
  table[0].load = { total: 0.96 }
  t.is(sel.order(table, NOW)[0].entry.id, 'b', 'the next in order, not the least loaded (c)')
  table[0].load = { total: 0.1 }
  t.is(sel.order(table, NOW)[0].entry.id, 'b', 'a is not taken back when it drains')
  table[1].load = { total: 0.95 }
  t.is(sel.order(table, NOW)[0].entry.id, 'c')
  table[2].load = { total: 0.99 }
  t.is(sel.order(table, NOW)[0].entry.id, 'a', 'wraps around')
})

test('round-robin skips a server that is down and takes it again when its retry is due', t => {
  const table = [server('a', 0.2), server('b', 0.2)]
  const sel = createSelector('round-robin', { random: () => 0 })
  table[0].state = 'down'; table[0].downUntil = NOW + 5000
  t.is(sel.order(table, NOW)[0].entry.id, 'b')
  t.deepEqual(sel.order(table, NOW).map(s => s.entry.id), ['b'], 'a down server is not a candidate')
  table[1].state = 'down'; table[1].downUntil = NOW + 9000
  t.is(sel.order(table, NOW + 5000)[0].entry.id, 'a', 'a is due for its retry')
  t.deepEqual(sel.order(table, NOW + 1000), [], 'all down: no candidate')
})

test('round-robin: when every server reports full it still moves on, one at a time', t => {
  const table = [server('a', 0.97), server('b', 0.97), server('c', 0.97)]
  const sel = createSelector('round-robin', { random: () => 0 })
  t.deepEqual([0, 1, 2, 3].map(() => sel.order(table, NOW)[0].entry.id), ['a', 'b', 'c', 'a'])
})

test('round-robin: hosts start at different places in the list', t => {
  const table = [server('a', null), server('b', null), server('c', null), server('d', null)]
  const starts = new Set(Array.from({ length: 20 }, (_, seed) => first('round-robin', table, seed + 1)))
  t.true(starts.size >= 3, `starts: ${[...starts].join(',')}`)
})

// ---- default ----

test('default: a fresh host asks the best score: load, then latency, weight and preference', t => {
  for (let seed = 1; seed <= 20; seed++) {
    t.is(first('default', [server('a', 0.6), server('b', 0.2), server('c', 0.45)], seed), 'b', 'clearly least loaded')
    t.is(first('default', [server('a', 0.3, { latencyMs: 80 }), server('b', 0.35), server('c', 0.6)], seed), 'b', 'a is slow to answer')
    t.is(first('default', [server('a', 0.3, { weight: 90 }), server('b', 0.32, { weight: 1 }), server('c', 0.8)], seed) === 'c', false)
    t.is(first('default', [server('a', 0.3), server('b', 0.35, { preference: 1 }), server('c', 0.8)], seed) === 'c', false)
  }
  // A close second best is asked some of the time, a distant one never.
  t.deepEqual(Object.keys(counts('default', [server('a', 0.2), server('b', 0.6), server('c', 0.7)], 1)), ['a'])
  const close = new Set(Array.from({ length: 40 }, (_, seed) => first('default', [server('a', 0.3, { weight: 10 }), server('b', 0.3, { weight: 60 }), server('c', 0.9)], seed + 1)))
  t.deepEqual([...close].sort(), ['a', 'b'])
})

test('default: weight and preference tip the balance between equally loaded servers', t => {
  const pick = (table: ServerView[]): Record<string, number> => {
    const out: Record<string, number> = {}
    for (let seed = 1; seed <= 200; seed++) { const id = first('default', table, seed); out[id] = (out[id] ?? 0) + 1 }
    return out
  }
  const byWeight = pick([server('a', 0.4, { weight: 80 }), server('b', 0.4, { weight: 10 })])
  t.true(byWeight.b > (byWeight.a ?? 0), JSON.stringify(byWeight))
  const byPreference = pick([server('a', 0.4), server('b', 0.4, { preference: 1 })])
  t.true(byPreference.b > (byPreference.a ?? 0), JSON.stringify(byPreference))
})

test('default: no herding — hosts with the same view do not all pick the same server', t => {
  const table = (): ServerView[] => [server('a', 0.41), server('b', 0.4), server('c', 0.42), server('d', 0.7)]
  const hosts = Array.from({ length: 40 }, (_, h) => createSelector('default', { random: seededRandom(100 + h) }))
  const picks = hosts.map(sel => sel.order(table(), NOW)[0].entry.id)
  const n = (id: string): number => picks.filter(p => p === id).length
  t.true(n('a') > 0 && n('b') > 0, picks.join(''))
  t.true(Math.max(n('a'), n('b')) < 36, 'no server gets (nearly) all the hosts')
  t.is(n('d'), 0, 'a clearly worse server is not picked')
})

test('default: a host stays on its server while it is near the best, and moves at once when it reports full', t => {
  const table = [server('a', 0.3), server('b', 0.7), server('c', 0.75)]
  const sel = createSelector('default', { random: seededRandom(3) })
  t.is(sel.order(table, NOW)[0].entry.id, 'a')
  table[0].load = { total: 0.5 }; table[1].load = { total: 0.47 } // b a little better now: stay
  for (let i = 0; i < 200; i++) t.is(sel.order(table, NOW)[0].entry.id, 'a')
  table[0].load = { total: 0.96 }
  t.is(sel.order(table, NOW)[0].entry.id, 'b')
  table[0].state = 'down'; table[0].downUntil = NOW + 5000
  table[0].load = { total: 0.1 }
  t.is(sel.order(table, NOW)[0].entry.id, 'b', 'a is down')
})

test('default: off a clearly worse server, a host moves some of the time, not on every request', t => {
  const table = [server('a', 0.2), server('b', 0.8)]
  const moved: number[] = []
  for (let h = 0; h < 40; h++) {
    const sel = createSelector('default', { random: seededRandom(500 + h) })
    sel.order(table, NOW) // on a
    table[0].load = { total: 0.8 }; table[1].load = { total: 0.2 } // now a is clearly worse
    let i = 0
    while (i < 1000 && sel.order(table, NOW)[0].entry.id === 'a') i++
    moved.push(i)
    table[0].load = { total: 0.2 }; table[1].load = { total: 0.8 }
  }
  t.true(moved.every(i => i < 1000), 'every host moved in the end')
  t.true(moved.filter(i => i === 0).length < 10, `most hosts did not move on the first request: ${moved.join(',')}`)
})

// ---- every strategy ----

for (const name of ['default', 'round-robin', 'least-load'] as const) {
  test(`${name}: a server with weight > 90 is asked only when no other is usable`, t => {
    const table = [server('heavy', 0.0, { weight: 95 }), server('b', 0.8), server('c', 0.85)]
    for (let seed = 1; seed <= 20; seed++) t.not(first(name, table, seed), 'heavy')
    table[1].state = 'down'; table[1].downUntil = NOW + 1000
    table[2].state = 'down'; table[2].downUntil = NOW + 1000
    t.is(first(name, table), 'heavy')
  })

  test(`${name}: no usable server gives no candidate (the client then fails cleanly)`, t => {
    t.deepEqual(createSelector(name).order([server('a', 0.1, { state: 'down', downUntil: NOW + 1 })], NOW), [])
    t.deepEqual(createSelector(name).order([], NOW), [])
  })
}

// ---- ClusterClient.replaceServers ----

/** A fixed Ed25519 identity (PKCS#8 prefix + seed); the client connects only when asked to decide. */
function fakeIdentity (): ReturnType<typeof identityFromKey> {
  const der = Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), Buffer.alloc(32, 7)])
  return identityFromKey(crypto.createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }))
}

function fakeClient (ids: string[]): ClusterClient {
  return new ClusterClient(fakeIdentity(), ids.map(id => ({ id, key: `k-${id}`, addr: '127.0.0.1:9', name: `n-${id}` })))
}

function fakeChannel (): { closed: boolean, close: () => void } {
  const ch = { closed: false, close: () => { ch.closed = true } }
  return ch
}

test('replaceServers keeps the state of servers whose id stays, closes the channels of removed ones', t => {
  const c = fakeClient(['a', 'b', 'c'])
  const held = c.servers
  const chA = fakeChannel(); const chB = fakeChannel()
  const a = c.servers[0]; const b = c.servers[1]
  Object.assign(a, { channel: chA, load: { total: 0.4, cpu: 0.4, nic: 0, crypto: 0 }, loadAt: 5, latencyMs: 3, requests: 7, rejections: 2, inflight: 1 })
  b.channel = chB as unknown as ServerState['channel']
  a.channel = chA as unknown as ServerState['channel']
  c.replaceServers([{ id: 'd', key: 'k-d', addr: '127.0.0.1:10', name: 'n-d' }, { id: 'a', key: 'k-a', addr: '127.0.0.1:11', name: 'renamed' }])
  t.is(held, c.servers, 'the same array, changed in place')
  t.deepEqual(c.servers.map(s => s.entry.id), ['d', 'a'])
  t.is(c.servers[1], a, "a's state object is kept")
  t.is(a.entry.addr, '127.0.0.1:11', 'with the new entry')
  t.is(a.entry.name, 'renamed')
  t.like(a, { loadAt: 5, latencyMs: 3, requests: 7, rejections: 2, inflight: 1 })
  t.false(chA.closed, "a's channel stays open")
  t.true(chB.closed, "b's channel is closed")
  t.like(c.servers[0], { state: 'up', load: null, requests: 0, inflight: 0, channel: null })
  c.close()
})

test('the client takes its selection from the options; unknown names are refused', t => {
  t.is(fakeClient(['a']).selection, 'default')
  t.is(new ClusterClient(fakeIdentity(), [], { selection: 'round-robin' }).selection, 'round-robin')
  t.throws(() => new ClusterClient(fakeIdentity(), [], { selection: 'fastest' as SelectionName }), { message: /unknown server selection/ })
})

test('all servers unreachable: decide fails with PEM_ERR_UNREACHABLE within bounded time', async t => {
  const c = new ClusterClient(fakeIdentity(), [{ id: 'a'.repeat(64), key: 'x', addr: '127.0.0.1:1', name: 'a' }, { id: 'b'.repeat(64), key: 'x', addr: '127.0.0.1:2', name: 'b' }], { timeoutMs: 500 })
  const t0 = Date.now()
  const err = await t.throwsAsync(c.decide({ guard: '/g', path: '/x', action: 'read', attrs: {} as never }))
  t.is((err as { code?: string }).code, 'PEM_ERR_UNREACHABLE')
  t.true(Date.now() - t0 < 3000)
  t.true(c.servers.every(s => s.state === 'down' && s.inflight === 0))
  c.close()
})

// ---- ClusterClient.decide: overload is not death ----

/** A channel whose every request gets `answer()` (a reply, or a thrown error). */
function answering (answer: () => unknown): { closed: boolean, close: () => void, request: () => Promise<unknown> } {
  const ch = { closed: false, close: () => { ch.closed = true }, request: async () => answer() }
  return ch
}

const REPLY = { rule: null, load: { total: 0.3, cpu: 0.3, nic: 0, crypto: 0 }, weight: 50, pv: 0, bypass: true, ttl: 0, key: null, compression: 'none', grant: null }

test('an overload rejection skips the server for overloadBackoffMs and keeps its channel; a timeout skips it for retryDownMs and closes it', async t => {
  const c = new ClusterClient(fakeIdentity(), ['a', 'b', 'c'].map(id => ({ id, key: `k-${id}`, addr: '127.0.0.1:9', name: `n-${id}` })),
    { selection: 'round-robin', random: () => 0, retryDownMs: 5000 }) // round robin from the first: asks a, then b, then c
  const [a, b, cc] = c.servers
  const chA = answering(() => ({ ...REPLY, ok: false, reason: ERRORS.PEM_ERR_OVERLOAD.id, load: { total: 1, cpu: 1, nic: 0, crypto: 0 } }))
  const chB = answering(() => { throw new PemError('PEM_ERR_TIMEOUT') })
  const chC = answering(() => ({ ...REPLY, ok: true, reason: 0 }))
  a.channel = chA as unknown as ServerState['channel']
  b.channel = chB as unknown as ServerState['channel']
  cc.channel = chC as unknown as ServerState['channel']
  const t0 = Date.now()
  const d = await c.decide({ guard: '/g', path: '/x', action: 'read', attrs: {} as never })
  t.is(d.server, 'c')
  t.like(a, { state: 'down', rejections: 1 })
  t.true(a.downUntil >= t0 + OVERLOAD_BACKOFF_MS && a.downUntil <= Date.now() + OVERLOAD_BACKOFF_MS, 'overload: skipped for the backoff')
  t.false(chA.closed, 'overload: its channel is kept')
  t.is(a.channel, chA as unknown as ServerState['channel'])
  t.like(b, { state: 'down', rejections: 1, channel: null })
  t.true(b.downUntil >= t0 + 5000, 'timeout: skipped for retryDownMs')
  t.true(chB.closed, 'timeout: its channel is closed')
  c.close()
})

test('overloadBackoffMs is an option', async t => {
  const c = new ClusterClient(fakeIdentity(), [{ id: 'a', key: 'k-a', addr: '127.0.0.1:9', name: 'n-a' }], { overloadBackoffMs: 40 })
  const a = c.servers[0]
  let calls = 0
  a.channel = answering(() => (calls++ === 0 ? { ...REPLY, ok: false, reason: ERRORS.PEM_ERR_OVERLOAD.id } : { ...REPLY, ok: true, reason: 0 })) as unknown as ServerState['channel']
  const err = await t.throwsAsync(c.decide({ guard: '/g', path: '/x', action: 'read', attrs: {} as never }))
  t.is((err as { code?: string }).code, 'PEM_ERR_OVERLOAD', 'its only server is skipped: the overload is reported')
  await new Promise(resolve => setTimeout(resolve, 60))
  t.true((await c.decide({ guard: '/g', path: '/x', action: 'read', attrs: {} as never })).ok, 'asked again after the backoff')
  t.is(calls, 2)
  c.close()
})
