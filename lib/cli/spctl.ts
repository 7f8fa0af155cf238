// spctl: the authenticated admin client of one spd member (DESIGN §5). Sessions and pinned server ids are kept in
// $SPCTL_CONFIG or ~/.config/pemfs/spctl.json (mode 0600).
import { type Command, Option } from 'commander'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { diffPolicies, formatPolicyError, parsePolicy, type CompiledPolicy } from '../policy'
import type { DecisionRecord } from '../wire/audit-record'
import { PemError } from '../wire/errors'
import { adminLogin, adminSignKey, memberChangeSig, newAdminRecord, passwdChangeSig } from './admin-auth'
import { adminCall, pinnedSocket } from './admin-client'
import { newProgram, parseProgram, printObject, printRows, readSecret, run } from './common'
import { confirm, DEFAULT_EXAMPLES, parseDuration, parseExamples, replayFile, replayRecords, REPLAY_WINDOW, simulationText, type SimulationReport } from './spctl-simulate'

/** `adminKey`: the admin's public key record, as the login proved it (lib/cli/admin-auth.ts). */
interface Session { serverId: string, token?: string, expires?: string, user?: string, adminKey?: string }
type Sessions = Record<string, Session>

function configFile (): string { return process.env.SPCTL_CONFIG ?? path.join(os.homedir(), '.config', 'pemfs', 'spctl.json') }
function loadSessions (): Sessions {
  try { return JSON.parse(fs.readFileSync(configFile(), 'utf8')) as Sessions } catch { return {} }
}
function saveSessions (s: Sessions): void {
  const file = configFile()
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 })
  fs.writeFileSync(`${file}.tmp`, JSON.stringify(s, null, 2) + '\n', { mode: 0o600 })
  fs.renameSync(`${file}.tmp`, file)
}

function endpointOf (url: string): { key: string, host: string, port: number } {
  let u: URL
  try { u = new URL(url.includes('://') ? url : `https://${url}`) } catch { throw new PemError('PEM_ERR_BAD_ARGUMENT', `--endpoint ${url} is not a URL`) }
  if (u.protocol !== 'https:') throw new PemError('PEM_ERR_BAD_ARGUMENT', '--endpoint must be https://HOST:PORT')
  const port = Number(u.port || 7702)
  const host = u.hostname.replace(/^\[|\]$/g, '')
  return { key: `${host}:${port}`, host, port }
}

const program = newProgram('spctl', 'Administer an spd cluster through one member: policy, keys, hosts, members, audit')
  .addOption(new Option('--endpoint <url>', 'admin API of the member').env('SPCTL_ENDPOINT').default('https://127.0.0.1:7702'))
  .option('--server-id <id>', 'expected member id (hex SHA-256 of its key); default: the one recorded at first login')
  .option('--json', 'print JSON')

function opts (): { endpoint: string, serverId?: string, json: boolean } {
  const o = program.opts<{ endpoint: string, serverId?: string, json?: boolean }>()
  return { endpoint: o.endpoint, serverId: o.serverId, json: o.json === true }
}

/** Calls the admin API with the stored session; the pin is the recorded or the given server id. */
async function call (method: string, p: string, body?: unknown): Promise<unknown> {
  const o = opts()
  const ep = endpointOf(o.endpoint)
  const sessions = loadSessions()
  const s = sessions[ep.key]
  if (s?.token === undefined) await notLoggedIn(ep, Object.keys(sessions).filter(k => sessions[k].token !== undefined))
  const pin = o.serverId ?? s.serverId
  try {
    return (await adminCall({ host: ep.host, port: ep.port, pin }, method, p, body, s.token)).value
  } catch (err) {
    // The member sweeps expired sessions out, so it may no longer know this one: say why it is gone.
    const expired = s.expires !== undefined && Date.parse(s.expires) < Date.now()
    if (PemError.from(err).code === 'PEM_ERR_AUTH' && expired) throw new PemError('PEM_ERR_AUTH', `session expired at ${s.expires ?? ''}: run spctl login again`)
    throw err
  }
}

/** No session for this endpoint: say whether it is the endpoint that is wrong (nothing answers) or the login missing. */
async function notLoggedIn (ep: { key: string, host: string, port: number }, known: string[]): Promise<never> {
  try {
    (await pinnedSocket({ host: ep.host, port: ep.port, pin: null })).socket.destroy()
  } catch (err) {
    const sessions = known.length === 0 ? '' : `; sessions exist for ${known.join(', ')}`
    throw new PemError('PEM_ERR_UNREACHABLE', `${(err as Error).message}: check --endpoint (or SPCTL_ENDPOINT)${sessions}`)
  }
  throw new PemError('PEM_ERR_AUTH', `not logged in to ${ep.key}: run spctl login`)
}

/** Logs in (lib/cli/admin-auth.ts) and keeps the session; the login also upgrades an admin record without a key. */
async function login (o: { user: string, passwordFile?: string }, given?: string): Promise<{ endpoint: string, user: string, server: string, expires: string, upgraded: boolean }> {
  const g = opts()
  const ep = endpointOf(g.endpoint)
  const sessions = loadSessions()
  const pin = g.serverId ?? sessions[ep.key]?.serverId ?? null
  const password = given ?? await readSecret(o.passwordFile, `password for ${o.user}@${ep.key}: `)
  const v = await adminLogin({ host: ep.host, port: ep.port, pin }, o.user, password)
  if (pin === null) process.stderr.write(`recorded member id ${v.serverId} for ${ep.key} (first use)\n`)
  if (v.upgraded) process.stderr.write(`admin ${o.user} had no signing key: it has one now, derived from this password (installed on the cluster)\n`)
  sessions[ep.key] = { serverId: v.serverId, token: v.token, expires: v.expires, user: o.user, adminKey: v.adminKey }
  saveSessions(sessions)
  return { endpoint: ep.key, user: o.user, server: v.serverId, expires: v.expires, upgraded: v.upgraded }
}

program.command('login')
  .description('log in and keep a session token (expires; see spd.json adminTokenTtlS); the password stays here: it answers the member\'s challenge with a signature (docs/ADMIN.md)')
  .option('--user <name>', 'admin user', 'admin')
  .option('--password-file <file>', 'read the password from FILE (first line); prompts on a terminal otherwise')
  .action((o: { user: string, passwordFile?: string }) => run(async () => {
    const { upgraded, ...r } = await login(o)
    printObject({ ...r, ...(upgraded ? { upgraded: true } : {}) }, opts().json)
  }))

const admin = program.command('admin').description('the admin\'s own record')
admin.command('upgrade').description('give an admin record made before admins had keys its signing key, derived from the password (what the first login does; docs/ADMIN.md)')
  .option('--user <name>', 'admin user', 'admin')
  .option('--password-file <file>', 'read the password from FILE (first line); prompts on a terminal otherwise')
  .action((o: { user: string, passwordFile?: string }) => run(async () => {
    const r = await login(o)
    printObject({ user: r.user, server: r.server, upgraded: r.upgraded, ...(r.upgraded ? {} : { note: 'the record already had a signing key: nothing to do' }) }, opts().json)
  }))

admin.command('passwd').description('change the admin\'s password: logs in with the old one (challenge-response), signs the new record with the old password\'s key, ends the admin\'s other sessions on every member (docs/ADMIN.md)')
  .option('--user <name>', 'admin user', 'admin')
  .option('--password-file <file>', 'read the current password from FILE (first line); prompts on a terminal otherwise')
  .option('--new-password-file <file>', 'read the new password from FILE (first line); prompts twice on a terminal otherwise')
  .action((o: { user: string, passwordFile?: string, newPasswordFile?: string }) => run(async () => {
    const ep = endpointOf(opts().endpoint)
    const old = await readSecret(o.passwordFile, `current password for ${o.user}@${ep.key}: `)
    const next = await readSecret(o.newPasswordFile, `new password for ${o.user}@${ep.key}: `)
    if (o.newPasswordFile === undefined && await readSecret(undefined, 'new password again: ') !== next) throw new PemError('PEM_ERR_BAD_ARGUMENT', 'the two new passwords differ: nothing changed')
    if (next === old) throw new PemError('PEM_ERR_BAD_ARGUMENT', 'the new password is the current one: nothing changed')
    const r = await login({ user: o.user }, old) // proves the old password and gives this command a fresh session
    const sessions = loadSessions()
    const s = sessions[ep.key]
    const oldKey = await adminSignKey(old, s.adminKey, o.user)
    const { record } = await newAdminRecord(next)
    const origin = opts().serverId ?? s.serverId
    let v: { user: string, pv: number }
    for (let attempt = 1; ; attempt++) {
      const c = await call('GET', '/v1/members') as ClusterView
      try {
        v = await call('POST', '/v1/admin/passwd', { ...record, adminSig: passwdChangeSig(oldKey, c.clusterId, c.installed.version + 1, o.user, record, origin) }) as { user: string, pv: number }
        break
      } catch (err) {
        if (PemError.from(err).code !== 'PEM_ERR_CHANGE_REBASED' || attempt >= 5) throw err
      }
    }
    sessions[ep.key] = { ...s, adminKey: record.signKey }
    saveSessions(sessions)
    printObject({ user: v.user, server: r.server, pv: v.pv, note: 'other sessions of this admin are ended; this one stays' }, opts().json)
  }))

program.command('status')
  .description('show the member (version, policy summary, hosts, load, counters) and the cluster as it sees it')
  .action(() => run(async () => {
    const v = await call('GET', '/v1/status') as Record<string, unknown> & { cluster: ClusterView }
    if (opts().json) { printObject(v, true); return }
    const cluster = v.cluster
    printObject({ ...v, load: loadText(v.load as Record<string, number>), cluster: `${cluster.clusterId.slice(0, 16)}… installed v${cluster.installed.version}${cluster.pending === null ? '' : `, pending v${cluster.pending.version}${cluster.pending.locked ? ' (locked)' : ''}`}${cluster.departed ? ', DEPARTED (stopped cleanly; serves nothing until its return is installed)' : cluster.canServe ? '' : ', CUT OFF from a majority'}${cluster.queued.length > 0 ? `; queued changes: ${cluster.queued.join(', ')}` : ''}` }, false)
    process.stdout.write('\n')
    printMembers(cluster)
  }))

/** `51% (cpu 51%, nic 0%, crypto 0%)`: the busiest component decides the total. */
function loadText (load: Record<string, number>): string {
  const pct = (x: number): string => `${Math.round(x * 100)}%`
  const { total, ...parts } = load
  return `${pct(total)} (${Object.entries(parts).map(([k, x]) => `${k} ${pct(x)}`).join(', ')})`
}

const policy = program.command('policy').description('get, apply, diff or simulate the policy')
policy.command('get').description('print the installed policy YAML')
  .action(() => run(async () => {
    const v = await call('GET', '/v1/policy') as { version: number, text: string | null }
    if (opts().json) printObject(v, true)
    else if (v.text === null) throw new PemError('PEM_ERR_NOT_FOUND', 'no policy installed yet')
    else process.stdout.write(v.text.endsWith('\n') ? v.text : v.text + '\n')
  }))
policy.command('apply <file>').description('check and install a policy; a bad one is refused whole and the old one stays. Recent decisions are replayed first: a permit it would turn into a deny needs confirming (docs/ADMIN.md)')
  .option('--yes', 'apply without replaying decisions or asking (scripts)')
  .option('--since <duration>', 'replay the decisions of this long before applying (e.g. 90m, 24h, 7d)', REPLAY_WINDOW)
  .action((file: string, o: { yes?: boolean, since: string }) => run(async () => {
    const windowMs = parseDuration(o.since, '--since')
    const { text, policy: draft } = readPolicy(file)
    const json = opts().json
    let simulation: SimulationReport | null = null
    if (o.yes !== true) {
      simulation = await simulateOnMember(draft, windowMs, DEFAULT_EXAMPLES)
      const terminal = process.stdin.isTTY === true && process.stderr.isTTY === true
      if (terminal && simulation.changed > 0) process.stderr.write(simulationText(simulation))
      if (simulation.permitToDeny > 0) {
        const what = `${file} would deny ${simulation.permitToDeny} of the ${simulation.replayed} decisions recorded in the last ${o.since} that the installed policy permits`
        if (!terminal) throw Object.assign(new PemError('PEM_ERR_BAD_ARGUMENT', `${what} (see spctl policy simulate ${file}): not applied; confirm on a terminal, or add --yes`), { exitCode: 2 })
        if (!await confirm(`${what}. Apply it? [y/N] `)) throw Object.assign(new PemError('PEM_ERR_BAD_ARGUMENT', 'not applied'), { exitCode: 1 })
      }
    }
    let v: { version: number }
    try {
      v = await call('PUT', '/v1/policy', { text }) as { version: number }
    } catch (err) {
      // spd names the text it checked `policy`; the user knows it as FILE.
      const details = (err as { details?: unknown }).details
      if (Array.isArray(details)) Object.assign(err as object, { details: details.map(d => String(d).replace(/^policy:/, `${file}:`)) })
      throw err
    }
    const replayed = simulation === null ? {} : { replayed: simulation.replayed, changed: simulation.changed, permitToDeny: simulation.permitToDeny }
    printObject({ applied: file, version: v.version, ...replayed }, json)
  }))
policy.command('diff <file>').description('show what applying FILE would change, rule by rule; exit 0: no change, 1: changes, 2: invalid (as diff(1))')
  .action((file: string) => run(async () => {
    const { text } = readPolicy(file, DIFF_INVALID)
    const installed = await call('GET', '/v1/policy') as { version: number, text: string | null }
    const d = diffPolicies(installed.text ?? EMPTY_POLICY, text, [`installed policy (version ${installed.version})`, file])
    if (!d.ok) throw rejectedPolicy(d.errors.map(formatPolicyError), DIFF_INVALID)
    if (opts().json) printObject({ version: installed.version, changes: d.changes }, true)
    else if (d.changes.length > 0) process.stdout.write(d.text + '\n')
    process.exitCode = d.changes.length > 0 ? 1 : 0
  }))

policy.command('simulate <file>').description('replay recorded decisions under FILE and show what would change; exit 0: no change, 1: changes, 2: invalid')
  .option('--since <duration>', "the member's decisions of this long (e.g. 90m, 24h, 7d); with --from, the file's records of this long", REPLAY_WINDOW)
  .option('--from <auditfile>', 'offline: replay the decisions of this audit log copy against what was recorded (no member needed)')
  .option('--examples <n>', 'example decisions shown per change', String(DEFAULT_EXAMPLES))
  .action((file: string, o: { since: string, from?: string, examples: string }, cmd: Command) => run(async () => {
    const examples = parseExamples(o.examples)
    const sinceGiven = cmd.getOptionValueSource('since') === 'cli'
    const windowMs = parseDuration(o.since, '--since')
    const { policy: draft } = readPolicy(file, DIFF_INVALID)
    const r = o.from !== undefined
      ? await replayFile(draft, o.from, sinceGiven ? new Date(Date.now() - windowMs).toISOString() : null, examples)
      : await simulateOnMember(draft, windowMs, examples)
    if (opts().json) printObject(r as unknown as Record<string, unknown>, true)
    else process.stdout.write(simulationText(r))
    process.exitCode = r.changed > 0 ? 1 : 0
  }))

/** The member's decisions of the last `windowMs` replayed under `draft` against its installed policy. */
async function simulateOnMember (draft: CompiledPolicy, windowMs: number, examples: number): Promise<SimulationReport> {
  const installed = await call('GET', '/v1/policy') as { version: number, text: string | null }
  const baseline = parsePolicy(installed.text ?? EMPTY_POLICY, `installed policy (version ${installed.version})`)
  if (!baseline.ok) throw rejectedPolicy(baseline.errors.map(formatPolicyError))
  const since = new Date(Date.now() - windowMs).toISOString()
  const got = await call('GET', `/v1/audit/decisions?since=${encodeURIComponent(since)}`) as { version: number, records: DecisionRecord[], truncated: boolean, unreadable: number }
  return replayRecords(draft, baseline.policy, got.records, examples, { kind: 'member', version: installed.version, since, truncated: got.truncated, unreadable: got.unreadable })
}

/** What a cluster without a policy compares against: no keys, no guard points. */
const EMPTY_POLICY = 'format: 1\nguards: {}\n'

/** `policy diff`'s exit code for an invalid file (0 = no change, 1 = changes). */
const DIFF_INVALID = 2

function rejectedPolicy (lines: string[], exitCode = 1): PemError {
  return Object.assign(new PemError('PEM_ERR_BAD_POLICY', lines.join('\n')), { details: lines, exitCode })
}

/** FILE's text and compiled policy once it is valid, checked here so that every error names FILE (spd checks it again). */
function readPolicy (file: string, invalidExit = 1): { text: string, policy: CompiledPolicy } {
  const text = readText(file)
  const r = parsePolicy(text, file)
  if (!r.ok) throw rejectedPolicy(r.errors.map(formatPolicyError), invalidExit)
  return { text, policy: r.policy }
}

const key = program.command('key').description('named data keys (material stays in spd)')
key.command('list').description('list keys, their versions and how many files each version protects (as the hosts last reported)')
  .action(() => run(async () => { printRows(await call('GET', '/v1/keys') as Array<Record<string, unknown>>, opts().json) }))
key.command('create <name>').description('create a key')
  .action((name: string) => run(async () => { printObject(await call('POST', '/v1/keys', { name }) as Record<string, unknown>, opts().json) }))
key.command('rotate <name>').description('add a new version of a key (new files use it; old ones keep theirs)')
  .action((name: string) => run(async () => { printObject(await call('POST', `/v1/keys/${encodeURIComponent(name)}/rotate`) as Record<string, unknown>, opts().json) }))
key.command('retire <name> <version>').description('take an old version out of use (its material is wiped); refused while any host reports files under it')
  .action((name: string, version: string) => run(async () => {
    if (!/^[1-9][0-9]*$/.test(version)) throw new PemError('PEM_ERR_BAD_ARGUMENT', `version must be a positive integer, not ${JSON.stringify(version)}`)
    printObject(await call('POST', `/v1/keys/${encodeURIComponent(name)}/retire`, { version: Number(version) }) as Record<string, unknown>, opts().json)
  }))

const host = program.command('host').description('enrolled hosts')
host.command('add <name>').description('create a one-time enrollment token for a host')
  .option('--ttl <seconds>', 'token lifetime', '86400')
  .action((name: string, o: { ttl: string }) => run(async () => {
    const ttlS = Number(o.ttl)
    if (!Number.isInteger(ttlS) || ttlS <= 0) throw new PemError('PEM_ERR_BAD_ARGUMENT', '--ttl must be a positive number of seconds')
    const v = await call('POST', '/v1/hosts', { name, ttlS }) as Record<string, unknown>
    printObject(v, opts().json)
    if (!opts().json) process.stderr.write(`on the host: pemfs enroll --cluster ${String(v.cluster)} --token ${String(v.token)}\n`)
  }))
host.command('list').description('list enrolled hosts')
  .action(() => run(async () => {
    const hosts = await call('GET', '/v1/hosts') as Array<Record<string, unknown>>
    printRows(hosts.map(h => ({ ...h, keys: h.keysRevoked === true ? 'revoked' : 'leased' })), opts().json, ['name', 'id', 'enrolled', 'keys'])
  }))
host.command('remove <ref>').description('remove a host by name or id (its sessions are closed, the file keys it holds are wiped)')
  .action((ref: string) => run(async () => { printObject(await call('DELETE', `/v1/hosts/${encodeURIComponent(ref)}`) as Record<string, unknown>, opts().json) }))
host.command('revoke <ref>').description('take back the file keys a host holds (host placement) and release it no more: it stays enrolled, spd seals and opens its files (--undo: release keys again)')
  .option('--undo', 'lift the revocation')
  .action((ref: string, o: { undo?: boolean }) => run(async () => {
    printObject(await call('POST', `/v1/hosts/${encodeURIComponent(ref)}/revoke`, { undo: o.undo === true }) as Record<string, unknown>, opts().json)
  }))

host.command('servers [name]').description("show, set or clear which members a host uses and prefers (NAME or '*' for every host without its own)")
  .option('--only <members>', 'comma-separated member names this host may use (default: all)')
  .option('--prefer <list>', 'member=preference pairs, preference 0..1 (1 = preferred), e.g. spd-a=1,spd-b=0.5')
  .option('--clear', "remove the host's entry (it falls back to '*', then to every member)")
  .action((name: string | undefined, o: { only?: string, prefer?: string, clear?: boolean }) => run(async () => {
    if (name === undefined) {
      const all = await call('GET', '/v1/host-servers') as Record<string, { only: string[] | null, prefer: Record<string, number> }>
      if (opts().json) { printObject(all, true); return }
      printRows(Object.entries(all).map(([h, r]) => ({ host: h, only: r.only?.join(',') ?? '(all)', prefer: Object.entries(r.prefer).map(([k, v]) => `${k}=${v}`).join(',') || '-' })), false)
      return
    }
    if (o.clear === true) { printObject(await call('DELETE', `/v1/host-servers/${encodeURIComponent(name)}`) as Record<string, unknown>, opts().json); return }
    const prefer: Record<string, number> = {}
    for (const pair of (o.prefer ?? '').split(',').filter(x => x !== '')) {
      const [k, v] = pair.split('=')
      const x = Number(v)
      if (k === undefined || v === undefined || !Number.isFinite(x) || x < 0 || x > 1) throw new PemError('PEM_ERR_BAD_ARGUMENT', `--prefer: '${pair}' is not member=0..1`)
      prefer[k] = x
    }
    const only = o.only === undefined ? null : o.only.split(',').filter(x => x !== '')
    printObject(await call('PUT', `/v1/host-servers/${encodeURIComponent(name)}`, { only, prefer }) as Record<string, unknown>, opts().json)
  }))

const audit = program.command('audit').description('the append-only audit log')

interface TrailRecord { ts: string, member: string, seq: number, host: string, hostName: string | null, uid: number, action: string, guard: string, path: string, effect: string, rule: string | null }
interface Trail { records: TrailRecord[], members: Array<{ name: string, id: string, error: string | null, truncated: boolean, last: number }> }

/** `2026-12-06T23:34:58.123Z spd-b host=h1 uid=1000 read /srv/data/secret/b deny rule=-` */
function trailLine (r: TrailRecord): string {
  const guardPath = r.guard.replace(/\/$/, '') + (r.path.startsWith('/') ? r.path : `/${r.path}`)
  return `${r.ts} ${r.member} host=${r.hostName ?? r.host.slice(0, 16)} uid=${r.uid} ${r.action} ${guardPath} ${r.effect} rule=${r.rule ?? '-'}\n`
}

audit.command('tail').description("print the cluster's latest decision records, merged by time from every active member (exit 0 on Ctrl-C with --follow)")
  .option('-n <count>', 'how many (1..2000)', '20')
  .option('--member <name>', 'only the records of this member')
  .option('--follow', 'keep printing records as they are written (polls every second)')
  .option('--user <uid>', 'only decisions for this uid')
  .option('--host <host>', 'only decisions for this host (name or id)')
  .option('--effect <effect>', 'only permit or only deny')
  .option('--rule <id>', 'only decisions made by this rule')
  .option('--since <duration>', 'only records of this long (e.g. 90m, 24h, 7d)')
  .action((o: { n: string, member?: string, follow?: boolean, user?: string, host?: string, effect?: string, rule?: string, since?: string }) => run(async () => {
    if (o.effect !== undefined && o.effect !== 'permit' && o.effect !== 'deny') throw Object.assign(new PemError('PEM_ERR_BAD_ARGUMENT', '--effect must be permit or deny'), { exitCode: 2 })
    if (o.user !== undefined && !/^\d+$/.test(o.user)) throw Object.assign(new PemError('PEM_ERR_BAD_ARGUMENT', '--user must be a numeric uid'), { exitCode: 2 })
    const q = new URLSearchParams({ n: o.n })
    if (o.since !== undefined) q.set('since', new Date(Date.now() - parseDuration(o.since, '--since')).toISOString())
    for (const [k, v] of [['member', o.member], ['uid', o.user], ['host', o.host], ['effect', o.effect], ['rule', o.rule]] as const) if (v !== undefined) q.set(k, v)
    const json = opts().json
    const print = (t: Trail, warned: Set<string>): void => {
      for (const r of t.records) process.stdout.write(json ? JSON.stringify(r) + '\n' : trailLine(r))
      for (const m of t.members) {
        if (m.error !== null && !warned.has(m.name)) { warned.add(m.name); process.stderr.write(`spctl: member ${m.name} did not answer (${m.error}); its records are missing\n`) }
        if (m.error === null) warned.delete(m.name)
        if (following && m.truncated) process.stderr.write(`spctl: member ${m.name} wrote more than 2000 matching records in a second; older ones were skipped\n`)
      }
    }
    const warned = new Set<string>()
    let following = false
    let t = await call('GET', `/v1/audit/trail?${q.toString()}`) as Trail
    print(t, warned)
    if (o.follow !== true) return
    following = true
    let stopped = false
    process.once('SIGINT', () => { stopped = true })
    const cursor = new Map<string, number>()
    for (;;) {
      for (const m of t.members) if (m.error === null) cursor.set(m.id, m.last)
      for (let waited = 0; waited < 1000 && !stopped; waited += 100) await new Promise(resolve => setTimeout(resolve, 100))
      if (stopped) return
      q.set('n', String(2000))
      q.set('after', [...cursor].map(([id, seq]) => `${id}:${seq}`).join(','))
      t = await call('GET', `/v1/audit/trail?${q.toString()}`) as Trail
      print(t, warned)
    }
  }))
audit.command('events').description("print this member's last audit events of every kind (decisions, admin changes, security), as JSON lines")
  .option('-n <count>', 'how many', '20')
  .action((o: { n: string }) => run(async () => {
    const rows = await call('GET', `/v1/audit?n=${encodeURIComponent(o.n)}`) as Array<Record<string, unknown>>
    if (opts().json) printRows(rows, true)
    else for (const r of rows) process.stdout.write(JSON.stringify(r) + '\n')
  }))
audit.command('verify').description('check the hash chain and checkpoint signatures of the member\'s log, or of copied files offline (exit 1: broken)')
  .option('--file <file...>', 'verify these files offline, oldest first (audit.log.1 audit.log); no member needed')
  .option('--key <pubkey>', 'check checkpoint signatures with this member key (ed25519:…, from spd id)')
  .option('--data-dir <dir>', "offline, with the member's key from DIR/identity.key; DIR/audit.log unless --file")
  .option('--from <seq>', 'check from the record with this seq on')
  .action((o: { file?: string[], key?: string, dataDir?: string, from?: string }) => run(async () => {
    const fromSeq = o.from === undefined ? undefined : Number(o.from)
    if (fromSeq !== undefined && (!Number.isSafeInteger(fromSeq) || fromSeq < 1)) throw new PemError('PEM_ERR_BAD_ARGUMENT', '--from must be a record seq (1 or more)')
    if (o.key !== undefined && o.dataDir !== undefined) throw new PemError('PEM_ERR_BAD_ARGUMENT', 'give --key or --data-dir, not both')
    let r: import('../server/audit-verify').VerifyResult
    if (o.file === undefined && o.dataDir === undefined) {
      if (o.key !== undefined) throw new PemError('PEM_ERR_BAD_ARGUMENT', '--key is for offline checks: add --file')
      r = await call('GET', `/v1/audit/verify${fromSeq === undefined ? '' : `?from=${fromSeq}`}`) as typeof r
    } else {
      // Offline only, so the online commands stay light.
      const [{ AUDIT_FILE, IDENTITY_FILE }, { loadIdentity, parsePublicKey }, { verifyAuditFiles }] = await Promise.all([import('../server/member'), import('../crypto/identity'), import('../server/audit-verify')])
      const files = o.file ?? [path.join(o.dataDir ?? '', AUDIT_FILE)]
      for (const f of files) if (!fs.existsSync(f)) throw new PemError('PEM_ERR_BAD_ARGUMENT', `no such file ${f}`)
      const publicKey = o.key !== undefined ? parsePublicKey(o.key) : o.dataDir !== undefined ? loadIdentity(path.join(o.dataDir, IDENTITY_FILE)).publicKey : null
      r = verifyAuditFiles(files, { publicKey, fromSeq })
    }
    if (!r.ok) process.exitCode = 1
    if (opts().json) { printObject(r as unknown as Record<string, unknown>, true); return }
    const b = r.broken
    process.stdout.write(b === null
      ? `intact: ${r.records} records (seq ${r.firstSeq ?? '-'}..${r.lastSeq ?? '-'}), ${r.checkpoints} checkpoints ${r.signaturesChecked ? 'verified' : 'NOT verified (no key)'}, ${r.unsigned} records after the last checkpoint\n`
      : `BROKEN at ${b.file} line ${b.line}${b.seq === null ? '' : ` (seq ${b.seq})`}: ${b.reason}\n`)
    if (r.continues !== null) process.stdout.write(`the first record continues seq ${r.continues.seq} (prev ${r.continues.prev}) of an earlier file: pass that file first to check the link\n`)
    for (const t of r.torn) process.stdout.write(`torn: ${t.file} line ${t.line} (${t.bytes} bytes) was cut by a crash and reported by the next start\n`)
  }))

interface ClusterView {
  clusterId: string
  installed: { version: number }
  pending: { version: number, locked: boolean } | null
  canServe: boolean
  departed?: boolean
  queued: string[]
  members: Array<{ id: string, name: string, clusterAddr: string, hostAddr: string, state: string, lastHeardMs: number | null, installed: number | null, pending: number | null }>
}

function printMembers (c: ClusterView): void {
  printRows(c.members.map(m => ({
    name: m.name,
    id: m.id.slice(0, 16),
    state: m.state,
    cluster: m.clusterAddr,
    hosts: m.hostAddr === '' ? '-' : m.hostAddr,
    installed: m.installed,
    pending: m.pending,
    heard: m.lastHeardMs === null ? '-' : `${(m.lastHeardMs / 1000).toFixed(1)}s ago`
  })), false)
}

const member = program.command('member').description('cluster members: grow the cluster one sponsored key at a time')
member.command('list').description('list members with their state, addresses and versions as this member sees them')
  .action(() => run(async () => {
    const c = await call('GET', '/v1/members') as ClusterView
    if (opts().json) printObject(c as unknown as Record<string, unknown>, true); else printMembers(c)
  }))
/**
 * A member-list change, signed here with the admin's key (from the password, which stays here) for the version the
 * member will draft it at; signed again when a concurrent change took that version (PEM_ERR_CHANGE_REBASED).
 */
async function signedMemberChange (passwordFile: string | undefined, op: 'add' | 'remove', idOf: (c: ClusterView) => string, method: string, pathOf: (id: string) => string, body: Record<string, unknown>): Promise<unknown> {
  const ep = endpointOf(opts().endpoint)
  const s = loadSessions()[ep.key]
  if (s?.token === undefined) return await call('GET', '/v1/members') // says what is missing
  const user = s.user ?? 'admin'
  const signKey = await adminSignKey(await readSecret(passwordFile, `password for ${user}@${ep.key} (signs the change): `), s.adminKey, user)
  const origin = opts().serverId ?? s.serverId
  for (let attempt = 1; ; attempt++) {
    const c = await call('GET', '/v1/members') as ClusterView
    const id = idOf(c)
    try {
      return await call(method, pathOf(id), { ...body, adminSig: memberChangeSig(signKey, c.clusterId, c.installed.version + 1, op, id, origin) })
    } catch (err) {
      if (PemError.from(err).code !== 'PEM_ERR_CHANGE_REBASED' || attempt >= 5) throw err
    }
  }
}

const PASSWORD_FILE_HELP = 'read the admin password from FILE (first line; it signs the change and stays here); prompts on a terminal otherwise'

member.command('add <pubkey>').description('sponsor a new member (its key from spd id); prints the spd trust command to run on it')
  .requiredOption('--addr <host:port>', "the new member's cluster address")
  .requiredOption('--name <name>', 'the new member\'s name')
  .option('--password-file <file>', PASSWORD_FILE_HELP)
  .action((key: string, o: { addr: string, name: string, passwordFile?: string }) => run(async () => {
    const { keyId, parsePublicKey } = await import('../crypto/identity')
    const id = keyId(parsePublicKey(key.trim()))
    const v = await signedMemberChange(o.passwordFile, 'add', () => id, 'POST', () => '/v1/members', { key, addr: o.addr, name: o.name }) as { id: string, sponsor: { key: string, addr: string, cluster: string } }
    printObject(v as unknown as Record<string, unknown>, opts().json)
    if (!opts().json) process.stderr.write(`on the new member, before its first start: spd trust --data-dir DIR --key ${v.sponsor.key} --addr ${v.sponsor.addr} --cluster ${v.sponsor.cluster}\n`)
  }))
member.command('remove <ref>').description('remove a member by name or id; it stays out for good (it cannot open later sets)')
  .option('--password-file <file>', PASSWORD_FILE_HELP)
  .action((ref: string, o: { passwordFile?: string }) => run(async () => {
    const idOf = (c: ClusterView): string => {
      const m = c.members.find(x => x.state !== 'removed' && (x.id === ref || x.name === ref || (ref.length >= 8 && x.id.startsWith(ref))))
      if (m === undefined) throw new PemError('PEM_ERR_NOT_FOUND', `no active member ${ref}`)
      return m.id
    }
    printObject(await signedMemberChange(o.passwordFile, 'remove', idOf, 'DELETE', id => `/v1/members/${id}`, {}) as Record<string, unknown>, opts().json)
  }))

function readText (file: string): string {
  try { return fs.readFileSync(file, 'utf8') } catch (err) { throw new PemError('PEM_ERR_BAD_ARGUMENT', `cannot read ${file}: ${(err as Error).message}`) }
}

parseProgram(program)
