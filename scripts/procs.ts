// Drives the real programs for tests, benchmarks and the demo: `spd init/start`, `spctl`, `pemfs`, in temp dirs on loopback.
// Every process started here is killed by stopAll() (call it from test.after.always).
import { spawn, execFile, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { listenPort } from '../lib/channel/listen-port'

export const ROOT = path.resolve(__dirname, '../..') // from dist/scripts
const BIN = (name: string): string => path.join(ROOT, 'bin', `${name}.js`)
const started = new Set<ChildProcess>()

export function tempDir (prefix: string): string { return fs.mkdtempSync(path.join(os.tmpdir(), `pem-${prefix}-`)) }


export interface RunResult { code: number, stdout: string, stderr: string }

/** Runs one of our CLIs to completion (never the FUSE-serving process: this is a separate child). */
export async function cli (name: 'spd' | 'spctl' | 'pemfs', args: string[], env: Record<string, string> = {}, timeoutMs = 20000): Promise<RunResult> {
  return await new Promise(resolve => {
    execFile(process.execPath, [BIN(name), ...args], { env: { ...process.env, ...env }, timeout: timeoutMs }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1
      resolve({ code, stdout, stderr })
    })
  })
}

export interface Spd {
  dir: string
  name: string
  listen: string
  admin: string
  cluster: string
  passwordFile: string
  proc: ChildProcess | null
  logs: string[]
}

/**
 * `spd init` with fixed free loopback ports and a password file. The machine's CPU is shared with the test runner,
 * so by default the load threshold is 1 (never over): tests of overload set their own `load`.
 */
export async function initSpd (name = 'spd-a', extra: Record<string, unknown> = { load: { threshold: 1 } }): Promise<Spd> {
  const dir = path.join(tempDir(name), 'data')
  const passwordFile = path.join(path.dirname(dir), 'password')
  fs.writeFileSync(passwordFile, 'correct horse battery\n', { mode: 0o600 })
  const listen = `127.0.0.1:${await listenPort()}`
  const admin = `127.0.0.1:${await listenPort()}`
  const cluster = `127.0.0.1:${await listenPort()}`
  const r = await cli('spd', ['init', '--data-dir', dir, '--name', name, '--listen', listen, '--cluster-listen', cluster, '--admin-listen', admin, '--admin-password-file', passwordFile, '--json'])
  if (r.code !== 0) throw new Error(`spd init failed: ${r.stderr}`)
  if (Object.keys(extra).length > 0) {
    const file = path.join(dir, 'spd.json')
    fs.writeFileSync(file, JSON.stringify({ ...JSON.parse(fs.readFileSync(file, 'utf8')), ...extra }, null, 2))
  }
  return { dir, name, listen, admin, cluster, passwordFile, proc: null, logs: [] }
}

/** `spd start` in the background; resolves once it logs that it serves. */
export async function startSpd (s: Spd, timeoutMs = 30000, env: Record<string, string> = {}): Promise<void> {
  const proc = spawn(process.execPath, [BIN('spd'), 'start', '--data-dir', s.dir], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } })
  started.add(proc)
  s.proc = proc
  proc.on('exit', () => started.delete(proc))
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`spd ${s.name} did not start: ${s.logs.join('\n')}`)), timeoutMs)
    let buf = ''
    const onLine = (line: string): void => {
      s.logs.push(line)
      if (line.includes('"spd serving"')) { clearTimeout(timer); resolve() }
    }
    proc.stdout?.on('data', (c: Buffer) => {
      buf += c.toString('utf8')
      let i: number
      while ((i = buf.indexOf('\n')) >= 0) { onLine(buf.slice(0, i)); buf = buf.slice(i + 1) }
    })
    proc.stderr?.on('data', (c: Buffer) => s.logs.push(c.toString('utf8')))
    proc.on('exit', code => { clearTimeout(timer); reject(new Error(`spd ${s.name} exited with ${String(code)}: ${s.logs.join('\n')}`)) })
  })
}

export async function stopSpd (s: Spd, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
  const p = s.proc
  if (p === null || p.exitCode !== null) return p?.exitCode ?? null
  const exited = new Promise<number | null>(resolve => p.once('exit', code => resolve(code)))
  p.kill(signal)
  const timer = setTimeout(() => p.kill('SIGKILL'), 5000)
  const code = await exited
  clearTimeout(timer)
  s.proc = null
  return code
}

export function stopAll (): void {
  for (const p of started) p.kill('SIGKILL')
  started.clear()
}

/** spctl against a member, with its own session file. */
export function spctlFor (s: Spd): (args: string[]) => Promise<RunResult> {
  const env = { SPCTL_CONFIG: path.join(path.dirname(s.dir), 'spctl.json'), SPCTL_ENDPOINT: `https://${s.admin}` }
  return async args => await cli('spctl', args, env)
}

export async function loginSpctl (s: Spd): Promise<(args: string[]) => Promise<RunResult>> {
  const spctl = spctlFor(s)
  const r = await spctl(['login', '--user', 'admin', '--password-file', s.passwordFile])
  if (r.code !== 0) throw new Error(`spctl login failed: ${r.stderr}`)
  return spctl
}

export function writeFile (dir: string, name: string, text: string): string {
  const file = path.join(dir, name)
  fs.writeFileSync(file, text)
  return file
}
