// Prometheus metrics of a pemfs mount (prom-client text format), built from the same status object `pemfs status`
// shows: operation counters, decisions and denials, the daemon's memory, and the server table (state, load, latency,
// requests, rejections), and conversions in place (files and bytes converted, runs going on).
// Written to a file for node_exporter's textfile collector (`pemfs mount --metrics-file`), served on a loopback
// address (`pemfs mount --metrics-listen 127.0.0.1:PORT`, GET /metrics) or printed by `pemfs status --prometheus`.
import fs from 'node:fs'
import http from 'node:http'
import { Gauge, Registry } from 'prom-client'
import { OP_CLASSES, type OpLatency } from '../native/binding'
import { buildInfo } from '../server/metrics'
import { PemError } from '../wire/errors'
import { warn } from './log'

let build: ReturnType<typeof buildInfo> | undefined // asks git once per process

interface ServerRow { name: string, state: string, load: number | null, weight: number, latencyMs: number | null, pv: number, requests: number, rejections: number }

/** Prometheus text for one mount's status (lib/pem-fs/daemon.ts statusOf). */
export async function pemfsMetricsText (status: Record<string, unknown>): Promise<string> {
  const registry = new Registry()
  const guard = String(status.dir)
  const gauge = (name: string, help: string, labelNames: string[] = []): Gauge => new Gauge({ name, help, labelNames: ['guard', ...labelNames], registers: [registry] })
  const counters: Array<[string, string]> = [
    ['ops', 'FUSE operations served'], ['errors', 'data calls of encrypted handles answered with an error'], ['reads', 'read requests of encrypted handles'],
    ['writes', 'write requests of encrypted handles'], ['bytesRead', 'bytes read through encrypted handles'], ['bytesWritten', 'bytes written through encrypted handles'],
    ['decisions', 'decisions asked of the cluster'], ['cacheHits', 'decisions answered from the guard\'s cache'], ['nativeCacheHits', 'decisions answered from the native session\'s cache'],
    ['nativeJsCalls', 'decisions the native session asked of the control plane (its cache missed)'],
    ['hostKeys', 'file keys handed to the native session (host placement)'], ['hostKeyCalls', 'host-placement keys asked again after their ttl'],
    ['hostSpareTakes', 'new files created with a spare key, without a call to the control plane'],
    ['hostReads', 'reads served natively (leased key or block service)'], ['hostWrites', 'writes served natively (leased key or block service)'],
    ['blockGrants', 'grants of spd\'s native block service handed to the native session'], ['blockRequests', 'requests sent to spd\'s native block service'],
    ['blockBlocks', 'blocks sealed or opened by spd\'s native block service'], ['blockLinksLost', 'block channel connections lost'],
    ['blockBehindWrites', 'writes that returned before spd sealed their blocks (write-behind)'], ['blockAheadBytes', 'bytes read from windows opened ahead of a sequential reader'],
    ['timeouts', 'decisions and data calls the session gave up on (ETIMEDOUT)'], ['denied', 'operations denied by policy'], ['failed', 'operations failed for want of a server'],
    ['convertedFiles', 'files converted in place by pemfs encrypt, rekey and decrypt since the mount started'], ['convertedBytes', 'bytes of the files converted in place']
  ]
  for (const [key, help] of counters) {
    const v = status[key]
    if (typeof v === 'number') gauge(`pemfs_${key.replace(/[A-Z]/g, c => `_${c.toLowerCase()}`)}_total`, help).set({ guard }, v)
  }
  gauge('pemfs_policy_version', 'newest configuration version this mount has seen').set({ guard }, Number(status.pv ?? 0))
  gauge('pemfs_open_handles', 'open file handles').set({ guard }, Number(status.handles ?? 0))
  gauge('pemfs_host_files', 'files served with a leased key now (host placement)').set({ guard }, Number(status.hostFiles ?? 0))
  gauge('pemfs_host_spare_keys', 'new files\' keys held for the next creates now (host placement)').set({ guard }, Number(status.hostSpareKeys ?? 0))
  const conversions = (status.conversions ?? []) as Array<{ totalBytes: number, bytes: number, paused: string | null }>
  gauge('pemfs_conversions_running', 'conversions (pemfs encrypt, rekey, decrypt) running now').set({ guard }, conversions.length)
  gauge('pemfs_conversions_paused', 'running conversions backing off for load').set({ guard }, conversions.filter(c => c.paused !== null).length)
  gauge('pemfs_conversion_bytes_left', 'bytes the running conversions have still to copy').set({ guard }, conversions.reduce((n, c) => n + Math.max(0, c.totalBytes - c.bytes), 0))
  new Gauge({ name: 'pemfs_build_info', help: 'Always 1; the labels name the build: package version, git commit, Node and OpenSSL versions', labelNames: ['version', 'commit', 'node', 'openssl'], registers: [registry] })
    .set(build ??= buildInfo(), 1)
  if (typeof status.rssMiB === 'number') gauge('pemfs_resident_memory_bytes', 'resident memory of the mount daemon').set({ guard }, status.rssMiB * 1048576)
  const up = gauge('pemfs_server_up', '1 when the server is up for this host', ['server'])
  const load = gauge('pemfs_server_load', 'last load the server reported (1.0 = full)', ['server'])
  const latency = gauge('pemfs_server_latency_seconds', 'round-trip time EWMA', ['server'])
  const requests = gauge('pemfs_server_requests_total', 'requests sent to the server', ['server'])
  const rejections = gauge('pemfs_server_rejections_total', 'requests the server rejected (load, version)', ['server'])
  for (const s of (status.servers ?? []) as ServerRow[]) {
    const l = { guard, server: s.name }
    up.set(l, s.state === 'up' ? 1 : 0)
    if (s.load !== null) load.set(l, s.load)
    if (s.latencyMs !== null) latency.set(l, s.latencyMs / 1000)
    requests.set(l, s.requests)
    rejections.set(l, s.rejections)
  }
  return (await registry.metrics()).replace(/\n{2,}/g, '\n') + opLatencyText(guard, status.opLatency as OpLatency | null | undefined)
}

/** The native session's FUSE op latencies as one Prometheus histogram family (its counts are already summed up). */
function opLatencyText (guard: string, l: OpLatency | null | undefined): string {
  if (l === null || l === undefined) return ''
  const name = 'pemfs_fuse_op_duration_seconds'
  const lines = [`# HELP ${name} Time the native FUSE session took to serve a request, by op class`, `# TYPE ${name} histogram`]
  for (const op of OP_CLASSES) {
    const labels = `guard="${escapeLabel(guard)}",op="${op}"`
    let cumulative = 0
    l[op].counts.forEach((n, i) => {
      cumulative += n
      lines.push(`${name}_bucket{${labels},le="${i < l.bounds.length ? String(l.bounds[i]) : '+Inf'}"} ${cumulative}`)
    })
    lines.push(`${name}_sum{${labels}} ${l[op].sum}`, `${name}_count{${labels}} ${cumulative}`)
  }
  return lines.join('\n') + '\n'
}

function escapeLabel (v: string): string { return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"') }

/** `--metrics-listen`'s HOST:PORT, a loopback host only (the endpoint has no authentication). */
export function metricsAddress (addr: string): { host: string, port: number } {
  const m = /^(\[::1\]|localhost|127(?:\.\d{1,3}){3}):(\d{1,5})$/.exec(addr)
  if (m === null || Number(m[2]) > 65535) throw new PemError('PEM_ERR_BAD_ARGUMENT', `--metrics-listen ${addr} is not a loopback HOST:PORT (e.g. 127.0.0.1:9560): the endpoint has no authentication, so it listens on loopback only`)
  return { host: m[1].replace(/^\[|\]$/g, ''), port: Number(m[2]) }
}

/** Serves the mount's metrics as GET /metrics on `addr` (metricsAddress). Resolves once listening; close() stops it. */
export async function serveMetrics (addr: string, status: () => Record<string, unknown>): Promise<{ close: () => void }> {
  const at = metricsAddress(addr)
  const server = http.createServer((req, res) => {
    if (req.method !== 'GET' || req.url?.split('?')[0] !== '/metrics') { res.writeHead(404).end('GET /metrics\n'); return }
    pemfsMetricsText(status()).then(text => {
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(text)
    }, err => { res.writeHead(500).end(`${(err as Error).message}\n`) })
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', err => { reject(new PemError('PEM_ERR_BAD_ARGUMENT', `--metrics-listen ${addr}: ${(err as Error).message}`)) })
    server.listen(at.port, at.host, () => { resolve() })
  })
  server.unref()
  return { close: () => { server.close() } }
}

/** Rewrites `file` atomically every `everyMs` with the mount's metrics; returns a stop function. */
export function writeMetricsFile (file: string, status: () => Record<string, unknown>, everyMs = 5000): () => void {
  const write = (): void => {
    pemfsMetricsText(status()).then(text => {
      fs.writeFileSync(`${file}.tmp`, text, { mode: 0o644 })
      fs.renameSync(`${file}.tmp`, file)
    }).catch(err => warn({ file }, `cannot write the metrics file: ${(err as Error).message}`))
  }
  write()
  const timer = setInterval(write, everyMs)
  timer.unref()
  return () => clearInterval(timer)
}
