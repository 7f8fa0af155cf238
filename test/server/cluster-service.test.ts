// The cluster service of a running member (lib/server/cluster/service.ts) without sockets (issue 15 findings 6 and 8):
// a throw inside a tick is logged and counted while the interval carries on; liveness and the staleness fence do not
// move when the wall clock steps; a replay mark is durable before the message is acted on; grants ignore clock steps.
import test from 'ava'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import pino from 'pino'
import { ClusterNode } from '../../lib/server/cluster/node'
import { ReplayGuard, MemoryHwmStore } from '../../lib/server/cluster/sequence'
import { ClusterService } from '../../lib/server/cluster/service'
import { ClusterStateFile } from '../../lib/server/cluster/state-file'
import type { Packet } from '../../lib/server/cluster/transport'
import { GrantTable } from '../../lib/server/grants'
import { emptyState, type ConfigState } from '../../lib/server/state'
import type { ConfigStore } from '../../lib/server/store'
import { pack } from '../../lib/wire/frame'
import { identityNo, memberRecord } from '../helpers/cluster-sim'

const CLUSTER = Buffer.alloc(32, 3)
const [A, B, C] = [identityNo(0), identityNo(1), identityNo(2)]
const addrs = ['10.0.0.1:7400', '10.0.0.2:7400', '10.0.0.3:7400']

function config (): ConfigState {
  const members: ConfigState['members'] = {}
  ;[A, B, C].forEach((m, i) => { members[m.id] = memberRecord(m, `m${i}`, addrs[i]) })
  return { ...emptyState(), version: 3, clusterId: CLUSTER.toString('hex'), changedAt: new Date(0).toISOString(), members }
}

/** Member A's service on a fake store, no listener; `logged` collects error lines. */
function serviceOfA (intervalMs = 20): { service: ClusterService, logged: string[], dir: string } {
  const state = config()
  const store = { state, plaintext: pack(state), install: () => {} } as unknown as ConfigStore
  const logged: string[] = []
  const log = pino({ level: 'error' }, { write: (line: string) => { logged.push(line) } })
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pem-cluster-service-'))
  const service = new ClusterService({
    dataDir: dir, identity: A, store, listen: null, log, onSecurity: () => {}, check: () => {}, installed: () => {},
    config: { intervalMs, activeWindowMs: 3.5 * intervalMs, maxStalenessMs: 60_000, changeTimeoutMs: 1000 } as never
  })
  return { service, logged, dir }
}

/** One heartbeat of member B (its own engine, same configuration) addressed to A. */
function heartbeatOfB (): Packet {
  const sent: Packet[] = []
  const state = config()
  const b = new ClusterNode({ clusterId: CLUSTER, identity: B, addr: addrs[1], transport: { send: p => sent.push(p) }, clock: { now: () => 0 }, epoch: 1, hwm: new MemoryHwmStore(), installed: state, commit: () => {} })
  b.broadcast()
  const toA = sent.find(p => p.to === addrs[0])
  if (toA === undefined) throw new Error('B sent nothing to A')
  return toA
}

/** Run `f` with Date.now stepped by `stepMs`. */
function withClockStep<T> (stepMs: number, f: () => T): T {
  const real = Date.now
  Date.now = () => real() + stepMs
  try { return f() } finally { Date.now = real }
}

test('a throw inside tick() is logged and counted; the interval keeps ticking and spd keeps running', async t => {
  const { service, logged } = serviceOfA()
  let calls = 0
  service.node.tick = () => { calls++; throw new RangeError('sequence counter exhausted: restart with a new epoch') }
  await service.start()
  const deadline = Date.now() + 10_000
  while (service.tickFailures < 3 && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 20))
  await service.stop()
  t.true(service.tickFailures >= 3, `${service.tickFailures} failures counted`)
  t.is(calls, service.tickFailures)
  t.true(logged.some(l => l.includes('cluster tick failed') && l.includes('sequence counter exhausted')))
  t.is(service.status().tickFailures, service.tickFailures)
})

test('liveness and the staleness fence do not move when the wall clock steps an hour', t => {
  const { service } = serviceOfA()
  service.node.receive(heartbeatOfB())
  t.true(service.canServe(), 'A hears B: a majority of three')
  const heard = (): string | undefined => service.status().members.find(m => m.id === B.id)?.state
  t.is(heard(), 'active')
  t.true(withClockStep(3_600_000, () => service.canServe()), 'an hour forward: B was heard milliseconds ago, still')
  t.is(withClockStep(3_600_000, heard), 'active')
  t.true(withClockStep(-3_600_000, () => service.canServe()))
})

test('a raised replay mark is durable before the message is acted on: a SIGKILL right after reopens no window', t => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pem-cluster-marks-'))
  const before = new ReplayGuard(ClusterStateFile.open(dir))
  before.accept('peer', { epoch: 4, counter: 17 }) // no flush: the process dies here
  const after = new ReplayGuard(ClusterStateFile.open(dir))
  t.is(after.check('peer', { epoch: 4, counter: 17 }), 'duplicate')
  t.is(after.check('peer', { epoch: 4, counter: 18 }), 'fresh')
})

test('a grant expires on the monotonic clock: a wall-clock step neither ends nor extends it', t => {
  const grants = new GrantTable()
  const id = grants.issue('host', 'finance', 'none', 'read', 60_000)
  t.notThrows(() => withClockStep(3_600_000, () => grants.check(id, 'host', 'finance', false)))
  const short = grants.issue('host', 'finance', 'none', 'read', -2000 - 1) // already past its ttl and slack
  t.throws(() => withClockStep(-3_600_000, () => grants.check(short, 'host', 'finance', false)), { code: 'PEM_ERR_KEY_NOT_GRANTED' })
})

test('CHECKLIST G32: with the wall clock stepped back an hour a captured heartbeat is still a replay, and the next one is fresh', t => {
  const { service } = serviceOfA()
  const sent: Packet[] = []
  const b = new ClusterNode({ clusterId: CLUSTER, identity: B, addr: addrs[1], transport: { send: p => sent.push(p) }, clock: { now: () => 0 }, epoch: 1, hwm: new MemoryHwmStore(), installed: config(), commit: () => {} })
  const next = (): Packet => { sent.length = 0; b.broadcast(); const p = sent.find(x => x.to === addrs[0]); if (p === undefined) throw new Error('B sent nothing to A'); return p }
  const first = next()
  service.node.receive(first)
  const replays = (): number => service.node.rejections.PEM_ERR_REPLAY ?? 0
  const before = replays()
  withClockStep(-3_600_000, () => service.node.receive(first))
  t.is(replays(), before + 1, 'the replay is refused after the step back')
  withClockStep(-3_600_000, () => service.node.receive(next()))
  t.is(replays(), before + 1, 'the next heartbeat is fresh')
  t.is(service.status().members.find(m => m.id === B.id)?.state, 'active')
})
