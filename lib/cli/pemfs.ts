// pemfs: the host side — enroll this host with the cluster, and ask the cluster for decisions (DESIGN §5).
import { Command } from 'commander'
import os from 'node:os'
import path from 'node:path'
import { attrsOf } from '../pem-fs/attrs'
import { ClusterClient, enroll } from '../pem-fs/client'
import { defaultConfigDir, hostIdentity, readCluster, writeCluster } from '../pem-fs/host-config'
import { PemError } from '../wire/errors'
import { isAction, ACTIONS } from '../wire/packets'
import { printObject, printRows, run } from './common'

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

program.parseAsync(process.argv).catch((err: Error) => { process.stderr.write(`error: ${err.message}\n`); process.exitCode = 2 })
