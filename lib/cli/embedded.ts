// `pemfs mount DIR --embedded [--policy FILE]`: a private single-member spd for one guard point, as a child of the
// mount. First use: `spd init` under CONFIG/embedded/ID/ (generated admin password file 0600, loopback ports), a
// host token and the enrollment. Every mount then starts the child, waits until it serves, installs the policy the
// command line names (FILE, else the standalone default: encrypt everything under key `default`, permit every user)
// when it is not the one installed, and stops the child after unmounting. Keys live in that data dir and, wrapped
// under the recovery key, in DIR/.pemfs-embedded (embedded-store.ts), which names the store: ID is its random id.
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { adminLogin } from './admin-auth'
import { adminCall } from './admin-client'
import { listenPort } from '../channel/listen-port'
import { enroll, splitAddr } from '../pem-fs/client'
import { isMounted } from '../pem-fs/daemon'
import { hostIdentity, writeCluster, CLUSTER_FILE } from '../pem-fs/host-config'
import { formatPolicyError, parsePolicy } from '../policy'
import { defaultPolicy } from '../policy/default'
import { readSecret, USAGE_EXIT } from './common'
import { PemError } from '../wire/errors'
import { FILE_MAGIC } from '../wire/file-format'
import { encodeKeySet, readKeySet, sameKeySet, type KeySet } from '../server/key-set'
import { formatRecoveryKey, newRecoveryKey, newStoreId, openStoreKeys, parseRecoveryKey, readStoreFile, STORE_FILE, writeStoreFile } from './embedded-store'

const SPD = path.resolve(__dirname, '../../../bin/spd.js') // from dist/lib/cli
const ADMIN = 'admin'

export interface EmbeddedFiles { base: string, guard: string, data: string, password: string, recoveryKey: string, host: string, pid: string, log: string, info: string }
interface Info { id: string, listen: string, admin: string }

/** The files of the embedded store `store` (the id DIR/.pemfs-embedded names). */
export function storeFiles (configDir: string, store: string): EmbeddedFiles {
  const base = path.join(configDir, 'embedded', store)
  return { base, guard: path.join(base, 'guard'), data: path.join(base, 'spd'), password: path.join(base, 'admin-password'), recoveryKey: path.join(base, 'recovery-key'), host: path.join(base, 'host'), pid: path.join(base, 'spd.pid'), log: path.join(base, 'spd.log'), info: path.join(base, 'embedded.json') }
}

/** The files of DIR's embedded store: the one its store file names (before the first mount: a path-named one that holds nothing). */
export function embeddedFiles (configDir: string, dir: string): EmbeddedFiles {
  let named: string | undefined
  // mounted: the mount hides its store file (native/fuse/reserved.h), or its policy denies it
  try { named = readStoreFile(dir)?.store ?? (isMounted(dir) ? mountedStore(configDir, dir) : undefined) } catch { named = mountedStore(configDir, dir) }
  return storeFiles(configDir, named ?? `unset-${crypto.createHash('sha256').update(path.resolve(dir)).digest('hex').slice(0, 16)}`)
}

/** The store whose last mount was on `dir` (its `guard` file, written by startEmbedded). */
function mountedStore (configDir: string, dir: string): string | undefined {
  let ids: string[] = []
  try { ids = fs.readdirSync(path.join(configDir, 'embedded')) } catch { return undefined }
  return ids.find(id => { try { return fs.readFileSync(storeFiles(configDir, id).guard, 'utf8').trim() === path.resolve(dir) } catch { return false } })
}

async function spdInit (f: EmbeddedFiles, keys: KeySet): Promise<Info> {
  fs.mkdirSync(f.base, { recursive: true, mode: 0o700 })
  fs.writeFileSync(f.password, crypto.randomBytes(24).toString('base64url') + '\n', { mode: 0o600 })
  const listen = `127.0.0.1:${await listenPort()}`
  const admin = `127.0.0.1:${await listenPort()}`
  // The key set goes through standard input: key bytes never touch argv or a file in the clear.
  const out = await new Promise<string>((resolve, reject) => {
    const c = execFile(process.execPath, [SPD, 'init', '--data-dir', f.data, '--name', 'embedded', '--listen', listen, '--admin-listen', admin, '--admin-user', ADMIN, '--admin-password-file', f.password, '--import-keys', '-', '--json'], { timeout: 20000 },
      (err, stdout, stderr) => err === null ? resolve(stdout) : reject(new PemError('PEM_ERR_BAD_CONFIG', `spd init: ${stderr.trim() || err.message}`)))
    c.stdin?.end(encodeKeySet(keys))
  })
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
  const login = await adminLogin(target, ADMIN, password)
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

/** The first encrypted pemfs file under `dir` (at most `limit` entries looked at), or undefined. */
function findEncryptedFile (dir: string, limit = 10000): string | undefined {
  const queue = [dir]
  const head = Buffer.alloc(4)
  let seen = 0
  while (queue.length > 0 && seen < limit) {
    const d = queue.shift() as string
    let entries: fs.Dirent[]
    try { entries = fs.readdirSync(d, { withFileTypes: true }) } catch { continue }
    for (const e of entries) {
      if (++seen > limit) break
      const p = path.join(d, e.name)
      if (e.isDirectory()) queue.push(p)
      else if (e.isFile()) {
        try {
          const fd = fs.openSync(p, 'r')
          try { if (fs.readSync(fd, head, 0, 4, 0) === 4 && head.equals(FILE_MAGIC)) return p } finally { fs.closeSync(fd) }
        } catch { /* unreadable: not ours to judge */ }
      }
    }
  }
  return undefined
}

/** Where a recovery key comes from: PEMFS_RECOVERY_KEY, a file, or a prompt on a terminal. */
export async function readRecoveryKey (file: string | undefined): Promise<Buffer> {
  if (file !== undefined) {
    let text: string
    try { text = fs.readFileSync(file, 'utf8') } catch (err) { throw new PemError('PEM_ERR_BAD_ARGUMENT', `--recovery-key-file ${file}: ${(err as Error).message}`) }
    return parseRecoveryKey(text, `--recovery-key-file ${file}`)
  }
  const env = process.env.PEMFS_RECOVERY_KEY
  if (env !== undefined && env !== '') return parseRecoveryKey(env, 'PEMFS_RECOVERY_KEY')
  if (process.stdin.isTTY !== true) throw new PemError('PEM_ERR_BAD_ARGUMENT', '--recover needs the recovery key: give --recovery-key-file FILE or set PEMFS_RECOVERY_KEY (standard input is not a terminal to ask on)')
  return parseRecoveryKey(await readSecret(undefined, 'recovery key: '), 'the recovery key typed')
}

export interface Prepared { store: string, created?: { recoveryKey: string, storeFile: string, base: string } }

/**
 * Finds (or makes) DIR's embedded store before anything starts. DIR/.pemfs-embedded names it; this machine has it:
 * done. It names a store this machine lacks: refused, unless `recover` gives the recovery key, which rebuilds the
 * store from the file's keys (a wrong key changes nothing). No store file: refused when DIR holds encrypted pemfs
 * files (their keys are elsewhere); otherwise a new store with a fresh key `default`, its store file, and the
 * recovery key returned once for the caller to print. `backing` is where the files are (DIR itself when guarded in place).
 */
export async function prepareEmbedded (configDir: string, backing: string, recover?: () => Promise<Buffer>): Promise<Prepared> {
  const storeFile = path.join(backing, STORE_FILE)
  const named = readStoreFile(backing)
  if (named !== undefined) {
    const f = storeFiles(configDir, named.store)
    if (fs.existsSync(f.info)) return { store: named.store }
    if (fs.existsSync(f.recoveryKey)) { // a first mount whose spd init did not finish: this machine has the recovery key
      const keys = await openStoreKeys(named, parseRecoveryKey(fs.readFileSync(f.recoveryKey, 'utf8'), f.recoveryKey), storeFile)
      fs.rmSync(f.data, { recursive: true, force: true })
      await spdInit(f, keys)
      return { store: named.store }
    }
    if (recover === undefined) {
      throw new PemError('PEM_ERR_NO_KEY', `${storeFile} names embedded store ${named.store}, which this machine does not have (${f.base}): the keys of ${backing} are in that file, wrapped under its recovery key. Mount with --recover (the recovery key printed at its first mount, or \`pemfs embedded export-key ${backing}\` on the machine that has the store)`)
    }
    const recoveryKey = await recover()
    const keys = await openStoreKeys(named, recoveryKey, storeFile)
    fs.rmSync(f.base, { recursive: true, force: true }) // an earlier rebuild that did not finish
    await spdInit(f, keys)
    fs.writeFileSync(f.recoveryKey, formatRecoveryKey(recoveryKey) + '\n', { mode: 0o600 })
    return { store: named.store }
  }
  if (recover !== undefined) throw new PemError('PEM_ERR_NOT_FOUND', `--recover: ${backing} has no ${STORE_FILE} to recover from`)
  const sealed = findEncryptedFile(backing)
  if (sealed !== undefined) {
    throw new PemError('PEM_ERR_NO_KEY', `${backing} holds encrypted pemfs files (${sealed}) but no ${STORE_FILE}: their keys are not here. Put back the ${STORE_FILE} that came with them (then mount with --recover on a new machine), or mount them with the cluster that wrote them; refusing to make a new key store`)
  }
  const store = newStoreId()
  const f = storeFiles(configDir, store)
  const recoveryKey = newRecoveryKey()
  const keys: KeySet = { default: [{ version: 1, material: crypto.randomBytes(32), created: new Date().toISOString() }] }
  fs.mkdirSync(f.base, { recursive: true, mode: 0o700 })
  fs.writeFileSync(f.recoveryKey, recoveryKey + '\n', { mode: 0o600 })
  await writeStoreFile(backing, store, new Date().toISOString(), keys, parseRecoveryKey(recoveryKey, f.recoveryKey))
  await spdInit(f, keys)
  return { store, created: { recoveryKey, storeFile, base: f.base } }
}

/** The words printed once, at the first mount of a directory. */
export function firstUseNotice (p: Prepared): string {
  if (p.created === undefined) return ''
  return [
    `pemfs: new embedded key store ${p.store}: ${p.created.base} (keep it; it is this machine's copy of the keys)`,
    `pemfs: the keys also travel with the data in ${p.created.storeFile}, wrapped under this recovery key:`,
    '',
    `    ${p.created.recoveryKey}`,
    '',
    'pemfs: write it down and keep it away from the data. Without it and without the store above, the files cannot be',
    `pemfs: read. On another machine: pemfs mount DIR --embedded --recover. Shown again by: pemfs embedded export-key DIR`,
    ''
  ].join('\n')
}

/** Rewrites the store file when the store's keys changed (a policy that named a new key, a rotation). */
async function syncStoreFile (f: EmbeddedFiles, backing: string): Promise<void> {
  const named = readStoreFile(backing)
  if (named === undefined || !fs.existsSync(f.recoveryKey)) return
  const recoveryKey = parseRecoveryKey(fs.readFileSync(f.recoveryKey, 'utf8'), f.recoveryKey)
  const keys = readKeySet(f.data)
  if (!sameKeySet(await openStoreKeys(named, recoveryKey, path.join(backing, STORE_FILE)), keys)) await writeStoreFile(backing, named.store, named.created, keys, recoveryKey)
}

/**
 * Brings the embedded spd of DIR up (initialising and enrolling on first use) with `policy` installed (text from
 * readEmbeddedPolicy; undefined: the standalone default for DIR, sealing on this host or, with placement
 * 'appliance', in the private spd); stop() ends it.
 */
export async function startEmbedded (configDir: string, dir: string, backing: string, policy?: string, placement: 'host' | 'appliance' = 'host'): Promise<Embedded> {
  const f = storeFiles(configDir, (await prepareEmbedded(configDir, backing)).store)
  await stopStale(f)
  const info = JSON.parse(fs.readFileSync(f.info, 'utf8')) as Info
  fs.writeFileSync(f.guard, path.resolve(dir) + '\n', { mode: 0o600 })
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
    await syncStoreFile(f, backing) // after a key rotation through the admin API while mounted
  }
  try {
    const token = await installPolicy(f, info, policy ?? defaultPolicy({ guards: [path.resolve(dir)], hide: [`/${STORE_FILE}`, `/${STORE_FILE}.tmp`], placement }))
    if (!fs.existsSync(path.join(f.host, CLUSTER_FILE))) await enrollHere(f, info, token)
    await syncStoreFile(f, backing)
  } catch (err) { await stop(); throw err }
  return { hostDir: f.host, stop }
}
