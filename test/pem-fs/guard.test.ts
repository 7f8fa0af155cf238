// The decision cache of lib/pem-fs/guard.ts against a stand-in client (unit test of one module; the real cluster is
// in mount.test.ts): a scope covers the paths under it and nothing else, a name never reads as a scope, a new policy
// version or a fresh request asks again.
import test from 'ava'
import type { ClusterClient, Decision } from '../../lib/pem-fs/client'
import { Guard } from '../../lib/pem-fs/guard'
import type { DecideBody } from '../../lib/wire/packets'

const LOAD = { total: 0, cpu: 0, nic: 0, crypto: 0 }
const caller = { uid: 1000, gid: 1000, pid: 0 }

/** A guard over a client that answers every decide() with `reply(path)` and records what it was asked. */
function standIn (reply: (path: string) => Partial<Decision>): { g: Guard, client: ClusterClient, asked: string[] } {
  const asked: string[] = []
  const client = {
    pv: 7,
    servers: [],
    down: new Set<string>(),
    isUp (id: string): boolean { return !client.down.has(id) },
    async decide (req: Omit<DecideBody, 'pv'>): Promise<Decision> {
      asked.push(req.path)
      return { ok: true, reason: 0, rule: 'r', load: LOAD, weight: 10, pv: client.pv, bypass: true, ttl: 60_000, key: null, compression: 'none', grant: null, scope: null, server: 's1', placement: 'appliance', ...reply(req.path) }
    }
  }
  return { g: new Guard(client as unknown as ClusterClient, '/g'), client: client as unknown as ClusterClient, asked }
}

test('a scope covers every path under it, once per action', async t => {
  const { g, asked } = standIn(p => ({ scope: p.startsWith('/dir/') ? '/dir' : null }))
  for (const p of ['/dir/a', '/dir/b', '/dir/sub/c']) await g.allow(caller, p, 'getattr')
  t.deepEqual(asked, ['/dir/a'])
  await g.allow(caller, '/dir/a', 'delete')
  await g.allow(caller, '/other', 'getattr')
  await g.allow(caller, '/dir', 'getattr')
  t.deepEqual(asked, ['/dir/a', '/dir/a', '/other', '/dir'], 'another action, a path beside it and the directory itself ask')
})

test('a decision with a key grant is cached for its own path only (a grant serves one file)', async t => {
  const { g, asked } = standIn(p => ({ scope: '/dir', bypass: false, key: 'k', grant: `g${p}` }))
  t.is((await g.allow(caller, '/dir/a', 'write')).grant, 'g/dir/a')
  t.is((await g.allow(caller, '/dir/a', 'write')).grant, 'g/dir/a')
  t.is((await g.allow(caller, '/dir/b', 'write')).grant, 'g/dir/b')
  t.deepEqual(asked, ['/dir/a', '/dir/b'])
})

test('a file named * is decided for itself, never read as its directory\'s scope', async t => {
  const { g, asked } = standIn(p => p === '/dir/*' ? { ok: true, rule: 'star' } : { ok: false, rule: 'deny', reason: 40 })
  t.is((await g.allow(caller, '/dir/*', 'read')).rule, 'star')
  await t.throwsAsync(g.allow(caller, '/dir/x', 'read'), { code: 'PEM_ERR_POLICY_DENY' })
  t.deepEqual(asked, ['/dir/*', '/dir/x'])
})

test('a scope that is not an ancestor of the path asked about is not taken', async t => {
  const { g, asked } = standIn(() => ({ scope: '/elsewhere' }))
  await g.allow(caller, '/dir/a', 'read')
  await g.allow(caller, '/elsewhere/b', 'read')
  t.deepEqual(asked, ['/dir/a', '/elsewhere/b'])
})

test('a new policy version and a fresh request ask again', async t => {
  const { g, client, asked } = standIn(() => ({ scope: '' }))
  await g.allow(caller, '/a', 'read')
  await g.allow(caller, '/b/c', 'read')
  t.deepEqual(asked, ['/a'], 'the root scope covers the whole guard point')
  ;(client as { pv: number }).pv = 8
  await g.allow(caller, '/b/c', 'read')
  await g.allow(caller, '/d', 'read')
  t.deepEqual(asked, ['/a', '/b/c'], 'asked once under version 8, then served from the cache')
  await g.allow(caller, '/d', 'read', undefined, true)
  t.deepEqual(asked, ['/a', '/b/c', '/d'], 'fresh: asked although cached')
})

test('a decision cached from a server the client has since marked down is not used: the next request asks again', async t => {
  const { g, client, asked } = standIn(() => ({ scope: '' }))
  await g.allow(caller, '/a', 'read')
  await g.allow(caller, '/b', 'read')
  t.deepEqual(asked, ['/a'])
  ;(client as unknown as { down: Set<string> }).down.add('s1')
  await g.allow(caller, '/b', 'read')
  t.deepEqual(asked, ['/a', '/b'], 'its server s1 is down: asked again')
})
