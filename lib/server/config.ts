// Member-local configuration (<data-dir>/spd.json): addresses, load settings, timeouts. Written by `spd init`,
// validated against a JSON schema on every start; documented defaults live here and nowhere else.
import fs from 'node:fs'
import path from 'node:path'
import { PemError } from '../wire/errors'
import type { ErrorObject } from 'ajv'
import { didYouMean } from '../policy/nearest'
import { knownFields, validatorFor, type ValidatorSpec } from '../policy/validator'
import type { ConnectionLimits } from '../channel/limits'

export interface SpdConfig {
  name: string
  listen: string // HOST:PORT for hosts (pemfs)
  clusterListen: string | null // HOST:PORT for cluster members
  adminListen: string // HOST:PORT for spctl (loopback by default)
  load: {
    nic: string // interface whose byte counters are read
    nicCapacityBps: number // used when the link speed is unknown (loopback)
    sampleMs: number
    threshold: number // 0..1: above it, requests are rejected or queued
    overload: 'reject' | 'queue'
    queueMs: number // longest a queued request waits before it is rejected
    bias: number // added to the reported load (0..1), to make this server less attractive
    perRequest: number // load one request in flight adds to the projection
  }
  weight: number // 1..100, reported when the matched rule gives none
  decisionTtlMs: number
  adminTokenTtlS: number
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'
  crypto: { provider: string, cipher: 'aes-256-gcm' | 'chacha20-poly1305' }
  cluster: {
    intervalMs: number // heartbeat interval
    activeWindowMs: number // a member not heard from for this long is not active (does not block installs); default 3.5 intervals
    maxStalenessMs: number // cut off from a majority for this long: decisions are refused (PEM_ERR_STALE_POLICY)
    changeTimeoutMs: number // an admin change not installed by then is answered PEM_ERR_CHANGE_PENDING (it stays queued)
  }
  connections: ConnectionLimits // admission on the host (and enrollment) listener and on the cluster listener, each on its own, per remote address (lib/channel/limits.ts)
}

export const DEFAULTS: Omit<SpdConfig, 'name' | 'listen' | 'clusterListen' | 'adminListen'> = {
  load: { nic: 'lo', nicCapacityBps: 1.25e9, sampleMs: 250, threshold: 0.95, overload: 'reject', queueMs: 500, bias: 0, perRequest: 0.0005 },
  weight: 50,
  decisionTtlMs: 5000,
  adminTokenTtlS: 3600,
  logLevel: 'info',
  crypto: { provider: 'default', cipher: 'aes-256-gcm' },
  cluster: { intervalMs: 1000, activeWindowMs: 3500, maxStalenessMs: 30000, changeTimeoutMs: 10000 },
  // A host holds one channel per member and reconnects at most every few hundred ms; a NAT may put dozens behind one
  // address. `pending` bounds the handshakes (TLS, then Hello: 5 s each at most) in progress from everyone together.
  connections: { perSource: 64, ratePerS: 20, burst: 64, pending: 512 }
}

/** HOST:PORT as spd.json and the admin API take it (a name, an IPv4 address or a bracketed IPv6 address). */
const HOSTPORT = '^(\\[[0-9a-fA-F:.]+\\]|[A-Za-z0-9.-]+):[0-9]{1,5}$'
const HOSTPORT_RE = new RegExp(HOSTPORT)
const schema = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'listen', 'adminListen'],
  properties: {
    name: { type: 'string', minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9._-]+$' },
    listen: { type: 'string', pattern: HOSTPORT },
    clusterListen: { anyOf: [{ type: 'string', pattern: HOSTPORT }, { type: 'null' }] },
    adminListen: { type: 'string', pattern: HOSTPORT },
    load: {
      type: 'object',
      additionalProperties: false,
      properties: {
        nic: { type: 'string', minLength: 1, maxLength: 15 },
        nicCapacityBps: { type: 'number', exclusiveMinimum: 0 },
        sampleMs: { type: 'integer', minimum: 10, maximum: 60000 },
        threshold: { type: 'number', minimum: 0, maximum: 1 },
        overload: { enum: ['reject', 'queue'] },
        queueMs: { type: 'integer', minimum: 0, maximum: 60000 },
        bias: { type: 'number', minimum: 0, maximum: 1 },
        perRequest: { type: 'number', minimum: 0, maximum: 1 }
      }
    },
    weight: { type: 'integer', minimum: 1, maximum: 100 },
    decisionTtlMs: { type: 'integer', minimum: 0, maximum: 86400000 },
    adminTokenTtlS: { type: 'integer', minimum: 1, maximum: 604800 },
    logLevel: { enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] },
    crypto: {
      type: 'object',
      additionalProperties: false,
      properties: { provider: { type: 'string', minLength: 1 }, cipher: { enum: ['aes-256-gcm', 'chacha20-poly1305'] } }
    },
    cluster: {
      type: 'object',
      additionalProperties: false,
      properties: {
        intervalMs: { type: 'integer', minimum: 50, maximum: 60000 },
        activeWindowMs: { type: 'integer', minimum: 100, maximum: 600000 },
        maxStalenessMs: { type: 'integer', minimum: 100, maximum: 86400000 },
        changeTimeoutMs: { type: 'integer', minimum: 100, maximum: 600000 }
      }
    },
    connections: {
      type: 'object',
      additionalProperties: false,
      properties: {
        perSource: { type: 'integer', minimum: 1, maximum: 1000000 },
        ratePerS: { type: 'number', exclusiveMinimum: 0, maximum: 1000000 },
        burst: { type: 'integer', minimum: 1, maximum: 1000000 },
        pending: { type: 'integer', minimum: 1, maximum: 1000000 }
      }
    }
  }
} as const

export const CONFIG_VALIDATOR: ValidatorSpec = { name: 'spd-config', schema, options: { allErrors: true, verbose: true } } // verbose: field names for hints
const validate = validatorFor(CONFIG_VALIDATOR)

export function configPath (dataDir: string): string { return path.join(dataDir, 'spd.json') }

/** Checks a parsed config object and fills in the defaults. */
export function checkConfig (raw: unknown, where = 'spd.json'): SpdConfig {
  if (!validate(raw)) {
    const why = (validate.errors ?? []).map(configProblem).join('; ')
    throw new PemError('PEM_ERR_BAD_CONFIG', `${where}: ${why}`)
  }
  const c = raw as Partial<SpdConfig> & Pick<SpdConfig, 'name' | 'listen' | 'adminListen'>
  return {
    ...DEFAULTS,
    ...c,
    clusterListen: c.clusterListen ?? null,
    load: { ...DEFAULTS.load, ...c.load },
    crypto: { ...DEFAULTS.crypto, ...c.crypto },
    connections: { ...DEFAULTS.connections, ...c.connections },
    cluster: clusterDefaults(c.cluster)
  }
}

/** One schema error as the user reads it: the field by its dotted name; an unknown one with the nearest known name. */
function configProblem (e: ErrorObject): string {
  const field = e.instancePath.slice(1).replace(/\//g, '.')
  if (e.keyword === 'additionalProperties') {
    const name = String((e.params as { additionalProperty: string }).additionalProperty)
    return `unknown field '${field === '' ? name : `${field}.${name}`}'${didYouMean(name, knownFields(e))}`
  }
  if (e.keyword === 'pattern' && e.params.pattern === HOSTPORT) return `${field} must be HOST:PORT (e.g. 127.0.0.1:7700)`
  return `${field === '' ? 'the document' : field} ${e.message ?? 'is invalid'}`
}

/** The active window defaults to 3.5 heartbeat intervals of the configured interval, not of the default one. */
function clusterDefaults (given: Partial<SpdConfig['cluster']> = {}): SpdConfig['cluster'] {
  const intervalMs = given.intervalMs ?? DEFAULTS.cluster.intervalMs
  return { ...DEFAULTS.cluster, activeWindowMs: Math.round(3.5 * intervalMs), ...given }
}

export function loadConfig (dataDir: string): SpdConfig {
  const file = configPath(dataDir)
  let text: string
  try { text = fs.readFileSync(file, 'utf8') } catch { throw new PemError('PEM_ERR_BAD_CONFIG', `${file} is missing: run 'spd init' first`) }
  let raw: unknown
  try { raw = JSON.parse(text) } catch (err) { throw new PemError('PEM_ERR_BAD_CONFIG', `${file}: not JSON: ${(err as Error).message}`) }
  return checkConfig(raw, file)
}

/** `addr` if it is HOST:PORT with a port 1..65535; PEM_ERR_BAD_ARGUMENT naming `what` otherwise. */
export function checkHostPort (addr: unknown, what: string): string {
  if (typeof addr !== 'string' || !HOSTPORT_RE.test(addr) || splitHostPort(addr).port === 0) throw new PemError('PEM_ERR_BAD_ARGUMENT', `${what} must be HOST:PORT`)
  return addr
}

export function splitHostPort (addr: string): { host: string, port: number } {
  const i = addr.lastIndexOf(':')
  const host = addr.slice(0, i).replace(/^\[|\]$/g, '')
  const port = Number(addr.slice(i + 1))
  if (i <= 0 || !Number.isInteger(port) || port < 0 || port > 65535) throw new PemError('PEM_ERR_BAD_ARGUMENT', `'${addr}' is not HOST:PORT`)
  return { host, port }
}
