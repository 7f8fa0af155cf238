// Builds and watches real multi-member spd clusters for tests, benchmarks and the demo: members created with
// `spd init`, sponsored with `spctl member add` + `spd trust`, started as processes; status read over the admin API.
import { adminLogin } from '../lib/cli/admin-auth'
import { adminCall } from '../lib/cli/admin-client'
import type { ClusterStatusView } from '../lib/server/cluster/service'
import { splitHostPort } from '../lib/server/config'
import { cli, initSpd, loginSpctl, startSpd, type RunResult, type Spd } from './procs'
import fs from 'node:fs'

export interface Member extends Spd { spctl: (args: string[]) => Promise<RunResult>, id: string }

/** Fast in-process admin calls (no CLI spawn) for polling; logs in again when the session is gone (a restart). */
const tokens = new Map<string, string>()
export async function admin (m: Spd, method: string, path: string, body?: unknown): Promise<unknown> {
  const { host, port } = splitHostPort(m.admin)
  for (let attempt = 0; ; attempt++) {
    let token = tokens.get(m.admin)
    if (token === undefined) {
      const password = fs.readFileSync(m.passwordFile, 'utf8').split('\n')[0]
      token = (await adminLogin({ host, port, pin: null }, 'admin', password)).token
      tokens.set(m.admin, token)
    }
    try {
      return (await adminCall({ host, port, pin: null }, method, path, body, token)).value
    } catch (err) {
      if ((err as { code?: string }).code !== 'PEM_ERR_AUTH' || attempt > 0) throw err
      tokens.delete(m.admin)
    }
  }
}

export async function clusterStatus (m: Spd): Promise<ClusterStatusView> {
  return await admin(m, 'GET', '/v1/members') as ClusterStatusView
}

/** Installed version of a member, or null when it does not answer. */
export async function installedVersion (m: Spd): Promise<number | null> {
  try { return (await clusterStatus(m)).installed.version } catch { return null }
}

/** Polls until `check` holds or the time is up; returns whether it held. */
export async function until (check: () => Promise<boolean>, timeoutMs: number, everyMs = 50): Promise<boolean> {
  const end = Date.now() + timeoutMs
  for (;;) {
    if (await check()) return true
    if (Date.now() > end) return false
    await new Promise(resolve => setTimeout(resolve, everyMs))
  }
}

/** Waits until every given member has installed at least `version` with the same digest; returns the digest. */
export async function allInstalled (members: Spd[], version: number, timeoutMs = 15000): Promise<string> {
  let digests: string[] = []
  const ok = await until(async () => {
    const views = await Promise.all(members.map(async m => { try { return await clusterStatus(m) } catch { return null } }))
    if (views.some(v => v === null || v.installed.version < version)) return false
    const vs = views as ClusterStatusView[]
    digests = vs.map(v => v.installed.digest)
    return vs.every(v => v.installed.version === vs[0].installed.version && v.installed.digest === digests[0])
  }, timeoutMs)
  if (!ok) throw new Error(`members did not all install version ${version} within ${timeoutMs} ms: ${JSON.stringify(await Promise.all(members.map(installedVersion)))}`)
  return digests[0]
}

/** `spd init` + the sponsor's `spctl member add` + `spd trust` + `spd start`; resolves once it has joined. */
export async function join (sponsor: Member, name: string, extra?: Record<string, unknown>): Promise<Member> {
  const s = await initSpd(name, extra)
  const id = JSON.parse((await cli('spd', ['id', '--data-dir', s.dir, '--json'])).stdout) as { id: string, key: string }
  const spctl = await loginSpctl(sponsor) // a fresh session: admin sessions do not survive a restart of the sponsor
  const add = await spctl(['--json', 'member', 'add', id.key, '--addr', s.cluster, '--name', name, '--password-file', sponsor.passwordFile])
  if (add.code !== 0) throw new Error(`member add ${name}: ${add.stderr}`)
  const sp = (JSON.parse(add.stdout) as { sponsor: { key: string, addr: string, cluster: string } }).sponsor
  const trust = await cli('spd', ['trust', '--data-dir', s.dir, '--key', sp.key, '--addr', sp.addr, '--cluster', sp.cluster])
  if (trust.code !== 0) throw new Error(`spd trust ${name}: ${trust.stderr}`)
  await startSpd(s)
  await allInstalled([sponsor, s], (await installedVersion(sponsor)) ?? 1)
  // The joiner then publishes its host address with a change of its own: joined = that change installed too.
  const published = await until(async () => {
    const v = await clusterStatus(sponsor)
    return v.pending === null && v.members.some(m => m.id === id.id && m.hostAddr !== '')
  }, 15000)
  if (!published) throw new Error(`${name} joined but its host address did not reach ${sponsor.name}`)
  await allInstalled([sponsor, s], (await installedVersion(sponsor)) ?? 1)
  return { ...s, spctl: await loginSpctl(s), id: id.id }
}

/** A cluster of `n` members grown one sponsored key at a time from the first; every member has installed the same version. */
export async function startCluster (n: number, prefix = 'm', extra?: Record<string, unknown>): Promise<Member[]> {
  const first = await initSpd(`${prefix}1`, extra)
  await startSpd(first)
  const id = JSON.parse((await cli('spd', ['id', '--data-dir', first.dir, '--json'])).stdout) as { id: string }
  const members: Member[] = [{ ...first, spctl: await loginSpctl(first), id: id.id }]
  for (let i = 2; i <= n; i++) members.push(await join(members[i - 2], `${prefix}${i}`, extra))
  await allInstalled(members, (await installedVersion(members[0])) ?? 1)
  return members
}
