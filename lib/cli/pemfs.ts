// pemfs: the host side — enroll this host, mount/unmount guard points, their status, and one-off decisions (DESIGN §5).
import { Command, Option } from 'commander'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { attrsOf } from '../pem-fs/attrs'
import { ClusterClient, enroll } from '../pem-fs/client'
import { SELECTIONS, type SelectionName } from '../pem-fs/selection'
import { pemfsMetricsText, writeMetricsFile } from '../pem-fs/metrics'
import { isMounted, readControl, runFiles, serveControl, signalReady, startDaemon, statusOf, stopDaemon } from '../pem-fs/daemon'
import { mountGuard } from '../pem-fs/mount'
import { manageHeap } from '../native/memory'
import { defaultConfigDir, hostIdentity, readCluster, writeCluster } from '../pem-fs/host-config'
import { PemError } from '../wire/errors'
import { isAction, ACTIONS } from '../wire/packets'
import { printObject, printRows, run } from './common'
import { embeddedFiles, startEmbedded, stopStale, type Embedded } from './embedded'

// FUSE requests wait on the libuv pool for backing-file I/O: give it more than the default 4 threads.
process.env.UV_THREADPOOL_SIZE ??= '16'

const program = new Command('pemfs').description('Policy enforcement module: guards data directories with the cluster\'s policy and encryption').showHelpAfterError()

program.command('enroll')
  .description('enroll this host with the cluster using a one-time token from `spctl host add`')
  .requiredOption('--cluster <addrs>', 'HOST:PORT of one or more servers, comma separated')
  .requiredOption('--token <token>', 'one-time enrollment token')
  .option('--config-dir <dir>', 'host config directory', defaultConfigDir())
  .option('--name <name>', 'host name recorded by the cluster', os.hostname())
  .option('--json', 'print JSON')
  .action((o: { cluster: string, token: string, configDir: string, name: string, json?: boolean }) => run(async () => {
    const dir = path.resolve(o.configDir)
    const identity = hostIdentity(dir)
    const reply = await enroll(identity, o.cluster.split(',').map(s => s.trim()).filter(Boolean), o.token, o.name)
    writeCluster(dir, { host: reply.host, name: o.name, servers: reply.servers, enrolled: new Date().toISOString() })
    printObject({ host: reply.host, name: o.name, servers: reply.servers.map(s => `${s.name}@${s.addr}`).join(', '), configDir: dir }, o.json === true)
  }))

program.command('check <path>')
  .description('ask the cluster what it decides for this process doing ACTION on PATH inside a guard point')
  .requiredOption('--guard <dir>', 'the guard point (host directory the policy protects)')
  .option('--action <action>', `one of: ${ACTIONS.join(', ')}`, 'read')
  .option('--config-dir <dir>', 'host config directory', defaultConfigDir())
  .option('--json', 'print JSON')
  .action((p: string, o: { guard: string, action: string, configDir: string, json?: boolean }) => run(async () => {
    if (!isAction(o.action)) throw new PemError('PEM_ERR_BAD_ARGUMENT', `--action must be one of: ${ACTIONS.join(', ')}`)
    const guard = path.resolve(o.guard)
    const abs = path.resolve(p)
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

interface MountFlags { backing?: string, foreground?: boolean, embedded?: boolean, configDir: string, timeoutMs: string, selection: SelectionName, metricsFile?: string, json?: boolean }

async function mountForeground (dir: string, o: MountFlags): Promise<void> {
  const stopHeap = manageHeap() // before the FUSE and libuv threads start (lib/native/memory.ts)
  const configDir = path.resolve(o.configDir)
  const files = runFiles(configDir, dir)
  let m
  let embedded: Embedded | undefined
  try {
    if (o.embedded === true) embedded = await startEmbedded(configDir, dir)
    m = await mountGuard({ dir, backing: o.backing, configDir: embedded?.hostDir ?? configDir, timeoutMs: Number(o.timeoutMs), selection: o.selection })
  } catch (err) {
    await embedded?.stop()
    signalReady(`error: ${PemError.from(err).message}`)
    throw err
  }
  const mounted = m
  process.umask(0) // the kernel already applied the caller's umask to create/mkdir modes
  fs.writeFileSync(files.pid, `${process.pid}\n`, { mode: 0o600 })
  const control = serveControl(files.sock, () => statusOf(mounted))
  const stopMetrics = o.metricsFile === undefined ? () => {} : writeMetricsFile(path.resolve(o.metricsFile), () => statusOf(mounted))
  const keepAlive = setInterval(() => {}, 1 << 30) // fuse-native's handles do not keep the loop alive
  let stopping = false
  const stop = (signal: string): void => {
    if (stopping) return
    stopping = true
    process.stderr.write(`pemfs: ${signal}: unmounting ${mounted.dir}\n`)
    control.close()
    stopMetrics()
    clearInterval(keepAlive)
    stopHeap()
    mounted.unmount().then(async () => await embedded?.stop()).finally(() => {
      fs.rmSync(files.pid, { force: true }); fs.rmSync(files.sock, { force: true })
      process.exit(0)
    })
  }
  process.on('SIGTERM', () => stop('SIGTERM'))
  process.on('SIGINT', () => stop('SIGINT'))
  process.stderr.write(`pemfs: guarding ${mounted.dir} (backing ${mounted.backing}), pid ${process.pid}\n`)
  signalReady('ready')
}

program.command('mount <dir>')
  .description('guard DIR in place (or --backing DIR under it): every operation is decided by the cluster')
  .option('--backing <dir>', 'the directory whose files are served (default: DIR itself, guarded in place)')
  .option('--foreground', 'stay in the foreground instead of starting a daemon')
  .option('--embedded', 'run a private single-member spd (encrypt everything, permit every local user) under the config dir')
  .option('--config-dir <dir>', 'host config directory', defaultConfigDir())
  .option('--timeout-ms <ms>', 'request timeout per server', '2000')
  .addOption(new Option('--selection <strategy>', 'how the host picks a server for each request').choices([...SELECTIONS]).default('default'))
  .option('--metrics-file <file>', 'write Prometheus metrics of the mount to FILE every 5 s (node_exporter textfile collector)')
  .option('--json', 'print JSON')
  .action((d: string, o: MountFlags) => run(async () => {
    const dir = path.resolve(d)
    if (o.foreground === true) { await mountForeground(dir, o); return }
    const configDir = path.resolve(o.configDir)
    const files = runFiles(configDir, dir)
    if (isMounted(dir)) throw new PemError('PEM_ERR_BUSY', `${dir} is already mounted`)
    const args = ['mount', dir, '--foreground', '--config-dir', configDir, '--timeout-ms', o.timeoutMs, '--selection', o.selection, ...(o.backing !== undefined ? ['--backing', path.resolve(o.backing)] : []), ...(o.embedded === true ? ['--embedded'] : []),
      ...(o.metricsFile !== undefined ? ['--metrics-file', path.resolve(o.metricsFile)] : [])]
    const pid = await startDaemon(process.argv[1], args, files.log)
    printObject({ mounted: dir, backing: path.resolve(o.backing ?? dir), pid, log: files.log }, o.json === true)
  }))

program.command('unmount <dir>')
  .description('stop the pemfs daemon guarding DIR and unmount it')
  .option('--config-dir <dir>', 'host config directory', defaultConfigDir())
  .option('--json', 'print JSON')
  .action((d: string, o: { configDir: string, json?: boolean }) => run(async () => {
    const dir = path.resolve(d)
    const r = await stopDaemon(runFiles(path.resolve(o.configDir), dir), dir)
    await stopStale(embeddedFiles(path.resolve(o.configDir), dir)) // only when a dead mount left its embedded spd
    printObject({ unmounted: dir, daemon: r.pid, forced: r.detached }, o.json === true)
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
    const { servers, ...rest } = st
    printObject(rest, false)
    process.stdout.write('\n')
    printRows(servers as Array<Record<string, unknown>>, false, ['name', 'addr', 'state', 'load', 'weight', 'preference', 'latencyMs', 'pv', 'inflight', 'requests', 'rejections'])
  }))

program.parseAsync(process.argv).catch((err: Error) => { process.stderr.write(`error: ${err.message}\n`); process.exitCode = 2 })
