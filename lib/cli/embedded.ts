// `pemfs mount DIR --embedded [--policy FILE]`: a private single-member spd for one guard point, as a child of the
// mount. First use: `spd init` under CONFIG/embedded/ID/ (generated admin password file 0600, loopback ports), a
// host token and the enrollment. Every mount then starts the child, waits until it serves, installs the policy the
// command line names (FILE, else the standalone default: encrypt everything under key `default`, permit every user)
// when it is not the one installed, and stops the child after unmounting. Keys live in that data dir: it is kept.
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { adminCall } from './admin-client'
import { enroll, splitAddr } from '../pem-fs/client'
import { hostIdentity, writeCluster, CLUSTER_FILE } from '../pem-fs/host-config'
import { formatPolicyError, parsePolicy } from '../policy'
import { defaultPolicy } from '../policy/default'
import { USAGE_EXIT } from './common'
import { PemError } from '../wire/errors'

const SPD = path.resolve(__dirname, '../../../bin/spd.js') // from dist/lib/cli
const ADMIN = 'admin'

export interface EmbeddedFiles { base: string, data: string, password: string, host: string, pid: string, log: string, info: string }
interface Info { id: string, listen: string, admin: string }

export function embeddedFiles (configDir: string, dir: string): EmbeddedFiles {
  const base = path.join(configDir, 'embedded', crypto.createHash('sha256').update(path.resolve(dir)).digest('hex').slice(0, 16))
  return { base, data: path.join(base, 'spd'), password: path.join(base, 'admin-password'), host: path.join(base, 'host'), pid: path.join(base, 'spd.pid'), log: path.join(base, 'spd.log'), info: path.join(base, 'embedded.json') }
}

async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const s = net.createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => { const a = s.address() as net.AddressInfo; s.close(() => resolve(a.port)) })
  })
}

async function spdInit (f: EmbeddedFiles): Promise<Info> {
  fs.mkdirSync(f.base, { recursive: true, mode: 0o700 })
  fs.writeFileSync(f.password, crypto.randomBytes(24).toString('base64url') + '\n', { mode: 0o600 })
  const listen = `127.0.0.1:${await freePort()}`
  const admin = `127.0.0.1:${await freePort()}`
  const out = await new Promise<string>((resolve, reject) => execFile(process.execPath, [SPD, 'init', '--data-dir', f.data, '--name', 'embedded', '--listen', listen, '--admin-listen', admin, '--admin-user', ADMIN, '--admin-password-file', f.password, '--json'], { timeout: 20000 },
    (err, stdout, stderr) => err === null ? resolve(stdout) : reject(new PemError('PEM_ERR_BAD_CONFIG', `spd init: ${stderr.trim() || err.message}`))))
  // One member: there is nowhere to send a request it would reject for load, so it never does.
  const cfg = path.join(f.data, 'spd.json')
  fs.writeFileSync(cfg, JSON.stringify({ ...JSON.parse(fs.readFileSync(cfg, 'utf8')), load: { threshold: 1 } }, null, 2) + '\n', { mode: 0o600 })
  const info: Info = { id: (JSON.parse(out) as { id: string }).id, listen, admin }
  fs.writeFileSync(f.info, JSON.stringify(info) + '\n', { mode: 0o600 })
  return info
}

/**
 * Starts `spd start` and resolves once it logs that it serves; its output goes to the log file. It serves within a
 * second here (benchmarks: the embedded mount is usable in 0.7–2 s); the 20 s bound, like the mount daemon's, is for
 * loaded machines: with the whole test suite running on 2 cores it once took over 10 s.
 */
async function spdStart (f: EmbeddedFiles, timeoutMs = 20000): Promise<ChildProcess> {
  const log = fs.createWriteStream(f.log, { flags: 'a', mode: 0o600 })
  const child = spawn(process.execPath, [SPD, 'start', '--data-dir', f.data], { stdio: ['ignore', 'pipe', 'pipe'] })
  child.stderr?.pipe(log)
  await new Promise<void>((resolve, reject) => {
    let text = ''
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new PemError('PEM_ERR_TIMEOUT', `the embedded spd did not serve within ${timeoutMs} ms (log: ${f.log})`)) }, timeoutMs)
    const onData = (c: Buffer): void => {
      log.write(c)
      text += c.toString('utf8')
      if (text.includes('"spd serving"')) { clearTimeout(timer); child.stdout?.off('data', onData); child.stdout?.pipe(log); resolve() }
    }
    child.stdout?.on('data', onData)
    child.once('exit', code => { clearTimeout(timer); reject(new PemError('PEM_ERR_BAD_CONFIG', `the embedded spd exited with ${String(code)} (log: ${f.log})`)) })
  })
  fs.writeFileSync(f.pid, `${child.pid ?? 0}\n`, { mode: 0o600 })
  return child
}

function rejected (lines: string[]): PemError {
  return Object.assign(new PemError('PEM_ERR_BAD_POLICY', lines.join('\n')), { details: lines, exitCode: USAGE_EXIT })
}

/**
 * The text of `pemfs mount DIR --embedded --policy FILE` once FILE is a valid policy with DIR among its guard
 * points (the policy names guard points by the directory the mount shows). Errors name FILE and its lines, and exit
 * with the usage code (2), before anything is started.
 */
export function readEmbeddedPolicy (file: string, dir: string): string {
  let text: string
  try { text = fs.readFileSync(file, 'utf8') } catch (err) {
    throw Object.assign(new PemError('PEM_ERR_BAD_ARGUMENT', `--policy ${file}: ${(err as Error).message}`), { exitCode: USAGE_EXIT })
  }
  const r = parsePolicy(text, file)
  if (!r.ok) throw rejected(r.errors.map(formatPolicyError))
  const guard = path.resolve(dir)
  if (!r.policy.guards.has(guard)) {
    const named = [...r.policy.guards.keys()]
    throw rejected([`${file}: no guard point ${guard}, the directory mounted (its guard points: ${named.length > 0 ? named.join(', ') : 'none'})`])
  }
  return text
}

/** Admin login; the policy `text` unless it is the one installed already (so a mount makes no new version). */
async function installPolicy (f: EmbeddedFiles, info: Info, text: string): Promise<string> {
  const target = { ...splitAddr(info.admin), pin: info.id }
  const password = fs.readFileSync(f.password, 'utf8').trim()
  const login = (await adminCall(target, 'POST', '/v1/login', { user: ADMIN, password })).value as { token: string }
  const current = (await adminCall(target, 'GET', '/v1/policy', undefined, login.token)).value as { text: string | null }
  if (current.text !== text) await adminCall(target, 'PUT', '/v1/policy', { text }, login.token)
  return login.token
}

/** A host token and the enrollment of this host in f.host. */
async function enrollHere (f: EmbeddedFiles, info: Info, token: string): Promise<void> {
  const target = { ...splitAddr(info.admin), pin: info.id }
  const name = `${os.hostname()}-embedded`
  const t = (await adminCall(target, 'POST', '/v1/hosts', { name }, token)).value as { token: string }
  const reply = await enroll(hostIdentity(f.host), [info.listen], t.token, name)
  writeCluster(f.host, { host: reply.host, name, servers: reply.servers, enrolled: new Date().toISOString() })
}

const alive = (pid: number): boolean => { try { process.kill(pid, 0); return true } catch { return false } }

/** Stops an embedded spd left running by a mount that died (its pid file says so). */
export async function stopStale (f: EmbeddedFiles, graceMs = 5000): Promise<void> {
  let pid = 0
  try { pid = Number(fs.readFileSync(f.pid, 'utf8').trim()) } catch { return }
  if (pid > 0 && alive(pid) && fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(f.data)) {
    process.kill(pid, 'SIGTERM')
    const until = Date.now() + graceMs
    while (alive(pid) && Date.now() < until) await new Promise(resolve => setTimeout(resolve, 50))
    if (alive(pid)) process.kill(pid, 'SIGKILL')
  }
  fs.rmSync(f.pid, { force: true })
}

export interface Embedded { hostDir: string, stop: () => Promise<void> }

/**
 * Brings the embedded spd of DIR up (initialising and enrolling on first use) with `policy` installed (text from
 * readEmbeddedPolicy; undefined: the standalone default for DIR); stop() ends it.
 */
export async function startEmbedded (configDir: string, dir: string, policy?: string): Promise<Embedded> {
  const f = embeddedFiles(configDir, dir)
  await stopStale(f)
  if (!fs.existsSync(f.info)) fs.rmSync(f.data, { recursive: true, force: true }) // an init that did not finish
  const info: Info = fs.existsSync(f.info) ? JSON.parse(fs.readFileSync(f.info, 'utf8')) as Info : await spdInit(f)
  const child = await spdStart(f)
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise(resolve => child.once('exit', resolve))
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
      await exited
      clearTimeout(timer)
    }
    fs.rmSync(f.pid, { force: true })
  }
  try {
    const token = await installPolicy(f, info, policy ?? defaultPolicy({ guards: [path.resolve(dir)] }))
    if (!fs.existsSync(path.join(f.host, CLUSTER_FILE))) await enrollHere(f, info, token)
  } catch (err) { await stop(); throw err }
  return { hostDir: f.host, stop }
}
