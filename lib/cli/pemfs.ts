// pemfs: the host side — enroll this host, mount/unmount guard points, their status, and one-off decisions (DESIGN §5).
import { Option } from 'commander'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { attrsOf } from '../pem-fs/attrs'
import { ClusterClient, enroll } from '../pem-fs/client'
import { SELECTIONS, type SelectionName } from '../pem-fs/selection'
import { metricsAddress, pemfsMetricsText, serveMetrics, writeMetricsFile } from '../pem-fs/metrics'
import { Conversions } from '../pem-fs/conversions'
import { holdersOf, isMounted, pemfsMounts, readControl, runFiles, serveControl, signalReady, startDaemon, statusOf, stopDaemon } from '../pem-fs/daemon'
import { KeyCensus } from '../pem-fs/key-census'
import { mountGuard } from '../pem-fs/mount'
import { logGuard, pemfsLog } from '../pem-fs/log'
import { OP_CLASSES, type OpLatency } from '../native/binding'
import { manageHeap } from '../native/memory'
import { CLUSTER_FILE, defaultConfigDir, HOST_KEY_FILE, hostIdentity, readCluster, writeCluster } from '../pem-fs/host-config'
import { PemError } from '../wire/errors'
import { isAction, ACTIONS } from '../wire/packets'
import { addConvertCommands } from './convert'
import { keepServingOnBrokenPipe, newProgram, parseProgram, printObject, printRows, run } from './common'
import { lockDir, lockHolder } from './dir-lock'
import { embeddedFiles, firstUseNotice, prepareEmbedded, readEmbeddedPolicy, readRecoveryKey, startEmbedded, stopStale, type Embedded } from './embedded'
import { readStoreFile, STORE_FILE } from './embedded-store'

// FUSE requests wait on the libuv pool for backing-file I/O: give it more than the default 4 threads.
process.env.UV_THREADPOOL_SIZE ??= '16'

const program = newProgram('pemfs', 'Policy enforcement module: guards data directories with the cluster\'s policy and encryption')

program.command('enroll')
  .description('enroll this host with the cluster using a one-time token from `spctl host add`')
  .requiredOption('--cluster <addrs>', 'HOST:PORT of one or more servers, comma separated')
  .requiredOption('--token <token>', 'one-time enrollment token')
  .option('--config-dir <dir>', 'host config directory', defaultConfigDir())
  .option('--name <name>', 'host name sent with the request (the cluster records the name given to spctl host add)', os.hostname())
  .option('--json', 'print JSON')
  .action((o: { cluster: string, token: string, configDir: string, name: string, json?: boolean }) => run(async () => {
    const dir = path.resolve(o.configDir)
    const file = path.join(dir, CLUSTER_FILE)
    if (fs.existsSync(file)) {
      const c = readCluster(dir)
      throw new PemError('PEM_ERR_BUSY', `this host is already enrolled as ${c.name} (host ${c.host.slice(0, 16)}…, ${file}); it needs no token. To enroll it anew: spctl host remove ${c.name}, then move ${file} aside`)
    }
    const identity = hostIdentity(dir)
    let reply
    try {
      reply = await enroll(identity, o.cluster.split(',').map(s => s.trim()).filter(Boolean), o.token, o.name)
    } catch (err) {
      // The cluster knows this key already (its cluster.json was removed): it only takes it on the session protocol.
      if (/must use the session protocol/.test((err as Error).message)) throw new PemError('PEM_ERR_BUSY', `the cluster has this host's key (${path.join(dir, HOST_KEY_FILE)}) enrolled already (host ${identity.id.slice(0, 16)}…) but ${file} is missing: spctl host remove ${identity.id.slice(0, 16)} first, then enroll with a new token`)
      throw err
    }
    const name = reply.name ?? o.name
    writeCluster(dir, { host: reply.host, name, servers: reply.servers, enrolled: new Date().toISOString() })
    printObject({ host: reply.host, name, servers: reply.servers.map(s => `${s.name}@${s.addr}`).join(', '), configDir: dir }, o.json === true)
  }))

program.command('check <path>')
  .description('ask the cluster what it decides for this process doing ACTION on PATH inside a guard point')
  .option('--guard <dir>', 'the guard point (host directory the policy protects); default: the pemfs mount PATH is in')
  .option('--action <action>', `one of: ${ACTIONS.join(', ')}`, 'read')
  .option('--config-dir <dir>', 'host config directory', defaultConfigDir())
  .option('--json', 'print JSON')
  .action((p: string, o: { guard?: string, action: string, configDir: string, json?: boolean }) => run(async () => {
    if (!isAction(o.action)) throw new PemError('PEM_ERR_BAD_ARGUMENT', `--action must be one of: ${ACTIONS.join(', ')}`)
    const abs = path.resolve(p)
    const guard = o.guard !== undefined ? path.resolve(o.guard) : guardOf(abs)
    if (abs !== guard && !abs.startsWith(guard + '/')) throw new PemError('PEM_ERR_BAD_ARGUMENT', `${abs} is not inside the guard point ${guard}`)
    const dir = path.resolve(o.configDir)
    const client = new ClusterClient(hostIdentity(dir), readCluster(dir).servers)
    try {
      const attrs = attrsOf(process.pid, process.getuid?.() ?? 0, process.getgid?.() ?? 0)
      const d = await client.decide({ guard, path: abs.slice(guard.length) || '/', action: o.action, attrs })
      printObject({ decision: d.ok ? 'permit' : 'deny', rule: d.rule, key: d.key, bypass: d.bypass, compression: d.compression, pv: d.pv, weight: d.weight, load: d.load.total, ttlMs: d.ttl, server: d.server }, o.json === true)
      if (!d.ok) process.exitCode = 3
    } finally { client.close() }
  }))

/** The guard point of the innermost pemfs mount that holds `abs` (from the mount table, not from the mount itself). */
function guardOf (abs: string): string {
  const guard = pemfsMounts().filter(m => abs === m || abs.startsWith(m + '/')).sort((a, b) => b.length - a.length)[0]
  if (guard === undefined) throw new PemError('PEM_ERR_BAD_ARGUMENT', `${abs} is not inside a pemfs mount: give its guard point with --guard DIR`)
  return guard
}

program.command('servers')
  .description('ping every server this host knows and print its state, load, weight, latency and policy version')
  .option('--config-dir <dir>', 'host config directory', defaultConfigDir())
  .option('--json', 'print JSON')
  .action((o: { configDir: string, json?: boolean }) => run(async () => {
    const dir = path.resolve(o.configDir)
    const client = new ClusterClient(hostIdentity(dir), readCluster(dir).servers)
    try {
      const rows = []
      for (const s of client.servers) {
        const t0 = process.hrtime.bigint()
        try {
          const r = await client.ping(s)
          rows.push({ name: s.entry.name, addr: s.entry.addr, state: 'up', load: r.load.total, weight: r.weight, latencyMs: Math.round(Number(process.hrtime.bigint() - t0) / 1e4) / 100, pv: r.pv })
        } catch (err) {
          rows.push({ name: s.entry.name, addr: s.entry.addr, state: `down (${PemError.from(err).code})`, load: null, weight: null, latencyMs: null, pv: null })
        }
      }
      printRows(rows, o.json === true)
    } finally { client.close() }
  }))

interface MountFlags { backing?: string, foreground?: boolean, force?: boolean, embedded?: boolean, recover?: boolean, recoveryKeyFile?: string, policy?: string, placement?: 'host' | 'appliance', configDir: string, timeoutMs: string, selection: SelectionName, metricsFile?: string, metricsListen?: string, json?: boolean }

/** --policy FILE's text for the embedded spd (checked before anything starts), or undefined for the default. */
function embeddedPolicy (dir: string, o: MountFlags): string | undefined {
  if (o.placement !== undefined && (o.embedded !== true || o.policy !== undefined)) throw new PemError('PEM_ERR_BAD_ARGUMENT', '--placement goes with --embedded and its default policy (a policy file says placement per rule)')
  if (o.policy === undefined) return undefined
  if (o.embedded !== true) throw new PemError('PEM_ERR_BAD_ARGUMENT', '--policy needs --embedded (a cluster\'s policy is set with spctl policy apply)')
  return readEmbeddedPolicy(path.resolve(o.policy), dir)
}

/** The embedded store of DIR found, rebuilt (--recover) or made before a daemon starts; a new one's notice on stderr. */
async function prepareEmbeddedMount (dir: string, o: MountFlags): Promise<void> {
  if (o.embedded !== true) {
    if (o.recover === true || o.recoveryKeyFile !== undefined) throw new PemError('PEM_ERR_BAD_ARGUMENT', '--recover needs --embedded')
    return
  }
  const recover = o.recover === true ? async () => await readRecoveryKey(o.recoveryKeyFile) : undefined
  process.stderr.write(firstUseNotice(await prepareEmbedded(path.resolve(o.configDir), path.resolve(o.backing ?? dir), recover)))
}

async function mountForeground (dir: string, o: MountFlags): Promise<void> {
  const stopHeap = manageHeap() // before the FUSE and libuv threads start (lib/native/memory.ts)
  const configDir = path.resolve(o.configDir)
  const files = runFiles(configDir, dir)
  logGuard(dir)
  let m
  let embedded: Embedded | undefined
  try {
    const policy = embeddedPolicy(dir, o)
    await lockDir('pemfs', dir, 'a pemfs daemon guards this directory')
    await prepareEmbeddedMount(dir, o)
    if (o.embedded === true) embedded = await startEmbedded(configDir, dir, path.resolve(o.backing ?? dir), policy, o.placement)
    m = await mountGuard({ dir, backing: o.backing, configDir: embedded?.hostDir ?? configDir, timeoutMs: Number(o.timeoutMs), selection: o.selection, force: o.force })
  } catch (err) {
    await embedded?.stop()
    signalReady(`error: ${PemError.from(err).message}`)
    throw err
  }
  const mounted = m
  keepServingOnBrokenPipe()
  process.umask(0) // the session gives each worker the caller's umask; nothing else here creates files for callers
  fs.writeFileSync(files.pid, `${process.pid}\n`, { mode: 0o600 })
  const conversions = new Conversions(async (pid, target) => {
    const rel = path.relative(mounted.dir, target)
    if (rel.startsWith('..') || path.isAbsolute(rel)) throw new PemError('PEM_ERR_BAD_ARGUMENT', `${target} is not under ${mounted.dir}`)
    const ids = (field: string): number => Number(new RegExp(`^${field}:\\s*(\\d+)`, 'm').exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? -1)
    await mounted.guard.allow({ pid, uid: ids('Uid'), gid: ids('Gid') }, `/${rel}`, 'convert') // decided and audited by spd
  }, pids => { if (mounted.session.mounted) mounted.session.reservedPids(pids) }, () => census.scanSoon())
  // Key versions in use, as the cluster's `spctl key list` shows them and `spctl key retire` checks (key-census.ts).
  const census = new KeyCensus(`/proc/self/fd/${mounted.backingFd}`, mounted.client)
  mounted.client.onKeysDrop(drop => { if (drop.reason === 'key-rotate') census.scanSoon() })
  census.start()
  const status = (): Record<string, unknown> => ({ ...statusOf(mounted), ...conversions.status(), ...census.status() })
  const control = serveControl(files.sock, status)
  const converting = conversions.serve(files.convertSock)
  const stopMetrics = o.metricsFile === undefined ? () => {} : writeMetricsFile(path.resolve(o.metricsFile), status)
  let endpoint: { close: () => void } | undefined
  try {
    if (o.metricsListen !== undefined) endpoint = await serveMetrics(o.metricsListen, status)
  } catch (err) {
    stopMetrics()
    control.close()
    converting.close()
    census.close()
    await mounted.unmount()
    await embedded?.stop()
    fs.rmSync(files.pid, { force: true }); fs.rmSync(files.sock, { force: true })
    signalReady(`error: ${PemError.from(err).message}`)
    throw err
  }
  const keepAlive = setInterval(() => {}, 1 << 30) // the session's threads do not keep the event loop alive
  let stopping = false
  const stop = (signal: string): void => {
    if (stopping) return
    stopping = true
    pemfsLog().info({ signal }, 'unmounting')
    control.close()
    converting.close()
    census.close()
    stopMetrics()
    endpoint?.close()
    clearInterval(keepAlive)
    stopHeap()
    mounted.unmount().then(async () => await embedded?.stop()).finally(() => {
      for (const f of [files.pid, files.sock, files.convertSock]) fs.rmSync(f, { force: true })
      process.exit(0)
    })
  }
  process.on('SIGTERM', () => stop('SIGTERM'))
  process.on('SIGINT', () => stop('SIGINT'))
  pemfsLog().info({ backing: mounted.backing, pid: process.pid }, 'pemfs guarding')
  signalReady('ready')
}

program.command('mount <dir>')
  .description('guard DIR in place (or --backing DIR under it): every operation is decided by the cluster')
  .option('--backing <dir>', 'the directory whose files are served (default: DIR itself, guarded in place)')
  .option('--foreground', 'stay in the foreground instead of starting a daemon')
  .option('--force', 'mount even when the cluster\'s policy has no guard point DIR (every access is then denied; a warning in the log)')
  .option('--embedded', 'run a private single-member spd under the config dir (its policy: --policy FILE, else encrypt everything and permit every local user)')
  .option('--recover', `with --embedded: rebuild the embedded store this machine lacks from DIR/${STORE_FILE} with its recovery key (from --recovery-key-file, PEMFS_RECOVERY_KEY, or asked on a terminal)`)
  .option('--recovery-key-file <file>', 'with --recover: read the recovery key from FILE')
  .option('--policy <file>', 'with --embedded: install this policy file (YAML, docs/POLICY.md; it must name DIR as a guard point) instead of the default; every mount installs the policy its command line names, so a mount without --policy goes back to the default')
  .addOption(new Option('--placement <where>', 'with --embedded and the default policy: seal blocks on this host (keys leased to it, held in locked memory) or in the private spd (the appliance way)').choices(['host', 'appliance']))
  .option('--config-dir <dir>', 'host config directory', defaultConfigDir())
  .option('--timeout-ms <ms>', 'request timeout per server', '2000')
  .addOption(new Option('--selection <strategy>', 'how the host picks a server for each request').choices([...SELECTIONS]).default('default'))
  .option('--metrics-file <file>', 'write Prometheus metrics of the mount to FILE every 5 s (node_exporter textfile collector)')
  .option('--metrics-listen <host:port>', 'also serve them as GET /metrics on this loopback address (e.g. 127.0.0.1:9560)')
  .option('--json', 'print JSON')
  .action((d: string, o: MountFlags) => run(async () => {
    const dir = path.resolve(d)
    if (o.foreground === true) { await mountForeground(dir, o); return }
    embeddedPolicy(dir, o) // a bad file is refused here, before a daemon starts
    if (o.metricsListen !== undefined) metricsAddress(o.metricsListen)
    const configDir = path.resolve(o.configDir)
    const files = runFiles(configDir, dir)
    const holder = await lockHolder('pemfs', dir)
    if (holder !== null) throw new PemError('PEM_ERR_BUSY', `${dir} is guarded already, by pemfs pid ${holder}: pemfs unmount ${dir} first`)
    if (isMounted(dir)) throw new PemError('PEM_ERR_BUSY', `${dir} is already mounted (its daemon is gone: pemfs unmount ${dir})`)
    await prepareEmbeddedMount(dir, o) // refusals and the recovery key prompt here, on the user's terminal
    const args = ['mount', dir, '--foreground', '--config-dir', configDir, '--timeout-ms', o.timeoutMs, '--selection', o.selection, ...(o.backing !== undefined ? ['--backing', path.resolve(o.backing)] : []), ...(o.force === true ? ['--force'] : []), ...(o.embedded === true ? ['--embedded'] : []), ...(o.policy !== undefined ? ['--policy', path.resolve(o.policy)] : []), ...(o.placement !== undefined ? ['--placement', o.placement] : []),
      ...(o.metricsFile !== undefined ? ['--metrics-file', path.resolve(o.metricsFile)] : []), ...(o.metricsListen !== undefined ? ['--metrics-listen', o.metricsListen] : [])]
    const pid = await startDaemon(process.argv[1], args, files.log)
    printObject({ mounted: dir, backing: path.resolve(o.backing ?? dir), pid, log: files.log }, o.json === true)
  }))

program.command('unmount <dir>')
  .description('stop the pemfs daemon guarding DIR and unmount it; refused while a process uses the mount (unless --lazy)')
  .option('--lazy', 'detach the mount even while it is in use: it goes away once the last process lets go')
  .option('--config-dir <dir>', 'host config directory', defaultConfigDir())
  .option('--json', 'print JSON')
  .action((d: string, o: { lazy?: boolean, configDir: string, json?: boolean }) => run(async () => {
    const dir = path.resolve(d)
    const configDir = path.resolve(o.configDir)
    const daemon = await lockHolder('pemfs', dir)
    const files = runFiles(configDir, dir)
    // A daemon that died leaves its pid file; its mount is gone already when the session's watcher detached it.
    if (!isMounted(dir) && daemon === null && !fs.existsSync(files.pid)) {
      await stopStale(embeddedFiles(configDir, dir)) // a dead mount may have left its embedded spd
      throw new PemError('PEM_ERR_NOT_FOUND', `${dir} is not a pemfs mount: nothing to unmount`)
    }
    const holders = o.lazy === true ? [] : holdersOf(dir, new Set([process.pid, ...(daemon === null ? [] : [daemon])]))
    if (holders.length > 0) {
      const who = holders.slice(0, 3).map(h => `pid ${h.pid} (${h.command}) has ${h.what}`).join('; ')
      throw new PemError('PEM_ERR_BUSY', `${dir} is busy: ${who}${holders.length > 3 ? `; and ${holders.length - 3} more` : ''}. Stop them, or detach it anyway with --lazy`)
    }
    const r = await stopDaemon(files, dir, daemon === 0 ? null : daemon)
    await stopStale(embeddedFiles(configDir, dir)) // only when a dead mount left its embedded spd
    printObject({ unmounted: dir, daemon: r.pid, forced: r.detached }, o.json === true)
  }))

const embeddedCmd = program.command('embedded').description('the private key store of `pemfs mount --embedded`')
embeddedCmd.command('export-key <dir>')
  .description(`print the recovery key of DIR's embedded store (it opens DIR/${STORE_FILE} on another machine: pemfs mount DIR --embedded --recover)`)
  .option('--config-dir <dir>', 'host config directory', defaultConfigDir())
  .option('--json', 'print JSON')
  .action((d: string, o: { configDir: string, json?: boolean }) => run(async () => {
    const dir = path.resolve(d)
    const named = readStoreFile(dir)
    if (named === undefined) throw new PemError('PEM_ERR_NOT_FOUND', `${dir} has no ${STORE_FILE}: it was never mounted with --embedded (give the backing directory, not a mount of something else)`)
    const f = embeddedFiles(path.resolve(o.configDir), dir)
    let key: string
    try { key = fs.readFileSync(f.recoveryKey, 'utf8').trim() } catch (err) {
      throw new PemError('PEM_ERR_NOT_FOUND', `cannot read ${f.recoveryKey} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}): this machine has no copy of store ${named.store}'s recovery key (it needs root and the config dir that made or recovered the store)`)
    }
    printObject({ store: named.store, storeFile: path.join(dir, STORE_FILE), recoveryKey: key }, o.json === true)
  }))

program.command('status <dir>')
  .description('the server table of the mount guarding DIR: state, load, weight, latency, policy version, requests, rejections')
  .option('--config-dir <dir>', 'host config directory', defaultConfigDir())
  .option('--json', 'print JSON')
  .option('--prometheus', 'print the metrics in Prometheus text format')
  .action((d: string, o: { configDir: string, json?: boolean, prometheus?: boolean }) => run(async () => {
    const st = await readControl(runFiles(path.resolve(o.configDir), path.resolve(d)).sock)
    if (o.json === true) { process.stdout.write(JSON.stringify(st) + '\n'); return }
    if (o.prometheus === true) { process.stdout.write(await pemfsMetricsText(st)); return }
    const { servers, conversions, opLatency, ...rest } = st
    printObject(rest, false)
    process.stdout.write('\n')
    if (opLatency !== null && opLatency !== undefined) {
      printRows(OP_CLASSES.map(op => { const h = (opLatency as OpLatency)[op]; const n = h.counts.reduce((a, b) => a + b, 0); return { op, count: n, meanMs: n === 0 ? null : Math.round(h.sum / n * 1e6) / 1e3 } }), false, ['op', 'count', 'meanMs'])
      process.stdout.write('\n')
    }
    printRows(servers as Array<Record<string, unknown>>, false, ['name', 'addr', 'state', 'load', 'weight', 'preference', 'latencyMs', 'pv', 'inflight', 'requests', 'rejections'])
    const running = (conversions ?? []) as Array<Record<string, unknown>>
    if (running.length > 0) {
      process.stdout.write('\nrunning conversions\n')
      printRows(running, false, ['pid', 'mode', 'path', 'files', 'totalFiles', 'bytes', 'totalBytes', 'bytesPerSecond', 'etaSeconds', 'paused'])
    }
  }))

addConvertCommands(program, guardOf)

parseProgram(program)
