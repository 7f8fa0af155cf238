// Cluster convergence over the in-memory transport (virtual time): intervals from an admin change to installed on all
// members, heartbeat CPU and bytes per member per second, and the part of that CPU no engine change can remove (one
// Ed25519 verify per peer per interval, timed alone), for N members (NODES=3,5,10 LOSS=0.05 override).
// Real spd processes are not wired to the cluster core yet (docs/CLUSTER.md), so this measures the protocol engine.
import crypto from 'node:crypto'
import { verifyClusterMsg } from '../../lib/crypto/cluster-auth'
import { encodePublicKey, identityFromKey, type Identity } from '../../lib/crypto/identity'
import { ClusterNode } from '../../lib/server/cluster/node'
import { MemoryHwmStore } from '../../lib/server/cluster/sequence'
import { MockNetwork } from '../../lib/server/cluster/transport-mock'
import { emptyState, type ConfigState } from '../../lib/server/state'
import { ClusterMsgType, splitClusterMsg } from '../../lib/wire/cluster-msg'
import { median, type BenchContext } from '../harness'

const INTERVAL = 1000

function identity (i: number): Identity {
  const seed = crypto.createHash('sha256').update(`bench identity ${i}`).digest()
  return identityFromKey(crypto.createPrivateKey({ key: Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), seed]), format: 'der', type: 'pkcs8' }))
}

/** N members that already share one installed configuration (as after sponsorship), ticking at random phases. */
function cluster (n: number, loss: number): { net: MockNetwork, nodes: ClusterNode[], ids: Identity[], clusterId: Buffer } {
  const ids = Array.from({ length: n }, (_, i) => identity(i))
  const members: ConfigState['members'] = {}
  ids.forEach((id, i) => { members[id.id] = { id: id.id, key: encodePublicKey(id.publicKey), name: `m${i}`, addr: `m${i}`, clusterAddr: `m${i}`, state: 'active' } })
  const state: ConfigState = { ...emptyState(), version: 1, changedAt: new Date(0).toISOString(), members }
  const net = new MockNetwork(n, { drop: loss, delayMs: 1, jitterMs: 2 })
  const clusterId = crypto.createHash('sha256').update('bench').digest()
  const nodes = ids.map((identity, i) => {
    const node = new ClusterNode({ clusterId, identity, addr: `m${i}`, transport: net.transport(`m${i}`), clock: net.clock, epoch: 1, hwm: new MemoryHwmStore(), installed: state, intervalMs: INTERVAL, commit: () => {} })
    net.attach(`m${i}`, p => node.receive(p))
    const loop = (): void => { node.tick(); net.clock.at(net.clock.now() + INTERVAL, loop) }
    net.clock.at(Math.floor(net.random() * INTERVAL), loop)
    return node
  })
  return { net, nodes, ids, clusterId }
}

/** CPU µs of one signature check of a steady-state heartbeat, timed alone (median of 5 runs of 500). */
function verifyMicros (net: MockNetwork, ids: Identity[], clusterId: Buffer): number {
  const p = [...net.sent].reverse().find(x => x.kind === 'msg' && x.from === 'm0' && splitClusterMsg(x.bytes).header.type === ClusterMsgType.Heartbeat)
  if (p === undefined) return NaN
  const raw = splitClusterMsg(p.bytes)
  const runs: number[] = []
  for (let r = 0; r < 5; r++) {
    const c0 = process.cpuUsage()
    for (let i = 0; i < 500; i++) if (!verifyClusterMsg(clusterId, raw, ids[0].publicKey)) throw new Error('steady heartbeat does not verify')
    const c = process.cpuUsage(c0)
    runs.push((c.user + c.system) / 500)
  }
  return median(runs)
}

export async function run (ctx: BenchContext): Promise<void> {
  const sizes = (process.env.NODES ?? (ctx.quick ? '3,5' : '3,5,10,50,100')).split(',').map(Number)
  const loss = Number(process.env.LOSS ?? 0)
  for (const n of sizes) {
    const { net, nodes, ids, clusterId } = cluster(n, loss)
    net.clock.runFor(3 * INTERVAL) // everyone has heard everyone
    // Steady state: heartbeat CPU and bytes.
    const steadyMs = ctx.quick ? 2000 : 5000
    const bytes0 = net.sent.reduce((a, p) => a + p.bytes.length, 0)
    const cpu0 = process.cpuUsage()
    net.clock.runFor(steadyMs)
    const cpu = process.cpuUsage(cpu0)
    const bytes = net.sent.reduce((a, p) => a + p.bytes.length, 0) - bytes0
    const cpuPct = ((cpu.user + cpu.system) / 1000) / (steadyMs * n) * 100 // ms of CPU per ms of virtual time, per member
    ctx.report({ name: `heartbeat CPU per member, ${n} members`, value: Math.round(cpuPct * 1000) / 1000, unit: '% of a core', baseline: 'target (issue 5)', baseline_value: 1 })
    ctx.report({ name: `heartbeat bytes per member per second, ${n} members`, value: Math.round(bytes / n / (steadyMs / 1000)), unit: 'B/s', baseline: null, baseline_value: null })
    const floor = (n - 1) * verifyMicros(net, ids, clusterId) / 1e6 * 100 * (1000 / INTERVAL) // (n - 1) verifies per interval
    ctx.report({ name: `of which Ed25519 verify (floor), ${n} members`, value: Math.round(floor * 1000) / 1000, unit: '% of a core', baseline: 'target (issue 5)', baseline_value: 1 })
    // A change on member 0: virtual time until all members installed it.
    const target = nodes[0].installed.version + 1
    const start = net.clock.now()
    nodes[0].propose('bench', d => { d.policyText = `bench ${n}` })
    const wall0 = process.hrtime.bigint()
    while (!nodes.every(x => x.installed.version >= target) && net.clock.now() - start < 60 * INTERVAL) net.clock.runFor(50)
    const wallMs = Number(process.hrtime.bigint() - wall0) / 1e6
    const intervals = (net.clock.now() - start) / INTERVAL
    const budget = n <= 10 ? 3 : 5
    ctx.report({ name: `change installed on all, ${n} members${loss > 0 ? `, loss ${loss}` : ''}`, value: Math.round(intervals * 100) / 100, unit: 'intervals', baseline: 'target (issue 5)', baseline_value: budget })
    ctx.log(`${n} members: install took ${intervals.toFixed(2)} intervals of virtual time, ${wallMs.toFixed(0)} ms of CPU time to simulate`)
  }
}
