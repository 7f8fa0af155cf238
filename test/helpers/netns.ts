// A throwaway network lab for partition tests: N member network namespaces, each with a veth into a bridge that lives
// in its own namespace, plus one port of the bridge in the root namespace (the test's own path to the members);
// faults are nftables input rules inside the member namespaces; teardown removes everything, also a crashed run's.
//
// Needs root, iproute2 (`ip netns`) and nftables (`nft`). Names: namespaces `pemlab-PID-br` and `pemlab-PID-mI`, the
// root port `plPID`, member temp dirs `pem-netns-PID-*`; a run whose PID is no longer alive is stale and swept by the
// next createLab().
import { execFile, spawn } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import type { RunResult } from '../../scripts/procs'

/**
 * The system's own binary, never a PATH lookup: under npx/npm the PATH starts with node_modules/.bin, and a dev
 * dependency ships an unrelated `nft` there (@vercel/nft) that exits 0 without touching the firewall.
 */
function system (name: string): string {
  for (const dir of ['/usr/sbin', '/sbin', '/usr/bin', '/bin']) {
    const file = path.join(dir, name)
    if (fs.existsSync(file)) return file
  }
  throw new Error(`${name} is not installed (Debian: apt-get install ${name === 'nft' ? 'nftables' : 'iproute2'})`)
}
const IP = system('ip')
const NFT = system('nft')

const TAG = 'pemlab'
/** Members get 10.77.S.1..N, the root namespace 10.77.S.254; S is a /24 no route of the root namespace uses yet. */
const ROOT_HOST = 254
/** nftables table in every member namespace; faults are rules in its input chain, healing flushes the chain. */
const TABLE = 'inet pemlab'

/** The labs of this process that are not destroyed yet. */
const labs = new Set<Lab>()

export interface LabNode { index: number, name: string, ns: string, ip: string }

export interface Lab {
  id: string
  subnet: string
  bridgeNs: string
  rootIf: string
  rootIp: string
  nodes: LabNode[]
  /** What was created, in order, so teardown removes exactly that (also after a half-finished createLab). */
  created: { namespaces: string[], rootIf: string | null }
}

/** Runs a program to completion (never throws); stdin from `input` when given. */
export async function run (cmd: string, args: string[], input?: string, timeoutMs = 15000): Promise<RunResult> {
  return await new Promise(resolve => {
    const child = execFile(cmd, args, { timeout: timeoutMs }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1
      resolve({ code, stdout, stderr: err !== null && stderr === '' ? err.message : stderr })
    })
    if (input !== undefined) child.stdin?.end(input)
  })
}

async function must (cmd: string, args: string[], input?: string): Promise<string> {
  const r = await run(cmd, args, input)
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.code}): ${r.stderr.trim()}`)
  return r.stdout
}

/** A command inside a namespace (`ip netns exec NS ...`). */
export async function inNs (ns: string, cmd: string, args: string[], input?: string, timeoutMs?: number): Promise<RunResult> {
  return await run(IP, ['netns', 'exec', ns, cmd, ...args], input, timeoutMs)
}

function alive (pid: number): boolean {
  try { process.kill(pid, 0); return true } catch (err) { return (err as NodeJS.ErrnoException).code === 'EPERM' }
}

async function namespaces (): Promise<string[]> {
  // `ip netns list` prints "NAME" or "NAME (id: N)".
  return (await must(IP, ['netns', 'list'])).split('\n').map(l => l.trim().split(' ')[0]).filter(n => n !== '')
}

async function rootLinks (): Promise<string[]> {
  return (await must(IP, ['-o', 'link', 'show'])).split('\n').map(l => /^\d+:\s+([^:@\s]+)/.exec(l)?.[1] ?? '').filter(n => n !== '')
}

/** SIGKILLs what still runs in a namespace (a crashed run's spd members), waits until it is gone, deletes the namespace. */
async function removeNamespace (ns: string): Promise<void> {
  const pids = (await run(IP, ['netns', 'pids', ns])).stdout.split('\n').map(Number).filter(p => Number.isInteger(p) && p > 0)
  for (const pid of pids) { try { process.kill(pid, 'SIGKILL') } catch { /* already gone */ } }
  const end = Date.now() + 5000
  while (pids.some(alive) && Date.now() < end) await new Promise(resolve => setTimeout(resolve, 50))
  await must(IP, ['netns', 'del', ns])
}

/**
 * Removes the namespaces and root ports of runs whose process is gone (or that carry this process's own id while it has
 * no lab: an earlier run with a recycled PID). Returns what it removed.
 */
export async function sweepStale (): Promise<string[]> {
  const stale = (pid: number): boolean => !alive(pid) || (pid === process.pid && labs.size === 0)
  const removed: string[] = []
  for (const link of await rootLinks()) {
    const m = /^pl(\d+)$/.exec(link)
    if (m !== null && stale(Number(m[1]))) { await run(IP, ['link', 'del', link]); removed.push(link) }
  }
  for (const ns of await namespaces()) {
    const m = new RegExp(`^${TAG}-(\\d+)-`).exec(ns)
    if (m !== null && stale(Number(m[1]))) { await removeNamespace(ns); removed.push(ns) }
  }
  // Data dirs of members a crashed run started (labTempPrefix below), once their processes are gone.
  for (const name of fs.readdirSync(os.tmpdir())) {
    const m = /^pem-netns-(\d+)-/.exec(name)
    if (m !== null && stale(Number(m[1]))) { fs.rmSync(path.join(os.tmpdir(), name), { recursive: true, force: true }); removed.push(name) }
  }
  return removed
}

/** Prefix for temp dirs of this run's members (scripts/procs tempDir adds `pem-` before it): swept with the lab. */
export function labTempPrefix (member: string): string { return `netns-${process.pid}-${member}` }

/** A /24 under 10.77 that no route of the root namespace covers, starting at a PID-derived one (concurrent runs differ). */
async function freeSubnet (): Promise<string> {
  const routes = await must(IP, ['-4', 'route', 'show'])
  const used = new Set([...routes.matchAll(/^10\.77\.(\d+)\.0\/24/gm)].map(m => Number(m[1])))
  for (let k = 0; k < 250; k++) {
    const s = 1 + (process.pid + k) % 250
    if (!used.has(s)) return `10.77.${s}`
  }
  throw new Error('no free /24 under 10.77.0.0/16')
}

/**
 * Creates the lab with `n` member namespaces named m1..mN (one lab per process at a time: names carry the PID).
 * On failure it removes what it had created and throws.
 */
export async function createLab (n: number): Promise<Lab> {
  if (labs.size > 0) throw new Error('this process already has a lab; destroy it first')
  await sweepStale()
  const id = String(process.pid)
  const subnet = await freeSubnet()
  const lab: Lab = {
    id,
    subnet,
    bridgeNs: `${TAG}-${id}-br`,
    rootIf: `pl${id}`,
    rootIp: `${subnet}.${ROOT_HOST}`,
    nodes: Array.from({ length: n }, (_, i) => ({ index: i, name: `m${i + 1}`, ns: `${TAG}-${id}-m${i + 1}`, ip: `${subnet}.${i + 1}` })),
    created: { namespaces: [], rootIf: null }
  }
  labs.add(lab)
  try {
    await must(IP, ['netns', 'add', lab.bridgeNs])
    lab.created.namespaces.push(lab.bridgeNs)
    await must(IP, ['-n', lab.bridgeNs, 'link', 'add', 'br0', 'type', 'bridge'])
    await must(IP, ['-n', lab.bridgeNs, 'link', 'set', 'br0', 'up'])
    for (const node of lab.nodes) {
      await must(IP, ['netns', 'add', node.ns])
      lab.created.namespaces.push(node.ns)
      const port = `p${node.index + 1}`
      await must(IP, ['link', 'add', 'eth0', 'netns', node.ns, 'type', 'veth', 'peer', 'name', port, 'netns', lab.bridgeNs])
      await must(IP, ['-n', lab.bridgeNs, 'link', 'set', port, 'master', 'br0', 'up'])
      await must(IP, ['-n', node.ns, 'addr', 'add', `${node.ip}/24`, 'dev', 'eth0'])
      await must(IP, ['-n', node.ns, 'link', 'set', 'eth0', 'up'])
      await must(IP, ['-n', node.ns, 'link', 'set', 'lo', 'up'])
      await nft(node, `table ${TABLE} {\n  chain in { type filter hook input priority 0; policy accept; }\n}\n`)
    }
    await must(IP, ['link', 'add', lab.rootIf, 'type', 'veth', 'peer', 'name', 'proot', 'netns', lab.bridgeNs])
    lab.created.rootIf = lab.rootIf
    await must(IP, ['-n', lab.bridgeNs, 'link', 'set', 'proot', 'master', 'br0', 'up'])
    await must(IP, ['addr', 'add', `${lab.rootIp}/24`, 'dev', lab.rootIf])
    await must(IP, ['link', 'set', lab.rootIf, 'up'])
  } catch (err) {
    const left = await destroyLab(lab)
    throw new Error(`${(err as Error).message}${left.length > 0 ? `; teardown: ${left.join('; ')}` : ''}`)
  }
  return lab
}

/** Removes everything the lab created (processes left in its namespaces are killed first); returns the errors, if any. */
export async function destroyLab (lab: Lab): Promise<string[]> {
  const errors: string[] = []
  if (lab.created.rootIf !== null) {
    const r = await run(IP, ['link', 'del', lab.created.rootIf])
    if (r.code !== 0 && !r.stderr.includes('Cannot find device')) errors.push(r.stderr.trim())
    lab.created.rootIf = null
  }
  for (const ns of lab.created.namespaces.splice(0).reverse()) {
    try { await removeNamespace(ns) } catch (err) { errors.push((err as Error).message) }
  }
  labs.delete(lab)
  return errors
}

/** Every lab of this process (for test.after.always). */
export async function destroyAllLabs (): Promise<string[]> {
  const errors: string[] = []
  for (const lab of [...labs]) errors.push(...await destroyLab(lab))
  return errors
}

/** Applies an nft script inside a member's namespace, atomically. */
async function nft (node: LabNode, script: string): Promise<void> {
  const r = await inNs(node.ns, NFT, ['-f', '-'], script)
  if (r.code !== 0) throw new Error(`nft in ${node.ns} failed: ${r.stderr.trim()}\n${script}`)
}

async function addRules (node: LabNode, rules: string[]): Promise<void> {
  await nft(node, rules.map(r => `add rule ${TABLE} in ${r} counter drop\n`).join(''))
}

/** Full cut between two members: neither receives anything from the other. */
export async function cut (a: LabNode, b: LabNode): Promise<void> {
  await addRules(a, [`ip saddr ${b.ip}`])
  await addRules(b, [`ip saddr ${a.ip}`])
}

/** Full cuts between every member of one side and every member of the other. */
export async function split (left: LabNode[], right: LabNode[]): Promise<void> {
  for (const a of left) await addRules(a, right.map(b => `ip saddr ${b.ip}`))
  for (const b of right) await addRules(b, left.map(a => `ip saddr ${a.ip}`))
}

/**
 * One-way at the IP level: `receiver` gets no packet from `sender`; packets from `receiver` to `sender` still arrive.
 * Over TCP this also starves the receiver's own connections to the sender (their ACKs are lost), so within a few
 * round trips both directions stall: use dropConnectionsFrom for a one-way cut of the messages themselves.
 */
export async function dropFrom (receiver: LabNode, sender: LabNode): Promise<void> {
  await addRules(receiver, [`ip saddr ${sender.ip}`])
}

/**
 * One-way at the connection level: `receiver` gets nothing on connections `sender` opens to its `port` (the sender's
 * messages and dials), while the connections `receiver` opens to `sender` keep working both ways (their ACKs and
 * replies come from the sender's listening port, not to the receiver's). For protocols where each side sends on the
 * connection it opened, this is "receiver → sender works, sender → receiver is lost".
 */
export async function dropConnectionsFrom (receiver: LabNode, sender: LabNode, port: number): Promise<void> {
  await addRules(receiver, [`ip saddr ${sender.ip} tcp dport ${port}`])
}

/**
 * Random loss on every link between members: each member drops one in `oneIn` packets from the other members
 * (nftables `numgen random mod oneIn 0`). The root namespace's traffic (the test's admin calls) is not touched.
 */
export async function loss (lab: Lab, oneIn: number): Promise<void> {
  for (const node of lab.nodes) {
    const others = lab.nodes.filter(o => o !== node).map(o => o.ip)
    await addRules(node, [`ip saddr { ${others.join(', ')} } numgen random mod ${oneIn} 0`])
  }
}

/** Removes every fault rule in every member namespace. */
export async function heal (lab: Lab): Promise<void> {
  for (const node of lab.nodes) await nft(node, `flush chain ${TABLE} in\n`)
}

/** Packets dropped by the fault rules now in place, per member (evidence that a fault really applied). */
export async function dropped (lab: Lab): Promise<Record<string, number>> {
  const out: Record<string, number> = {}
  for (const node of lab.nodes) {
    const r = await inNs(node.ns, NFT, ['list', 'chain', ...TABLE.split(' '), 'in'])
    if (r.code !== 0) throw new Error(`nft list in ${node.ns} failed (${r.code}): ${r.stderr.trim()}`)
    out[node.name] = [...r.stdout.matchAll(/counter packets (\d+)/g)].reduce((sum, m) => sum + Number(m[1]), 0)
  }
  return out
}

/** Starts a long-running program inside a namespace (`ip netns exec` execs it, so the child's PID is the program's). */
export function spawnInNs (ns: string, cmd: string, args: string[]): ReturnType<typeof spawn> {
  return spawn(IP, ['netns', 'exec', ns, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
}
