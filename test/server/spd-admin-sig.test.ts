// Issue 15 with real spd processes: member-list changes carry the admin's own signature (a compromised member that
// names the admin and signs for it with its own key adds nobody), and the cluster listener limits connections per
// source before any TLS work (a flood of held and new connections is refused and counted while the cluster carries on).
import test from 'ava'
import https from 'node:https'
import net from 'node:net'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { SIG_CTX_ADMIN_MEMBER_CHANGE } from '../../lib/crypto/contexts'
import { encodePublicKey, generateIdentity, loadIdentity } from '../../lib/crypto/identity'
import { sign } from '../../lib/crypto/sign'
import { adminRecordInput } from '../../lib/crypto/admin-key'
import { signAsOrigin } from '../../lib/server/cluster/changes'
import { ChannelTransport } from '../../lib/server/cluster/channel-transport'
import { ClusterNode } from '../../lib/server/cluster/node'
import { MemoryHwmStore } from '../../lib/server/cluster/sequence'
import { ClusterStateFile } from '../../lib/server/cluster/state-file'
import { IDENTITY_FILE } from '../../lib/server/member'
import type { ConfigState } from '../../lib/server/state'
import { ConfigStore, storeKeyFrom } from '../../lib/server/store'
import { pack, unpack } from '../../lib/wire/frame'
import { allInstalled, clusterStatus, installedVersion, startCluster, until, type Member } from '../../scripts/cluster'
import { startSpd, stopAll, stopSpd, tempDir, writeFile } from '../../scripts/procs'

// Small limits so that bounded floods cross them; members reach each other from 127.0.0.1, the floods come from others.
const CONNECTIONS = { perSource: 8, ratePerS: 1, burst: 20, pending: 64 }
const FAST = { load: { threshold: 1 }, cluster: { intervalMs: 200, maxStalenessMs: 3000 }, connections: CONNECTIONS }

let ms: Member[]
// Two members are enough: before issue 15's fix, B locked and installed what A advertised (A and B are the majority).
test.before(async () => { ms = await startCluster(2, 'as', FAST) })
test.after.always(() => { stopAll() })

function storedConfig (m: Member): { state: ConfigState, plaintext: Buffer } {
  const store = ConfigStore.open(m.dir, storeKeyFrom(loadIdentity(path.join(m.dir, IDENTITY_FILE)).signKey))
  return { state: store.state as ConfigState, plaintext: store.plaintext }
}

async function clusterRefusals (m: Member): Promise<Record<string, number>> {
  const [host, port] = m.admin.split(':')
  const text = await new Promise<string>((resolve, reject) => {
    https.get({ host, port: Number(port), path: '/metrics', rejectUnauthorized: false, agent: false }, res => {
      let s = ''
      res.on('data', (c: Buffer) => { s += c.toString('utf8') })
      res.on('end', () => resolve(s))
    }).on('error', reject)
  })
  const out: Record<string, number> = {}
  for (const x of text.matchAll(/^spd_cluster_refused_connections_total\{reason="([a-z-]+)"\} (\d+)$/gm)) out[x[1]] = Number(x[2])
  return out
}

test.serial('a compromised member naming the admin and signing the record with its own key adds nobody', async t => {
  const [a, b] = ms
  const v = (await installedVersion(b)) ?? 0
  const refusedBefore = (await clusterStatus(b)).rejections.PEM_ERR_BAD_SUCCESSION ?? 0
  await stopSpd(a, 'SIGKILL')
  const identity = loadIdentity(path.join(a.dir, IDENTITY_FILE))
  const { state, plaintext } = storedConfig(a)
  const clusterId = Buffer.from(state.clusterId ?? '', 'hex')
  // The honest joins were made through spctl sessions: their records carry the admin's signature.
  const joins = (state.clusterLog ?? []).filter(e => e.member?.op === 'add')
  t.is(joins.length, 1)
  t.true(joins.every(e => e.admin === 'admin' && typeof e.adminSig === 'string'))

  const rogue = generateIdentity()
  const forged = unpack(plaintext) as ConfigState
  forged.members[rogue.id] = { id: rogue.id, key: encodePublicKey(rogue.publicKey), name: 'rogue', addr: '', clusterAddr: '127.0.0.1:1', state: 'active' }
  forged.version = v + 1
  forged.changedBy = identity.id
  const adminSig = sign(SIG_CTX_ADMIN_MEMBER_CHANGE, adminRecordInput(clusterId, v + 1, 'add', rogue.id, identity.id), identity.signKey).toString('base64')
  forged.clusterLog = [...(forged.clusterLog ?? []), { version: v + 1, origin: identity.id, change: 'admin/member-add:rogue/forged', member: { op: 'add', id: rogue.id }, admin: 'admin', adminSig }]
  signAsOrigin(clusterId, forged, identity)

  // A's key speaks over the real transport, advertising the forged set as installed to B.
  const aRecord = state.members[identity.id]
  const bAddr = state.members[b.id].clusterAddr ?? b.cluster
  let node: ClusterNode | null = null
  const transport = new ChannelTransport({
    identity,
    listen: aRecord.clusterAddr ?? a.cluster,
    admits: id => id === b.id,
    idOf: addr => addr === bAddr ? b.id : undefined,
    receive: p => node?.receive(p),
    onRefused: () => {},
    retryMs: 200
  })
  await transport.start()
  node = new ClusterNode({
    clusterId,
    identity,
    addr: aRecord.clusterAddr ?? a.cluster,
    transport,
    clock: { now: () => performance.now() },
    epoch: ClusterStateFile.open(a.dir).epoch,
    hwm: new MemoryHwmStore(),
    installed: forged,
    installedPlaintext: pack(forged),
    intervalMs: 200,
    commit: () => {}
  })
  const ticker = setInterval(() => node?.tick(), 200)
  try {
    t.true(await until(async () => ((await clusterStatus(b)).rejections.PEM_ERR_BAD_SUCCESSION ?? 0) > refusedBefore, 10_000), 'B refused the forged set')
    await new Promise(resolve => setTimeout(resolve, 1500)) // more intervals of A advertising it
    const view = await clusterStatus(b)
    t.is(view.installed.version, v, 'B kept its version')
    t.is(view.pending, null, 'and holds nothing at the forged version')
    t.is(view.members.find(x => x.id === rogue.id), undefined, 'the rogue key is no member on B')
  } finally {
    clearInterval(ticker)
    node.stopped = true
    await transport.close()
  }
})

test.serial('the cluster listener refuses connections over the per-source limits before TLS, and the cluster carries on', async t => {
  const [a, b] = ms
  const [host, port] = b.cluster.split(':')
  const before = await clusterRefusals(b)
  const open = async (localAddress: string): Promise<{ sock: net.Socket, closed: Promise<void> }> => {
    const sock = net.connect({ host, port: Number(port), localAddress })
    sock.on('error', () => {})
    const closed = new Promise<void>(resolve => sock.on('close', () => resolve()))
    await new Promise<void>((resolve, reject) => { sock.once('connect', resolve); sock.once('error', reject) })
    return { sock, closed }
  }
  // 20 bare connections held from one source: 8 are admitted (they would wait for their handshake), 12 closed unread.
  const held = await Promise.all(Array.from({ length: 20 }, async () => await open('127.0.0.2')))
  t.teardown(() => { for (const h of held) h.sock.destroy() })
  let closed = 0
  for (const h of held) void h.closed.then(() => closed++)
  // A burst of 80 new connections from another source: its bucket holds 20 (+ 1 a second while spd works through them).
  const burstAt = Date.now()
  for (let i = 0; i < 80; i++) { const x = await open('127.0.0.3'); x.sock.destroy() }
  const burstMs = Date.now() - burstAt
  t.true(await until(async () => closed >= 12, 3000), `${closed} of the held connections closed`)
  let after: Record<string, number> = {}
  const grew = (reason: string): number => (after[reason] ?? 0) - (before[reason] ?? 0)
  await until(async () => { after = await clusterRefusals(b); return grew('source-rate') >= 30 }, 5000)
  t.log(`burst of 80 in ${burstMs} ms; refusals ${JSON.stringify(after)}`)
  t.true(grew('source-connections') >= 12, 'the held connections beyond perSource')
  t.true(grew('source-rate') >= 30, 'and the burst beyond its bucket')

  // The members still reach each other: A back, an honest change installs on both.
  for (const h of held) h.sock.destroy()
  await startSpd(a)
  const v = (await installedVersion(b)) ?? 0
  const work = tempDir('spd-admin-sig')
  const r = await b.spctl(['--json', 'policy', 'apply', writeFile(work, 'p.yaml', 'format: 1\nguards:\n  /srv/data:\n    rules:\n      - id: after-flood\n        resources: { dirs: [/public] }\n        effect: permit\n')])
  t.is(r.code, 0, r.stderr)
  await allInstalled([a, b], v + 1, 20_000)
})
