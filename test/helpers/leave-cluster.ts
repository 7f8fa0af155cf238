// Clean stops and crashes of real spd members on loopback (spd-leave*.test.ts): a cluster with a permitting policy
// and one enrolled host, a decision asked of one chosen member, a key created through the admin API, and a poll of a
// member's decisions while it comes back (each one it answers must carry at least a given version), and the two
// steps every case runs: a clean stop the others keep serving through, and the return.
import type { ExecutionContext } from 'ava'
import fs from 'node:fs'
import path from 'node:path'
import { attrsOf } from '../../lib/pem-fs/attrs'
import { ClusterClient } from '../../lib/pem-fs/client'
import { hostIdentity, readCluster } from '../../lib/pem-fs/host-config'
import type { Identity } from '../../lib/crypto/identity'
import type { ServerEntry } from '../../lib/wire/packets'
import { admin, allInstalled, clusterStatus, installedVersion, startCluster, until, type Member } from '../../scripts/cluster'
import { cli, startSpd, stopSpd, tempDir } from '../../scripts/procs'

/** 200 ms heartbeats; a member cut off from the majority refuses decisions after 2 s; a change waits 2.5 s at most. */
export const LEAVE_FAST = { load: { threshold: 1 }, cluster: { intervalMs: 200, maxStalenessMs: 2000, changeTimeoutMs: 2500 } }

export interface LeaveCluster { ms: Member[], host: Identity, servers: ServerEntry[] }

export async function leaveCluster (n: number, prefix: string): Promise<LeaveCluster> {
  const ms = await startCluster(n, prefix, LEAVE_FAST)
  const work = tempDir(`${prefix}-host`)
  const file = path.join(work, 'policy.yaml')
  fs.writeFileSync(file, 'format: 1\nguards:\n  /srv/data:\n    rules:\n      - id: open\n        resources: { dirs: [/public] }\n        effect: permit\n')
  const p = await ms[0].spctl(['policy', 'apply', file])
  if (p.code !== 0) throw new Error(p.stderr)
  const token = JSON.parse((await ms[0].spctl(['--json', 'host', 'add', 'h'])).stdout).token as string
  const e = await cli('pemfs', ['enroll', '--cluster', ms[0].listen, '--token', token, '--config-dir', work, '--name', 'h'])
  if (e.code !== 0) throw new Error(e.stderr)
  return { ms, host: hostIdentity(work), servers: readCluster(work).servers }
}

/** One decision asked of member `m` alone (a fresh one-server client: no fence from earlier answers): its version, or the refusal. */
export async function decideAt (c: LeaveCluster, m: Member): Promise<{ ok: true, pv: number } | { ok: false, error: string }> {
  const entry = c.servers.find(s => s.name === m.name)
  if (entry === undefined) throw new Error(`${m.name} is not in the host's server list`)
  const client = new ClusterClient(c.host, [entry], { timeoutMs: 1000, retryDownMs: 10 })
  try {
    const d = await client.decide({ guard: '/srv/data', path: '/public/a', action: 'read', attrs: attrsOf(process.pid, 1000, 1000) })
    return d.ok ? { ok: true, pv: d.pv } : { ok: false, error: `reason ${d.reason}` }
  } catch (err) {
    return { ok: false, error: (err as { code?: string }).code ?? (err as Error).message }
  } finally {
    for (const s of client.servers) s.channel?.close()
  }
}

/** `POST /v1/keys` on `m`: the version it installed as, or the error code. */
export async function createKey (m: Member, name: string): Promise<{ pv: number } | { code: string }> {
  try {
    return { pv: (await admin(m, 'POST', '/v1/keys', { name }) as { pv: number }).pv }
  } catch (err) {
    return { code: (err as { code?: string }).code ?? (err as Error).message }
  }
}

/**
 * Asks `m` for decisions every 50 ms until stopped; returns every version it answered with (`answered`: how many so
 * far). Started before `m` comes back, it shows whether `m` served anything before it had caught up.
 */
export function pollDecisions (c: LeaveCluster, m: Member): { answered: () => number, stop: () => Promise<number[]> } {
  const served: number[] = []
  let on = true
  const loop = (async () => {
    while (on) {
      const d = await decideAt(c, m)
      if (d.ok) served.push(d.pv)
      await new Promise(resolve => setTimeout(resolve, 50))
    }
  })()
  return { answered: () => served.length, stop: async () => { on = false; await loop; return served } }
}

const sleep = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms))

/**
 * SIGTERM `leaver`; then every member in `stay` lists it as departed and still serves decisions past the staleness
 * window, and an admin change on `stay[0]` installs on all of `stay`. Returns the version that change took.
 */
export async function cleanStop (t: ExecutionContext, c: LeaveCluster, leaver: Member, stay: Member[]): Promise<number> {
  const t0 = Date.now()
  t.is(await stopSpd(leaver, 'SIGTERM'), 0)
  t.log(`${leaver.name} stopped cleanly in ${Date.now() - t0} ms`)
  for (const m of stay) {
    const view = await clusterStatus(m)
    t.is(view.members.find(x => x.name === leaver.name)?.state, 'departed', `${m.name} lists ${leaver.name} as departed`)
    t.true(view.canServe, `${m.name} serves`)
  }
  await sleep(LEAVE_FAST.cluster.maxStalenessMs + 300) // past the window a vanished member would get
  for (const m of stay) t.deepEqual(await decideAt(c, m), { ok: true, pv: (await installedVersion(m)) ?? -1 }, `${m.name} decides`)
  const t1 = Date.now()
  const key = await createKey(stay[0], `while-${leaver.name}-away`)
  if (!('pv' in key)) { t.fail(`key create on ${stay[0].name}: ${key.code}`); return -1 }
  t.log(`admin change installed on ${stay[0].name} ${Date.now() - t1} ms after the request`)
  await allInstalled(stay, key.pv)
  return key.pv
}

/**
 * Start the departed `back` again: none answers a decision with a version below `after` + 1 (each is counted again
 * only by its own return change, installed after `after`), all members end on one digest, and each decides again.
 */
export async function comeBack (t: ExecutionContext, c: LeaveCluster, back: Member[], after: number): Promise<void> {
  const polls = back.map(m => pollDecisions(c, m))
  for (const m of back) await startSpd(m)
  await allInstalled(c.ms, after + back.length)
  t.true(await until(async () => (await Promise.all(back.map(async m => (await decideAt(c, m)).ok))).every(Boolean), 5000), 'the returned members decide')
  for (const [i, p] of polls.entries()) {
    const served = await p.stop()
    t.true(served.length > 0 && served.every(pv => pv > after), `${back[i].name} answered only at versions after ${after}: ${served.join(',')}`)
  }
  for (const m of c.ms) {
    const view = await clusterStatus(m)
    t.false(view.departed)
    t.true(view.members.every(x => x.state === 'self' || x.state === 'active'), `${m.name}: ${JSON.stringify(view.members.map(x => x.state))}`)
  }
}
