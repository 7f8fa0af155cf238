// Real spd members inside a lab's network namespaces: `spd init` with the namespace's address, `spd start` through
// `ip netns exec`, sponsored joins as in scripts/cluster.ts; spctl and admin calls go from the root namespace over the
// lab's bridge (the admin listener binds the member's lab address, and faults never touch the root namespace's traffic).
import fs from 'node:fs'
import path from 'node:path'
import type { ChildProcess } from 'node:child_process'
import { allInstalled, clusterStatus, installedVersion, until, type Member } from '../../scripts/cluster'
import { cli, loginSpctl, ROOT, tempDir, type Spd } from '../../scripts/procs'
import { labTempPrefix, spawnInNs, type LabNode } from './netns'

/** Ports inside every member namespace (each namespace has its own port space, so they can be fixed). */
export const PORTS = { listen: 7400, cluster: 7401, admin: 7402 }

export interface NsMember extends Member { node: LabNode, root: string }

const started = new Set<ChildProcess>()
const roots: string[] = []

/** `spd init` for a member that will run in `node`'s namespace (init only writes files: it runs in the root namespace). */
export async function initIn (node: LabNode, extra: Record<string, unknown>): Promise<Spd & { root: string, id: string, key: string }> {
  const root = tempDir(labTempPrefix(node.name))
  roots.push(root)
  const dir = path.join(root, 'data')
  const passwordFile = path.join(root, 'password')
  fs.writeFileSync(passwordFile, 'correct horse battery\n', { mode: 0o600 })
  const at = (port: number): string => `${node.ip}:${port}`
  const r = await cli('spd', ['init', '--data-dir', dir, '--name', node.name, '--listen', at(PORTS.listen), '--cluster-listen', at(PORTS.cluster), '--admin-listen', at(PORTS.admin), '--admin-password-file', passwordFile, '--json'])
  if (r.code !== 0) throw new Error(`spd init ${node.name}: ${r.stderr}`)
  const { id, key } = JSON.parse(r.stdout) as { id: string, key: string }
  const file = path.join(dir, 'spd.json')
  fs.writeFileSync(file, JSON.stringify({ ...JSON.parse(fs.readFileSync(file, 'utf8')), ...extra }, null, 2))
  return { dir, name: node.name, listen: at(PORTS.listen), admin: at(PORTS.admin), cluster: at(PORTS.cluster), passwordFile, proc: null, logs: [], root, id, key }
}

/** `ip netns exec NS node bin/spd.js start`; resolves once the member logs that it serves. */
export async function startIn (s: Spd, node: LabNode, timeoutMs = 20000): Promise<void> {
  const proc = spawnInNs(node.ns, process.execPath, [path.join(ROOT, 'bin', 'spd.js'), 'start', '--data-dir', s.dir])
  started.add(proc)
  proc.on('exit', () => started.delete(proc))
  s.proc = proc
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`spd ${s.name} did not start in ${node.ns}: ${s.logs.slice(-20).join('\n')}`)), timeoutMs)
    let buf = ''
    proc.stdout?.on('data', (c: Buffer) => {
      buf += c.toString('utf8')
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        const line = buf.slice(0, i)
        buf = buf.slice(i + 1)
        s.logs.push(line)
        if (line.includes('"spd serving"')) { clearTimeout(timer); resolve() }
      }
    })
    proc.stderr?.on('data', (c: Buffer) => s.logs.push(c.toString('utf8')))
    proc.on('exit', code => { clearTimeout(timer); reject(new Error(`spd ${s.name} exited with ${String(code)}: ${s.logs.slice(-20).join('\n')}`)) })
  })
}

/** The first member: a cluster of one. */
export async function foundIn (node: LabNode, extra: Record<string, unknown>): Promise<NsMember> {
  const s = await initIn(node, extra)
  await startIn(s, node)
  return { ...s, node, spctl: await loginSpctl(s) }
}

/** Sponsorship into the cluster of `sponsor`: its admin adds the key, the new member trusts it, starts and installs. */
export async function joinIn (sponsor: NsMember, node: LabNode, extra: Record<string, unknown>): Promise<NsMember> {
  const s = await initIn(node, extra)
  const add = await sponsor.spctl(['--json', 'member', 'add', s.key, '--addr', s.cluster, '--name', node.name, '--password-file', sponsor.passwordFile])
  if (add.code !== 0) throw new Error(`member add ${node.name}: ${add.stderr}`)
  const sp = (JSON.parse(add.stdout) as { sponsor: { key: string, addr: string, cluster: string } }).sponsor
  const trust = await cli('spd', ['trust', '--data-dir', s.dir, '--key', sp.key, '--addr', sp.addr, '--cluster', sp.cluster])
  if (trust.code !== 0) throw new Error(`spd trust ${node.name}: ${trust.stderr}`)
  await startIn(s, node)
  await allInstalled([sponsor, s], (await installedVersion(sponsor)) ?? 1, 30000)
  return { ...s, node, spctl: await loginSpctl(s) }
}

/**
 * Waits until the joiners' own changes (their host addresses) have landed and nothing is pending, then until every
 * member has installed the same version and hears every other member (a full mesh: channels a fault stalled have
 * recovered, so the next fault starts from live links); returns that version.
 */
export async function settle (members: NsMember[], timeoutMs = 30000): Promise<number> {
  const ok = await until(async () => {
    try {
      const v = await clusterStatus(members[0])
      return v.pending === null && v.members.filter(m => m.state !== 'removed').every(m => m.hostAddr !== '')
    } catch { return false }
  }, timeoutMs, 100)
  if (!ok) throw new Error(`the cluster did not settle within ${timeoutMs} ms`)
  const version = (await installedVersion(members[0])) ?? 1
  await allInstalled(members, version, timeoutMs)
  const names = new Set(members.map(m => m.node.name))
  const meshed = await until(async () => {
    try {
      const views = await Promise.all(members.map(async m => await clusterStatus(m)))
      return views.every(v => v.members.filter(p => names.has(p.name)).every(p => p.state === 'self' || p.state === 'active'))
    } catch { return false }
  }, timeoutMs, 100)
  if (!meshed) throw new Error(`the members did not all hear each other within ${timeoutMs} ms`)
  return version
}

/** A cluster grown by sponsorship over the given nodes (each sponsored by the member before it). */
export async function clusterIn (nodes: LabNode[], extra: Record<string, unknown>): Promise<NsMember[]> {
  const members = [await foundIn(nodes[0], extra)]
  for (const node of nodes.slice(1)) members.push(await joinIn(members[members.length - 1], node, extra))
  await settle(members)
  return members
}

/** SIGKILLs every member this module started and waits until they are gone; removes their temp dirs. */
export async function stopAllIn (): Promise<void> {
  const exits = [...started].map(async p => await new Promise<void>(resolve => {
    if (p.exitCode !== null || p.signalCode !== null) { resolve(); return }
    p.once('exit', () => resolve())
    p.kill('SIGKILL')
  }))
  await Promise.race([Promise.all(exits), new Promise(resolve => setTimeout(resolve, 5000))])
  started.clear()
  for (const root of roots.splice(0)) {
    try { fs.rmSync(root, { recursive: true, force: true }) } catch { /* swept by the next run (labTempPrefix) */ }
  }
}
