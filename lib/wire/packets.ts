// Frame bodies: one TS type and one checker per opcode (request and reply). Checkers reject by code, never trust shape.
// Byte layout and worked examples: lib/wire/FORMAT.md §2.
import { PemError } from './errors'
import { HEADER_MAX_BYTES, RECORD_OVERHEAD } from './file-format'
import { Op } from './opcodes'

// ---- limits (checked before anything is kept) ----
export const LIMITS = {
  pathBytes: 4096,
  nameBytes: 255,
  gids: 64,
  stringBytes: 1024,
  tokenBytes: 256,
  blocksPerBatch: 256,
  members: 1024,
  /** Plaintext bytes in one BlocksSeal/BlocksOpen batch (records may add RECORD_OVERHEAD per block): sets HOST_DATA_FRAME_BYTES (frame.ts). */
  batchBytes: 2 * 1024 * 1024,
  grantBytes: 64,
  /** New file headers one FileHeader request may ask for. */
  headersPerRequest: 32,
  /** Decision records one AuditRead reply carries (about 1 MB of records). */
  auditRecords: 2000,
  /** (key, version) pairs in one KeyUsage report. */
  keyUsageCounts: 4096
} as const

/**
 * File operations a policy can name. Strings travel on the wire. ONLY APPEND. `convert` (starting `pemfs encrypt |
 * rekey | decrypt` on a path) is admin-level: not in `all`, only a rule that names it permits it.
 */
export const ACTIONS = [
  'read', 'write', 'create', 'delete', 'rename', 'list', 'getattr', 'chmod', 'chown', 'truncate',
  'mkdir', 'rmdir', 'link', 'symlink', 'readlink', 'utimens', 'xattr', 'statfs', 'open', 'convert'
] as const
/** Actions a rule must name to cover (outside `all` and a rule without `actions`). */
export const ADMIN_ACTIONS: readonly Action[] = ['convert']
export type Action = (typeof ACTIONS)[number]
const ACTION_SET: ReadonlySet<string> = new Set(ACTIONS)
export function isAction (a: unknown): a is Action { return typeof a === 'string' && ACTION_SET.has(a) }

export const COMPRESSIONS = ['none', 'zstd', 'lz4', 'zlib'] as const
export type Compression = (typeof COMPRESSIONS)[number]

/** Where an apply_key rule's crypto runs: on spd (blocks travel, the default) or on the host (FileKey). */
export const PLACEMENTS = ['appliance', 'host'] as const
export type Placement = (typeof PLACEMENTS)[number]

/** Who asks: collected by pemfs from the FUSE context. `host` and `ip` are filled in by spd from the channel, never trusted from the host. */
export interface AccessAttrs {
  uid: number
  gids: number[]
  user?: string
  groups?: string[]
  domain?: string
  pid: number
  sid: number
  exe: string
  exeHash: string // hex SHA-256 of the executable, '' when unknown
  auth: number // authentication level, 0 = none
}

export interface HostContext { host: string, ip: string }

export interface HelloBody { min: number, max: number, cur: number, role: 'host' | 'member' | 'enroll' }
export interface HelloReply { version: number, server: string, name: string, pv: number }

export interface EnrollBody { token: string, name: string }
/** `preference` 0..1 (absent = 0): how much the configuration wants this host on this server (`spctl host servers`). */
export interface ServerEntry { id: string, key: string, addr: string, name: string, preference?: number }
export interface EnrollReply { host: string, servers: ServerEntry[], name?: string } // name: as the cluster recorded it (spctl host add); absent from older servers

export interface LoadValues { total: number, cpu: number, nic: number, crypto: number }

export interface DecideBody {
  pv: number // policy version the host last saw (0 = none yet)
  guard: string // guard point: the host directory the mount protects
  path: string // path inside the guard point, '/'-separated, starting with '/'
  action: Action
  attrs: AccessAttrs
  bytes?: number // data the operation will move (load projection)
}

export interface DecideReply {
  ok: boolean
  reason: number // error id (lib/wire/errors.ts) when !ok, 0 otherwise
  rule: string | null // id of the rule that decided, null for the default deny
  load: LoadValues
  weight: number // 1..100; > 90 = use only when nothing else is up
  pv: number // the server's installed policy version
  bypass: boolean // true: the data need not pass through the cluster
  ttl: number // ms the host may cache this decision under pv
  key: string | null // key name granted for this transaction (apply_key)
  compression: Compression
  grant: string | null // id of the key grant for FileHeader/BlocksSeal/BlocksOpen on this server; absent in v1 fixtures = null
  scope: string | null // every path strictly under this directory of the guard shares the decision; absent = null (this path only)
  placement?: Placement // sent only as 'host' (the grant may fetch the file key: FileKey); absent = 'appliance'
  unguarded?: true // sent only as true, on a deny because the installed policy names no guard point `guard`
}

/**
 * FileHeader: new file headers for the grant's key (newest version) and compression, each with its own random file
 * id: `header`, and `count - 1` more in `more` (a host keeps them for its next new files; each is used once).
 * `keys` (host placement, a grant that may release keys: as FileKey): `sealed` holds each new file's key as FileKey
 * would seal it, in the order header, more...; `ttlMs` how long the host may use them.
 */
export interface FileHeaderBody { grant: string, blockBytes?: number, count?: number, keys?: boolean }
export interface FileHeaderReply { header: Buffer, more?: Buffer[], sealed?: Buffer[], ttlMs?: number }

/**
 * BlocksSeal / BlocksOpen: a batch of blocks of one file. `data` holds the blocks back to back, lens[i] bytes each:
 * plaintext blocks to seal, or records (sealed bytes + trailer, lib/wire/file-format.ts) to open. The reply has the
 * same shape with the other form, in the same order.
 */
export interface BlocksBody { grant: string, header: Buffer, blocks: number[], lens: number[], data: Buffer }
export interface BlocksReply { lens: number[], data: Buffer }

/**
 * FileKey: the per-file key of the file whose header is sent, for a grant from a host-placement decision, sealed to
 * the host's enrolled key (layout: lib/wire/FORMAT.md §4.5); `ttlMs`: how long the host may use it.
 */
export interface FileKeyBody { grant: string, header: Buffer }
export interface FileKeyReply { sealed: Buffer, ttlMs: number }
/**
 * AuditRead: decision records of the serving member's audit log that match, newest `limit` of them, oldest first.
 * `since` (ISO 8601) and `after` (a record seq; 0 = none) bound them below; null filters match everything.
 */
export interface AuditReadBody { since: string | null, after: number, limit: number, uid: number | null, host: string | null, effect: 'permit' | 'deny' | null, rule: string | null }
/** `records` are decision records as written (lib/wire/audit-record.ts), each with its seq and ts; `member` is the server's name. */
export interface AuditReadReply { member: string, records: Array<Record<string, unknown>>, truncated: boolean }
/**
 * BlockChannel (issue 17, docs/CHANNEL.md §8): spd checks the grant and header as for BlocksSeal/Open and installs the
 * grant at its native block service under the random `handle` (16 bytes), and a one-use `token` (16 bytes) for a new
 * block channel connection to `port` on this server's address, keyed from this channel's TLS exporter with the token
 * as context. `ttlMs`: the grant's remaining time; `seal`: whether it may seal.
 */
export interface BlockChannelBody { grant: string, header: Buffer }
/** The block channel's exporter label (both ends); the token is the exporter's context. */
export const BLOCK_CHANNEL_LABEL = 'EXPORTER-pem-block-channel/1'
export const BLOCK_CHANNEL_KEY_BYTES = 64 // host->spd key | spd->host key
export interface BlockChannelReply { port: number, token: Buffer, handle: Buffer, ttlMs: number, seal: boolean }
/**
 * KeysDrop (unsolicited, spd -> host): why the host must wipe every file key it holds and decide again before its next
 * block: the policy changed, a key was rotated or one of its versions retired, or this host's key releases were revoked
 * or its enrollment removed.
 */
export const KEYS_DROP_REASONS = ['policy', 'key-rotate', 'host-revoke', 'host-remove', 'key-retire'] as const
export type KeysDropReason = (typeof KEYS_DROP_REASONS)[number]
export interface KeysDropBody { pv: number, reason: KeysDropReason }

/** Bytes of a FileKey reply's `sealed`: the 58-byte plaintext (lib/crypto/file-key.ts) + a pair box's nonce and tag (40). */
export const SEALED_FILE_KEY_BYTES = 98

/**
 * KeyUsage (host -> spd, issue 19): how many files each key version protects in this host's guard points, as its last
 * scan of their headers counted them; the scan started `ageMs` before the report was sent (spd dates it by its own clock).
 */
export interface KeyUsageCount { key: string, version: number, files: number }
export interface KeyUsageBody { ageMs: number, counts: KeyUsageCount[] }

export interface PingReply { load: LoadValues, weight: number, pv: number }
export interface ServersReply { pv: number, servers: ServerEntry[] }

// ---- checking ----

function bad (what: string): never { throw new PemError('PEM_ERR_BAD_BODY', what) }
function obj (v: unknown, what: string): Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v) || Buffer.isBuffer(v) || v instanceof Date) bad(`${what} must be a map`)
  return v as Record<string, unknown>
}
function str (v: unknown, what: string, max: number = LIMITS.stringBytes): string {
  if (typeof v !== 'string') bad(`${what} must be a string`)
  if (Buffer.byteLength(v) > max) bad(`${what} is longer than ${max} bytes`)
  return v
}
function int (v: unknown, what: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) bad(`${what} must be an integer in [${min}, ${max}]`)
  return v
}
function num (v: unknown, what: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) bad(`${what} must be a number in [${min}, ${max}]`)
  return v
}
function bool (v: unknown, what: string): boolean {
  if (typeof v !== 'boolean') bad(`${what} must be a boolean`)
  return v
}
function optStr (v: unknown, what: string): string | undefined { return v === undefined || v === null ? undefined : str(v, what) }
function strArr (v: unknown, what: string, maxItems: number): string[] {
  if (!Array.isArray(v) || v.length > maxItems) bad(`${what} must be a list of at most ${maxItems} strings`)
  return v.map((x, i) => str(x, `${what}[${i}]`))
}

export function checkHello (v: unknown): HelloBody {
  const o = obj(v, 'hello')
  const role = o.role
  if (role !== 'host' && role !== 'member' && role !== 'enroll') bad('hello.role must be host, member or enroll')
  return { min: int(o.min, 'hello.min', 1, 255), max: int(o.max, 'hello.max', 1, 255), cur: int(o.cur, 'hello.cur', 1, 255), role }
}

export function checkHelloReply (v: unknown): HelloReply {
  const o = obj(v, 'hello reply')
  return { version: int(o.version, 'version', 1, 255), server: str(o.server, 'server', 64), name: str(o.name, 'name'), pv: int(o.pv, 'pv') }
}

export function checkEnroll (v: unknown): EnrollBody {
  const o = obj(v, 'enroll')
  return { token: str(o.token, 'token', LIMITS.tokenBytes), name: str(o.name, 'name', LIMITS.nameBytes) }
}

function checkServerList (v: unknown): ServerEntry[] {
  if (!Array.isArray(v) || v.length > LIMITS.members) bad('servers must be a list')
  return v.map((s, i) => {
    const e = obj(s, `servers[${i}]`)
    const entry: ServerEntry = { id: str(e.id, 'id', 64), key: str(e.key, 'key', 64), addr: str(e.addr, 'addr', 300), name: str(e.name, 'name') }
    if (e.preference !== undefined && e.preference !== null) {
      if (typeof e.preference !== 'number' || !(e.preference >= 0 && e.preference <= 1)) bad(`servers[${i}].preference must be 0..1`)
      entry.preference = e.preference
    }
    return entry
  })
}

export function checkEnrollReply (v: unknown): EnrollReply {
  const o = obj(v, 'enroll reply')
  return { host: str(o.host, 'host', 64), servers: checkServerList(o.servers), ...(o.name === undefined ? {} : { name: str(o.name, 'name') }) }
}

export function checkServersReply (v: unknown): ServersReply {
  const o = obj(v, 'servers reply')
  return { pv: int(o.pv, 'pv'), servers: checkServerList(o.servers) }
}

export function checkAttrs (v: unknown): AccessAttrs {
  const o = obj(v, 'attrs')
  if (!Array.isArray(o.gids) || o.gids.length > LIMITS.gids) bad(`attrs.gids must be a list of at most ${LIMITS.gids}`)
  const attrs: AccessAttrs = {
    uid: int(o.uid, 'attrs.uid', 0, 0xffffffff),
    gids: o.gids.map((g, i) => int(g, `attrs.gids[${i}]`, 0, 0xffffffff)),
    pid: int(o.pid, 'attrs.pid', 0, 0xffffffff),
    sid: int(o.sid, 'attrs.sid', 0, 0xffffffff),
    exe: str(o.exe, 'attrs.exe', LIMITS.pathBytes),
    exeHash: str(o.exeHash, 'attrs.exeHash', 64),
    auth: int(o.auth, 'attrs.auth', 0, 255)
  }
  const user = optStr(o.user, 'attrs.user'); if (user !== undefined) attrs.user = user
  const domain = optStr(o.domain, 'attrs.domain'); if (domain !== undefined) attrs.domain = domain
  if (o.groups !== undefined && o.groups !== null) attrs.groups = strArr(o.groups, 'attrs.groups', LIMITS.gids)
  return attrs
}

export function checkDecide (v: unknown): DecideBody {
  const o = obj(v, 'decide')
  if (!isAction(o.action)) bad('decide.action is not a known action')
  const path = str(o.path, 'decide.path', LIMITS.pathBytes)
  if (!path.startsWith('/')) bad('decide.path must start with /')
  const body: DecideBody = {
    pv: int(o.pv, 'decide.pv'),
    guard: str(o.guard, 'decide.guard', LIMITS.pathBytes),
    path,
    action: o.action,
    attrs: checkAttrs(o.attrs)
  }
  if (o.bytes !== undefined && o.bytes !== null) body.bytes = int(o.bytes, 'decide.bytes')
  return body
}

export function checkLoad (v: unknown): LoadValues {
  const o = obj(v, 'load')
  return { total: num(o.total, 'load.total', 0, 10), cpu: num(o.cpu, 'load.cpu', 0, 10), nic: num(o.nic, 'load.nic', 0, 10), crypto: num(o.crypto, 'load.crypto', 0, 10) }
}

export function checkDecideReply (v: unknown): DecideReply {
  const o = obj(v, 'decide reply')
  const compression = o.compression
  if (!(COMPRESSIONS as readonly unknown[]).includes(compression)) bad('compression is not known')
  return {
    ok: bool(o.ok, 'ok'),
    reason: int(o.reason, 'reason', 0, 0xffff),
    rule: o.rule === null ? null : str(o.rule, 'rule'),
    load: checkLoad(o.load),
    weight: int(o.weight, 'weight', 1, 100),
    pv: int(o.pv, 'pv'),
    bypass: bool(o.bypass, 'bypass'),
    ttl: int(o.ttl, 'ttl', 0, 86_400_000),
    key: o.key === null ? null : str(o.key, 'key', LIMITS.nameBytes),
    compression: compression as Compression,
    grant: o.grant === undefined || o.grant === null ? null : str(o.grant, 'grant', LIMITS.grantBytes),
    scope: o.scope === undefined || o.scope === null ? null : scopeOf(o.scope),
    placement: placementOf(o.placement),
    ...unguardedOf(o.unguarded)
  }
}

function unguardedOf (v: unknown): { unguarded?: true } {
  if (v === undefined || v === null) return {}
  if (v !== true) bad('unguarded must be true when present')
  return { unguarded: true }
}

function placementOf (v: unknown): Placement {
  if (v === undefined || v === null) return 'appliance'
  if (!(PLACEMENTS as readonly unknown[]).includes(v)) bad('placement must be host or appliance')
  return v as Placement
}

/** A decision scope: '' (the guard root) or an absolute path without a trailing slash. */
function scopeOf (v: unknown): string {
  const s = str(v, 'scope', LIMITS.pathBytes)
  if (s !== '' && (!s.startsWith('/') || s.endsWith('/'))) bad('scope must be \'\' or an absolute path without a trailing slash')
  return s
}

function bin (v: unknown, what: string, max: number): Buffer {
  if (!Buffer.isBuffer(v)) bad(`${what} must be bytes`)
  if (v.length > max) bad(`${what} is longer than ${max} bytes`)
  return v
}

export function checkFileHeader (v: unknown): FileHeaderBody {
  const o = obj(v, 'file header')
  const body: FileHeaderBody = { grant: str(o.grant, 'grant', LIMITS.grantBytes) }
  if (o.blockBytes !== undefined && o.blockBytes !== null) body.blockBytes = int(o.blockBytes, 'blockBytes', 1, 0xffffffff)
  if (o.count !== undefined && o.count !== null) body.count = int(o.count, 'count', 1, LIMITS.headersPerRequest)
  if (o.keys !== undefined && o.keys !== null) body.keys = bool(o.keys, 'keys')
  return body
}

export function checkFileHeaderReply (v: unknown): FileHeaderReply {
  const o = obj(v, 'file header reply')
  const reply: FileHeaderReply = { header: bin(o.header, 'header', HEADER_MAX_BYTES) }
  if (o.more !== undefined && o.more !== null) {
    if (!Array.isArray(o.more) || o.more.length >= LIMITS.headersPerRequest) bad(`more must be a list of at most ${LIMITS.headersPerRequest - 1} headers`)
    reply.more = o.more.map((h, i) => bin(h, `more[${i}]`, HEADER_MAX_BYTES))
  }
  if (o.sealed !== undefined && o.sealed !== null) {
    const n = 1 + (reply.more?.length ?? 0)
    if (!Array.isArray(o.sealed) || o.sealed.length !== n) bad(`sealed must be a list of ${n} sealed keys, one per header`)
    reply.sealed = o.sealed.map((k, i) => {
      const b = bin(k, `sealed[${i}]`, SEALED_FILE_KEY_BYTES)
      if (b.length !== SEALED_FILE_KEY_BYTES) bad(`sealed[${i}] must be ${SEALED_FILE_KEY_BYTES} bytes`)
      return b
    })
    reply.ttlMs = int(o.ttlMs, 'ttlMs', 0, 86_400_000)
  }
  return reply
}

function checkLensData (o: Record<string, unknown>, n: number): { lens: number[], data: Buffer } {
  const max = LIMITS.batchBytes + n * RECORD_OVERHEAD
  if (!Array.isArray(o.lens) || o.lens.length !== n) bad(`lens must be a list of ${n} lengths`)
  const data = bin(o.data, 'data', max)
  let sum = 0
  const lens = o.lens.map((l, i) => { const x = int(l, `lens[${i}]`, 0, max); sum += x; return x })
  if (sum !== data.length) bad(`lens add up to ${sum}, data holds ${data.length} bytes`)
  return { lens, data }
}

export function checkBlocks (v: unknown): BlocksBody {
  const o = obj(v, 'blocks')
  if (!Array.isArray(o.blocks) || o.blocks.length < 1 || o.blocks.length > LIMITS.blocksPerBatch) bad(`blocks must list 1..${LIMITS.blocksPerBatch} block numbers`)
  const blocks = o.blocks.map((b, i) => int(b, `blocks[${i}]`, 0, 2 ** 48))
  return { grant: str(o.grant, 'grant', LIMITS.grantBytes), header: bin(o.header, 'header', HEADER_MAX_BYTES), blocks, ...checkLensData(o, blocks.length) }
}

export function checkBlocksReply (v: unknown): BlocksReply {
  const o = obj(v, 'blocks reply')
  if (!Array.isArray(o.lens) || o.lens.length > LIMITS.blocksPerBatch) bad('lens must be a list')
  return checkLensData(o, o.lens.length)
}

export function checkFileKey (v: unknown): FileKeyBody {
  const o = obj(v, 'file key')
  return { grant: str(o.grant, 'grant', LIMITS.grantBytes), header: bin(o.header, 'header', HEADER_MAX_BYTES) }
}

export function checkFileKeyReply (v: unknown): FileKeyReply {
  const o = obj(v, 'file key reply')
  const sealed = bin(o.sealed, 'sealed', SEALED_FILE_KEY_BYTES)
  if (sealed.length !== SEALED_FILE_KEY_BYTES) bad(`sealed must be ${SEALED_FILE_KEY_BYTES} bytes`)
  return { sealed, ttlMs: int(o.ttlMs, 'ttlMs', 0, 86_400_000) }
}

export function checkBlockChannelReply (v: unknown): BlockChannelReply {
  const o = obj(v, 'block channel reply')
  const token = bin(o.token, 'token', 16)
  const handle = bin(o.handle, 'handle', 16)
  if (token.length !== 16 || handle.length !== 16) bad('token and handle must be 16 bytes')
  return { port: int(o.port, 'port', 1, 65535), token, handle, ttlMs: int(o.ttlMs, 'ttlMs', 0, 86_400_000), seal: bool(o.seal, 'seal') }
}

export function checkKeysDrop (v: unknown): KeysDropBody {
  const o = obj(v, 'keys drop')
  if (!(KEYS_DROP_REASONS as readonly unknown[]).includes(o.reason)) bad(`reason must be one of ${KEYS_DROP_REASONS.join(', ')}`)
  return { pv: int(o.pv, 'pv'), reason: o.reason as KeysDropReason }
}

export function checkPingReply (v: unknown): PingReply {
  const o = obj(v, 'ping reply')
  return { load: checkLoad(o.load), weight: int(o.weight, 'weight', 1, 100), pv: int(o.pv, 'pv') }
}

export function checkAuditRead (v: unknown): AuditReadBody {
  const o = obj(v, 'audit read')
  const since = o.since === null || o.since === undefined ? null : str(o.since, 'since', 64)
  if (since !== null && !Number.isFinite(Date.parse(since))) bad('since must be a time (ISO 8601)')
  const effect = o.effect ?? null
  if (effect !== null && effect !== 'permit' && effect !== 'deny') bad('effect must be permit, deny or nil')
  return {
    since,
    after: int(o.after, 'after'),
    limit: int(o.limit, 'limit', 1, LIMITS.auditRecords),
    uid: o.uid === null || o.uid === undefined ? null : int(o.uid, 'uid', 0, 0xffffffff),
    host: optStr(o.host, 'host') ?? null,
    effect,
    rule: optStr(o.rule, 'rule') ?? null
  }
}

export function checkAuditReadReply (v: unknown): AuditReadReply {
  const o = obj(v, 'audit read reply')
  if (!Array.isArray(o.records) || o.records.length > LIMITS.auditRecords) bad(`records must be a list of at most ${LIMITS.auditRecords}`)
  const records = o.records.map((r, i) => obj(r, `records[${i}]`))
  return { member: str(o.member, 'member', LIMITS.nameBytes), records, truncated: bool(o.truncated, 'truncated') }
}

export function checkKeyUsage (v: unknown): KeyUsageBody {
  const o = obj(v, 'key usage')
  if (!Array.isArray(o.counts) || o.counts.length > LIMITS.keyUsageCounts) bad(`counts must be a list of at most ${LIMITS.keyUsageCounts}`)
  return {
    ageMs: int(o.ageMs, 'ageMs', 0, 366 * 86400_000),
    counts: o.counts.map((c, i) => {
      const e = obj(c, `counts[${i}]`)
      return { key: str(e.key, `counts[${i}].key`, LIMITS.nameBytes), version: int(e.version, `counts[${i}].version`, 1, 0xffffffff), files: int(e.files, `counts[${i}].files`) }
    })
  }
}

/** Error reply body: [id, detail]. */
export function checkErrorBody (v: unknown): [number, string] {
  if (!Array.isArray(v) || v.length !== 2 || typeof v[0] !== 'number' || typeof v[1] !== 'string') bad('error body must be [id, detail]')
  return [v[0], v[1].slice(0, LIMITS.stringBytes)]
}

/** Request checkers by opcode, for servers; reply checkers, for clients. Later issues add their opcodes here. */
export const REQUEST_CHECKS: Partial<Record<Op, (v: unknown) => unknown>> = {
  [Op.Hello]: checkHello,
  [Op.Enroll]: checkEnroll,
  [Op.Ping]: (v: unknown) => { if (v !== null) bad('ping body must be nil'); return null },
  [Op.Servers]: (v: unknown) => { if (v !== null) bad('servers body must be nil'); return null },
  [Op.Decide]: checkDecide,
  [Op.FileHeader]: checkFileHeader,
  [Op.BlocksSeal]: checkBlocks,
  [Op.BlocksOpen]: checkBlocks,
  [Op.FileKey]: checkFileKey,
  [Op.BlockChannel]: checkFileKey,
  [Op.AuditRead]: checkAuditRead,
  [Op.KeyUsage]: checkKeyUsage
}
export const REPLY_CHECKS: Partial<Record<Op, (v: unknown) => unknown>> = {
  [Op.Hello]: checkHelloReply,
  [Op.Enroll]: checkEnrollReply,
  [Op.Ping]: checkPingReply,
  [Op.Servers]: checkServersReply,
  [Op.Decide]: checkDecideReply,
  [Op.FileHeader]: checkFileHeaderReply,
  [Op.BlocksSeal]: checkBlocksReply,
  [Op.BlocksOpen]: checkBlocksReply,
  [Op.FileKey]: checkFileKeyReply,
  [Op.BlockChannel]: checkBlockChannelReply,
  [Op.AuditRead]: checkAuditReadReply,
  [Op.KeyUsage]: (v: unknown) => { if (v !== null) bad('key usage reply must be nil'); return null }
}
