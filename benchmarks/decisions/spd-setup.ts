// Fixtures of the decisions RPC benchmark: generated policies with realistic rules, the request that hits a rule near
// their end, and real spd members (scripts/procs.ts) with the benchmark host and N more hosts enrolled.
import fs from 'node:fs'
import path from 'node:path'
import { adminLogin } from '../../lib/cli/admin-auth'
import { adminCall, type AdminTarget } from '../../lib/cli/admin-client'
import { generateIdentity } from '../../lib/crypto/identity'
import { enroll } from '../../lib/pem-fs/client'
import type { DecideBody } from '../../lib/wire/packets'
import { cli, initSpd, loginSpctl, spctlFor, startSpd, writeFile, type RunResult, type Spd } from '../../scripts/procs'

export const GUARD = '/srv/data'
export const OFFICE = '/usr/lib/libreoffice/program/soffice.bin'
const OFFICE_HASH = '5f2b1c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9'
/** The rule the benchmark request matches: second to last in every generated policy. */
export const HIT_RULE = 'finance-office'

/**
 * A policy of `n` rules on one guard point: department shares, home directories, application directories, host
 * quarantines by CIDR, temp-file globs, all filed under different attributes; then HIT_RULE and a public catch-all.
 */
export function policyYaml (n: number): string {
  const out = ['format: 1', 'description: generated for benchmarks/decisions/rpc.bench.ts', 'keys: [finance, dept0, dept1, dept2, dept3]', 'guards:', `  ${GUARD}:`, '    rules:']
  for (let i = 0; i < n - 2; i++) {
    switch (i % 5) {
      case 0: out.push(`      - {id: dept-${i}, resources: {dirs: [/dept/d${i}]}, users: {groups: [dept${i}]}, actions: [readonly, write, create], effect: apply_key(dept${i % 4}), compression: lz4}`); break
      case 1: out.push(`      - {id: home-${i}, resources: {dirs: [/home/u${20_000 + i}]}, users: {uids: [${20_000 + i}]}, effect: permit}`); break
      case 2: out.push(`      - {id: app-${i}, resources: {dirs: [/apps/a${i}]}, processes: {paths: [/opt/a${i}/bin/server]}, actions: [readonly, write], effect: permit}`); break
      case 3: out.push(`      - {id: quarantine-${i}, hosts: {cidrs: [10.${(i >> 8) & 255}.${i & 255}.0/24]}, effect: deny}`); break
      default: out.push(`      - {id: tmp-${i}, resources: {files: ["/projects/p${i}/**/*.tmp"]}, effect: deny}`)
    }
  }
  out.push(`      - {id: ${HIT_RULE}, resources: {dirs: [/finance]}, users: {uids: [4242], groups: [finance]}, processes: {paths: [${OFFICE}], signatures: ["sha256:${OFFICE_HASH}"]}, actions: [readonly, write], effect: apply_key(finance), compression: zstd}`)
  out.push('      - {id: public, resources: {dirs: [/public]}, actions: readonly, effect: permit}')
  return out.join('\n') + '\n'
}

/** A read of a finance spreadsheet by user ann through the office binary: what pemfs would send for it. */
export function hitRequest (pv: number): DecideBody {
  return {
    pv,
    guard: GUARD,
    path: '/finance/2026/q1-budget.ods',
    action: 'read',
    attrs: { uid: 4242, gids: [4242, 100, 2001], user: 'ann', groups: ['ann', 'users', 'finance'], pid: 31337, sid: 31300, exe: OFFICE, exeHash: OFFICE_HASH, auth: 1 }
  }
}

export interface Member { spd: Spd, hostDir: string, spctl: (args: string[]) => Promise<RunResult>, admin: AdminTarget, token: string }

/**
 * A started member with `policy` applied and one host enrolled by `pemfs enroll` (its config dir is hostDir), pushed
 * onto `members` before it starts so the caller can clean up after a failure.
 */
export async function startMember (name: string, policy: string, members: Member[]): Promise<Member> {
  const spd = await initSpd(name) // load threshold 1: the benchmark's own CPU use must not turn into overload rejections
  const m: Member = { spd, hostDir: path.join(path.dirname(spd.dir), 'host'), spctl: spctlFor(spd), admin: { host: '', port: 0, pin: null }, token: '' }
  members.push(m)
  await startSpd(spd)
  await loginSpctl(spd)
  const [host, port] = spd.admin.split(':')
  const login = await adminLogin({ host, port: Number(port), pin: null }, 'admin', fs.readFileSync(spd.passwordFile, 'utf8').trim())
  m.admin = { host, port: Number(port), pin: login.serverId }
  m.token = login.token
  await applyPolicy(m, policy)
  const r = await cli('pemfs', ['enroll', '--cluster', spd.listen, '--token', await hostToken(m, 'bench-host'), '--config-dir', m.hostDir, '--name', 'bench-host'])
  if (r.code !== 0) throw new Error(`pemfs enroll failed: ${r.stderr}`)
  return m
}

/** `spctl policy apply`; resolves with the new policy version. */
export async function applyPolicy (m: Member, text: string): Promise<number> {
  const r = await m.spctl(['--json', 'policy', 'apply', writeFile(path.dirname(m.spd.dir), 'policy.yaml', text)])
  if (r.code !== 0) throw new Error(`spctl policy apply failed: ${r.stderr}`)
  return (JSON.parse(r.stdout) as { version: number }).version
}

async function hostToken (m: Member, name: string): Promise<string> {
  return ((await adminCall(m.admin, 'POST', '/v1/hosts', { name }, m.token)).value as { token: string }).token
}

/**
 * Enrolls `count` hosts with generated identities: a token each from the admin API, then enroll() of the client
 * library on the enrollment channel, `parallel` at a time. Returns the elapsed milliseconds.
 */
export async function enrollHosts (m: Member, count: number, parallel = 8): Promise<number> {
  const t0 = performance.now()
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < count) {
      const name = `host-${next++}`
      await enroll(generateIdentity(), [m.spd.listen], await hostToken(m, name), name)
    }
  }
  await Promise.all(Array.from({ length: parallel }, worker))
  return performance.now() - t0
}
