// Test plumbing for real pemfs mounts: a member with a policy and an enrolled host, `pemfs mount` as a daemon, and
// shell commands run in SEPARATE processes against the mount (never from the test process: that could deadlock on
// a mount a child serves). unmountAll() always frees mounts, with umount -l as the last resort.
import { execFile } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { startCluster, type Member } from '../../scripts/cluster'
import { cli, initSpd, loginSpctl, startSpd, stopAll, stopSpd, tempDir, writeFile, type RunResult, type Spd } from '../../scripts/procs'

export interface Cluster { spd: Spd, spctl: (args: string[]) => Promise<RunResult>, hostDir: string, work: string }

export async function clusterWithHost (name: string, policy: (work: string) => string): Promise<Cluster> {
  const spd = await initSpd(name)
  await startSpd(spd)
  const spctl = await loginSpctl(spd)
  const work = tempDir(`${name}-work`)
  await applyPolicy({ spd, spctl, hostDir: '', work }, policy(work))
  const token = JSON.parse((await spctl(['--json', 'host', 'add', 'host-1'])).stdout).token as string
  const hostDir = path.join(work, 'host')
  const r = await cli('pemfs', ['enroll', '--cluster', spd.listen, '--token', token, '--config-dir', hostDir, '--name', 'host-1'])
  if (r.code !== 0) throw new Error(`enroll: ${r.stderr}`)
  return { spd, spctl, hostDir, work }
}

export async function applyPolicy (c: Cluster, text: string): Promise<void> {
  const r = await c.spctl(['policy', 'apply', '--yes', writeFile(c.work, `policy-${Date.now()}.yaml`, text)]) // tests tighten on purpose
  if (r.code !== 0) throw new Error(`policy apply: ${r.stderr}`)
}

const mounted = new Set<string>()

export async function mount (c: Cluster, dir: string, extra: string[] = []): Promise<RunResult> {
  const r = await cli('pemfs', ['mount', dir, '--config-dir', c.hostDir, '--json', ...extra], {}, 30000)
  if (r.code === 0) mounted.add(dir)
  return r
}

export async function unmount (c: Cluster, dir: string, extra: string[] = []): Promise<RunResult> {
  const r = await cli('pemfs', ['unmount', dir, '--config-dir', c.hostDir, '--json', ...extra], {}, 30000)
  mounted.delete(dir)
  return r
}

/** A shell command in its own process, with a timeout, optionally as another user. */
export async function sh (script: string, opts: { user?: string, timeoutMs?: number, cwd?: string } = {}): Promise<RunResult> {
  const [cmd, args] = opts.user === undefined ? ['sh', ['-c', script]] : ['su', [opts.user, '-s', '/bin/sh', '-c', script]]
  return await new Promise(resolve => {
    execFile(cmd, args, { timeout: opts.timeoutMs ?? 15000, cwd: opts.cwd, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 124
      resolve({ code, stdout, stderr })
    })
  })
}

export function isMounted (dir: string): boolean {
  return fs.readFileSync('/proc/self/mounts', 'utf8').split('\n').some(l => l.split(' ')[1] === dir)
}

/** For after.always: every mount this test file made is gone afterwards, whatever state it is in. */
export async function unmountAll (c: Cluster | undefined): Promise<void> {
  for (const dir of mounted) {
    if (c !== undefined) await unmount(c, dir, ['--lazy']) // stops the daemon even if a stuck process still uses the mount
    if (isMounted(dir)) await sh(`umount -l '${dir}'`, { timeoutMs: 5000 })
  }
  mounted.clear()
}

/** The last lines of the mount daemons' logs (what pemfs said about failures), for a failing test's message. */
export function daemonLogs (c: Cluster, lines = 20): string {
  const run = path.join(c.hostDir, 'run')
  if (!fs.existsSync(run)) return '(no run directory)'
  return fs.readdirSync(run).filter(f => f.endsWith('.log'))
    .map(f => `${f}:\n${fs.readFileSync(path.join(run, f), 'utf8').split('\n').slice(-lines).join('\n')}`).join('\n')
}

/** A test file's before hook: mount, or fail the hook with pemfs's own message. */
export async function mountOrThrow (c: Cluster, dir: string, extra: string[] = []): Promise<void> {
  const r = await mount(c, dir, extra)
  if (r.code !== 0) throw new Error(`mount: ${r.stderr}`)
}

/** A test file's after.always: every mount gone, its member stopped, every process from scripts/procs killed. */
export async function tearDown (c: Cluster | undefined): Promise<void> {
  await unmountAll(c)
  if (c !== undefined) await stopSpd(c.spd)
  stopAll()
}

export { tempDir, writeFile }

/**
 * `n` real members started with `config` (scripts/cluster.ts), a policy that encrypts everything under `work/data`
 * with key k, and host `h` enrolled at the first member: the members, the Cluster (for mount/tearDown) and the
 * directory to mount. Not mounted yet.
 */
export async function encryptedCluster (n: number, name: string, prefix: string, config: Record<string, unknown>): Promise<{ ms: Member[], c: Cluster, dir: string, work: string }> {
  const work = tempDir(name)
  const dir = path.join(work, 'data')
  fs.mkdirSync(dir)
  const ms = await startCluster(n, prefix, config)
  const spctl = ms[0].spctl
  const p = await spctl(['policy', 'apply', writeFile(work, 'policy.yaml', `format: 1\nkeys: [k]\nguards:\n  ${dir}:\n    rules:\n      - id: all\n        effect: apply_key(k)\n`)])
  if (p.code !== 0) throw new Error(p.stderr)
  const token = JSON.parse((await spctl(['--json', 'host', 'add', 'h'])).stdout).token as string
  const hostDir = path.join(work, 'host')
  const e = await cli('pemfs', ['enroll', '--cluster', ms[0].listen, '--token', token, '--config-dir', hostDir, '--name', 'h'])
  if (e.code !== 0) throw new Error(e.stderr)
  return { ms, c: { spd: ms[0], spctl, hostDir, work }, dir, work }
}
