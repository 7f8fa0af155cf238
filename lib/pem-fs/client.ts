// Host-side client of the cluster: enrollment, pinned channels to every server, decisions with failover, and the
// data path (file headers, sealing and opening blocks, or the file key itself under host placement) on the server
// whose decision granted the key.
// Each server's last load, weight, latency, policy version and requests in flight are kept; the host picks its own
// target from them with a named strategy (selection.ts).
import { performance } from 'node:perf_hooks'
import { dataPool } from '../channel/buffer-pool'
import { connect } from '../channel/tls'
import type { Channel } from '../channel/channel'
import { openFileKey } from '../crypto/file-key'
import type { Identity } from '../crypto/identity'
import { ERRORS, PemError } from '../wire/errors'
import { Op } from '../wire/opcodes'
import { decodeHeader, readTrailer, TRAILER_BYTES, type FileHeader } from '../wire/file-format'
import {
  BLOCK_CHANNEL_KEY_BYTES, BLOCK_CHANNEL_LABEL, LIMITS, checkKeysDrop, type BlockChannelReply, type BlocksReply, type DecideBody, type DecideReply, type EnrollReply,
  type FileHeaderReply, type FileKeyReply, type KeysDropBody, type KeyUsageBody, type LoadValues, type PingReply, type Placement, type ServerEntry, type ServersReply
} from '../wire/packets'
import { parseToken } from '../wire/token'
import { createSelector, noteDown, noteOverload, noteReply, OVERLOAD_BACKOFF_MS, type SelectionName, type Selector } from './selection'

export interface ServerState {
  entry: ServerEntry
  channel: Channel | null
  connecting: Promise<Channel> | null
  state: 'up' | 'down'
  downUntil: number
  load: LoadValues | null
  loadAt: number
  weight: number
  latencyMs: number | null // EWMA of round trips
  pv: number
  requests: number
  rejections: number
  inflight: number // this host's requests sent to it and not answered yet
  preference: number // 0..1 from the configuration (the server entry's preference, `spctl host servers`)
}

export interface ClientOptions {
  timeoutMs?: number
  /** A server that timed out or whose channel closed (maybe dead) is skipped this long; default 5000 ms. */
  retryDownMs?: number
  /**
   * A server that rejected for overload (alive, busy) is skipped this long, its channel kept; default
   * OVERLOAD_BACKOFF_MS (500 ms, two of spd's load samples). See selection.ts noteOverload.
   */
  overloadBackoffMs?: number
  /** How the host picks a server (selection.ts); default 'default'. */
  selection?: SelectionName
  /** Uniform in [0, 1) for the selection's randomness (tests inject a seeded one). */
  random?: () => number
}

/** Where the native session sends an appliance-placement file's blocks (lib/native/fuse-session.ts HostKey.remote). */
export interface BlockRemote { server: string, host: string, port: number, token: Buffer, keys: Buffer, grant: Buffer }

/** One block's output per block sent, and the hand-back of the reply frames they are views of (dataPool). */
export interface Batch { parts: Buffer[], release: () => void }

/**
 * A decision as decide() returns it; the data calls need one with a grant (apply_key permitted), fileKey one with
 * placement 'host'.
 */
export type Decision = DecideReply & { server: string, placement: Placement }

/**
 * The parts as one buffer: a view when they lie back to back in one allocation (the records of a run of slots read
 * with one pread; the blocks of one aligned write), else a copy. Saves a copy and an allocation per batch.
 */
function joined (parts: Uint8Array[], bytes: number): Buffer {
  const first = parts[0]
  let end = first.byteOffset + first.length
  for (let i = 1; i < parts.length; i++) {
    const p = parts[i]
    if (p.buffer !== first.buffer || p.byteOffset !== end) return Buffer.concat(parts, bytes)
    end += p.length
  }
  return Buffer.from(first.buffer, first.byteOffset, bytes)
}

/** New-file headers asked for at once (FileHeader count): one round trip serves this many new encrypted files. */
const HEADER_BATCH = 32
/** A spare new-file key (newHostFile) with less lease left than this is not used: its file would ask again at once. */
const SPARE_KEY_MIN_MS = 1000
/** Fewer spares than this left for a key after a create: the next batch is asked for (prefetch). */
const SPARES_LOW = 8

const POOLS_KEPT = 1024
const spareKeyOf = (d: Decision, keys: boolean): string => `${d.server}|${d.pv}|${d.key ?? ''}|${d.compression}|${keys ? 'keys' : ''}`

/**
 * A new-file header from a FileHeader batch; `sealed`: its key (host placement), sealed by the member whose raw
 * Ed25519 key is `from`, usable until `until` (performance.now ms).
 */
interface Spare { bytes: Buffer, sealed: Buffer | null, from: Buffer, until: number }
/** A new file under host placement: its header (bytes, decoded) and its key for `ttlMs` (newHostFile). */
export interface HostFile { bytes: Buffer, header: FileHeader, key: Buffer, ttlMs: number }
/**
 * Data-call errors after which the caller decides again and retries (crypt-io.ts granted; crypt-file.ts keeps
 * trying background seals): dataRequest() has marked a server that stopped answering down, so the new decision
 * comes from another one when there is one.
 */
export const REDECIDE: ReadonlySet<string> = new Set(['PEM_ERR_UNREACHABLE', 'PEM_ERR_CLOSED', 'PEM_ERR_TIMEOUT', 'PEM_ERR_KEY_NOT_GRANTED', 'PEM_ERR_OVERLOAD'])

export function splitAddr (addr: string): { host: string, port: number } {
  const i = addr.lastIndexOf(':')
  const port = Number(addr.slice(i + 1))
  if (i <= 0 || !Number.isInteger(port) || port <= 0 || port > 65535) throw new PemError('PEM_ERR_BAD_ARGUMENT', `'${addr}' is not HOST:PORT`)
  return { host: addr.slice(0, i).replace(/^\[|\]$/g, ''), port }
}

/** Enroll this host's key with the server named in the token, reached at one of `addrs`. */
export async function enroll (identity: Identity, addrs: string[], token: string, name: string, timeoutMs = 5000): Promise<EnrollReply> {
  const { serverId } = parseToken(token)
  let last: unknown = new PemError('PEM_ERR_UNREACHABLE', 'no cluster address given')
  for (const addr of addrs) {
    let ch: Channel | undefined
    try {
      ch = await connect({ ...splitAddr(addr), identity, role: 'enroll', expectedId: serverId, connectTimeoutMs: timeoutMs })
      return await ch.request(Op.Enroll, { token, name }, { timeoutMs }) as EnrollReply
    } catch (err) {
      last = err
      if (err instanceof PemError && (err.code === 'PEM_ERR_BAD_TOKEN' || err.code === 'PEM_ERR_PEER_KEY')) throw err
    } finally { ch?.close() }
  }
  throw PemError.from(last)
}

/** Counts `s`'s request in flight until it settles (the selection adds this host's own unanswered requests). */
async function inflight<T> (s: ServerState, request: Promise<T>): Promise<T> {
  s.inflight++
  try { return await request } finally { s.inflight-- }
}

function grantOf (d: Decision): string {
  if (!d.ok || d.grant === null || d.key === null) throw new PemError('PEM_ERR_KEY_NOT_GRANTED', 'the decision grants no key (bypass or denied)')
  return d.grant
}

/** Plaintext bytes a block brings into a batch (a compressed record opens to more than its own length). */
function plainOf (op: Op, part: Uint8Array): number {
  return op === Op.BlocksOpen && part.length >= TRAILER_BYTES ? Math.max(part.length, readTrailer(part).plainLen) : part.length
}

export class ClusterClient {
  readonly servers: ServerState[]
  /**
   * The host's policy version fence: the newest version a strict majority of its servers have reported (never lowered).
   * One server announcing a newer version does not move it (docs/PEMFS.md, "Policy version").
   */
  private policyVersion = 0
  private readonly pvListeners = new Set<(pv: number) => void>()
  private readonly keysDropListeners = new Set<(drop: KeysDropBody, server: string) => void>()
  /** Unused new-file headers by server|pv|key|compression|keys (newHeader, newHostFile). */
  private readonly spareHeaders = new Map<string, Spare[]>()
  /** The batch on its way for a spare key (prefetch): asked for while the last one is used, at most one per key. */
  private readonly spareFetches = new Map<string, Promise<void>>()
  /** Bumped by KeysDrop: a batch asked for before it is not kept (its keys may be the dropped ones). */
  private spareGeneration = 0
  /** Pool numbers by spare key (poolOf). */
  private readonly pools = new Map<string, number>()
  private lastPool = 0
  /** The server-list adoption under way (adoptCurrentList), shared by the decisions that wait for it. */
  private adopting: Promise<boolean> | null = null
  private readonly blockRequests = new Map<string, number>() // per server: native block requests already counted
  private readonly timeoutMs: number
  private readonly retryDownMs: number
  private readonly overloadBackoffMs: number
  private readonly selector: Selector

  /** The policy version fence (see policyVersion). */
  get pv (): number { return this.policyVersion }
  set pv (v: number) {
    if (v === this.policyVersion) return
    this.policyVersion = v
    for (const l of this.pvListeners) l(v)
  }

  /**
   * Calls `fn` when a server tells this host to wipe the file keys it holds (KeysDrop: a revocation, FORMAT.md §4.5);
   * returns an off.
   */
  onKeysDrop (fn: (drop: KeysDropBody, server: string) => void): () => void {
    this.keysDropListeners.add(fn)
    return () => { this.keysDropListeners.delete(fn) }
  }

  /** An unsolicited frame from a server: KeysDrop is the only one a host takes; anything else is ignored. */
  private readonly onServerMessage = (op: Op, body: unknown, ch: Channel): void => {
    if (op !== Op.KeysDrop) return
    const drop = checkKeysDrop(body)
    for (const k of [...this.spareHeaders.keys()]) if (k.endsWith('|keys')) this.spareHeaders.delete(k) // their sealed keys too
    this.spareGeneration++
    for (const l of this.keysDropListeners) l(drop, ch.peer.id)
  }

  /** Calls `fn` whenever the host adopts a new policy version (the mount drops its cached answers); returns an off. */
  onPolicyVersion (fn: (pv: number) => void): () => void {
    this.pvListeners.add(fn)
    return () => { this.pvListeners.delete(fn) }
  }

  constructor (private readonly identity: Identity, entries: ServerEntry[], opts: ClientOptions = {}) {
    this.timeoutMs = opts.timeoutMs ?? 2000
    this.retryDownMs = opts.retryDownMs ?? 5000
    this.overloadBackoffMs = opts.overloadBackoffMs ?? OVERLOAD_BACKOFF_MS
    this.selector = createSelector(opts.selection ?? 'default', { random: opts.random })
    this.servers = entries.map(entry => this.newState(entry))
  }

  /** The selection strategy in use. */
  get selection (): SelectionName { return this.selector.name }

  private newState (entry: ServerEntry): ServerState {
    return { entry, channel: null, connecting: null, state: 'up', downUntil: 0, load: null, loadAt: 0, weight: 50, latencyMs: null, pv: 0, requests: 0, rejections: 0, inflight: 0, preference: entry.preference ?? 0 }
  }

  /**
   * Swaps in a new server list (learnt from the cluster): servers whose id is unchanged keep their state (channel,
   * load, latency, counters) and take the new entry (address, name) for their next connection; removed servers'
   * channels are closed. The list is changed in place, so holders of `servers` see the new one.
   */
  replaceServers (entries: ServerEntry[]): void {
    const old = new Map(this.servers.map(s => [s.entry.id, s]))
    const next = entries.map(entry => {
      const kept = old.get(entry.id)
      if (kept === undefined) return this.newState(entry)
      old.delete(entry.id)
      kept.entry = entry
      kept.preference = entry.preference ?? 0
      return kept
    })
    for (const gone of old.values()) { gone.channel?.close(); gone.channel = null }
    this.servers.splice(0, this.servers.length, ...next)
    this.confirmFence()
  }

  /**
   * Every server this host could ask is ahead of its fence and every other one is down: the cluster may have moved on
   * without the down ones (a clean stop is the member's departure, itself a new version, so that the survivors are
   * ahead and the departed one cannot confirm it; Op.Servers leaves departed members out). Asks the ahead servers for
   * the cluster's current list and adopts the first that drops only servers that do not answer a ping now, so that
   * no server can talk the host out of one it reaches; the fence is then confirmed over that list. One adoption at a
   * time; true when a list was adopted.
   */
  private async adoptCurrentList (ahead: ReadonlySet<ServerState>): Promise<boolean> {
    this.adopting ??= (async () => {
      for (const s of ahead) {
        let r: ServersReply
        try { r = await this.serverList(s) } catch { continue }
        const listed = new Set(r.servers.map(e => e.id))
        if (!listed.has(s.entry.id)) continue // a list without the server that sent it is no list of the current cluster
        const dropped = this.servers.filter(x => !listed.has(x.entry.id))
        if (dropped.length === 0) continue // nothing to leave out: the fence waits for a majority as before
        if ((await Promise.all(dropped.map(async x => await this.answers(x)))).some(Boolean)) continue
        this.replaceServers(r.servers)
        return true
      }
      return false
    })().finally(() => { this.adopting = null })
    return await this.adopting
  }

  /** Whether `s` answers a ping now (a server marked down for overload still does). */
  private async answers (s: ServerState): Promise<boolean> {
    try { await this.ping(s); return true } catch { this.markDown(s); return false }
  }

  private async channelOf (s: ServerState): Promise<Channel> {
    if (s.channel !== null && !s.channel.closed) return s.channel
    if (s.connecting === null) {
      s.connecting = connect({ ...splitAddr(s.entry.addr), identity: this.identity, role: 'host', expectedId: s.entry.id, connectTimeoutMs: this.timeoutMs, timeoutMs: this.timeoutMs, onMessage: this.onServerMessage })
        .then(ch => { s.channel = ch; if (ch.helloReply !== undefined) this.seeVersion(s, ch.helloReply.pv); return ch })
        .finally(() => { s.connecting = null })
    }
    return await s.connecting
  }

  private seeVersion (s: ServerState, pv: number): void {
    s.pv = pv
    this.confirmFence()
  }

  /** Moves the fence up to the newest version a strict majority of the servers in the list have reported. */
  private confirmFence (): void {
    const newestFirst = this.servers.map(x => x.pv).sort((a, b) => b - a)
    const confirmed = newestFirst[Math.floor(this.servers.length / 2)] ?? 0 // reported by a strict majority
    if (confirmed > this.pv) this.pv = confirmed
  }

  /** Candidates in the selection's order: servers up (or due for a retry), less `skip`; the first is asked. */
  private candidates (skip: ReadonlySet<ServerState> = new Set()): ServerState[] {
    return this.selector.order(this.servers, Date.now()).filter(s => !skip.has(s))
  }

  /**
   * When no candidate is left: a server marked down by markDown (its channel dropped; one backing off for overload
   * keeps its channel and is left alone) and not due for a retry yet, not in `skip`, the soonest due first. Down
   * means "ask the others first", not "never": the member the host moved away from may be the only one serving now
   * (it came back while the one the host moved to stopped), so it is asked before the host gives up.
   */
  private lastResort (skip: ReadonlySet<ServerState>): ServerState | undefined {
    return this.servers.filter(s => s.state === 'down' && s.channel === null && !skip.has(s)).sort((a, b) => a.downUntil - b.downUntil)[0]
  }

  /** `s` stopped answering (timeout, closed channel) or cannot serve: skip it for retryDownMs, drop its channel. */
  private markDown (s: ServerState): void {
    noteDown(s, Date.now(), this.retryDownMs)
    s.channel?.close()
    s.channel = null
  }

  /** `s` rejected for overload: alive and busy; skip it for overloadBackoffMs only, keep its channel. */
  private backOff (s: ServerState): void {
    noteOverload(s, Date.now(), this.overloadBackoffMs)
  }

  /**
   * One decision. Overload and timeouts move on to the next server (an overloaded one is skipped for
   * overloadBackoffMs, one that timed out or closed for retryDownMs); a stale-version answer counts towards the host's
   * version fence (retried with the new fence once a majority confirms it), a server ahead of an unconfirmed version is
   * skipped for this decision only, and one behind the confirmed fence (or cut off from its cluster) is marked down; a
   * policy denial is returned at once (the caller turns it into EACCES).
   */
  async decide (req: Omit<DecideBody, 'pv'>): Promise<Decision> {
    let last: PemError = new PemError('PEM_ERR_UNREACHABLE', 'no server is up')
    const ahead = new Set<ServerState>()
    const lastResorts = new Set<ServerState>() // down servers asked by this decision because nothing else was left
    let adopted = false
    let attempts = this.servers.length * 2 + 1
    for (let attempt = 0; attempt < attempts; attempt++) {
      let s: ServerState | undefined = this.candidates(ahead)[0]
      if (s === undefined && (s = this.lastResort(new Set([...ahead, ...lastResorts]))) !== undefined) lastResorts.add(s)
      if (s === undefined) {
        // Only servers ahead of the fence answer: adopt the cluster's current list (once per decision) and ask again.
        if (ahead.size === 0 || adopted || !await this.adoptCurrentList(ahead)) break
        adopted = true
        ahead.clear()
        attempts = attempt + 1 + this.servers.length * 2 + 1
        continue
      }
      const started = process.hrtime.bigint()
      try {
        const ch = await this.channelOf(s)
        s.requests++
        const sent = this.pv
        const reply = await inflight(s, ch.request(Op.Decide, { ...req, pv: sent }, { timeoutMs: this.timeoutMs })) as DecideReply
        noteReply(s, reply, Number(process.hrtime.bigint() - started) / 1e6, Date.now())
        if (reply.ok || reply.reason === ERRORS.PEM_ERR_POLICY_DENY.id) { this.seeVersion(s, reply.pv); return { ...reply, server: s.entry.id, placement: reply.placement ?? 'appliance' } }
        s.rejections++
        if (reply.reason === ERRORS.PEM_ERR_STALE_POLICY.id) {
          this.seeVersion(s, reply.pv)
          // The fence moved (a majority now reports a newer version, by this reply or a concurrent decision): retry.
          if (this.pv !== sent) continue
          if (reply.pv > sent) {
            ahead.add(s) // newer than a majority has confirmed: not proof that the others are behind
            last = new PemError('PEM_ERR_STALE_POLICY', `server ${s.entry.name} is at version ${reply.pv}, not yet reported by a majority`)
            continue
          }
          last = new PemError('PEM_ERR_STALE_POLICY', `server ${s.entry.name} is at version ${reply.pv}, behind ${this.pv} or cut off from its cluster`)
          this.markDown(s)
          continue
        }
        const e = PemError.fromWire(reply.reason, undefined)
        last = new PemError(e.code, `${e.message} (server ${s.entry.name})`)
        if (reply.reason === ERRORS.PEM_ERR_OVERLOAD.id) this.backOff(s); else this.markDown(s)
      } catch (err) {
        last = PemError.from(err)
        s.rejections++
        this.markDown(s)
      }
    }
    throw last.code === 'PEM_ERR_CLOSED' || last.code === 'PEM_ERR_TIMEOUT' ? new PemError('PEM_ERR_UNREACHABLE', `no server answered: ${last.message}`) : last
  }

  // ---- data path: every call goes to the server that made the decision (grants are per server) ----

  /**
   * A new file header (random file id, newest key version, the decision's compression). Returns its bytes, decoded.
   * Headers come HEADER_BATCH at a time; the spare ones serve the next new files of the same server, key, compression
   * and policy version without a round trip (a key rotation is a new version), each exactly once.
   */
  async newHeader (d: Decision, blockBytes?: number): Promise<{ bytes: Buffer, header: FileHeader }> {
    const { bytes } = await this.spare(d, blockBytes, false)
    return { bytes, header: decodeHeader(bytes) }
  }

  /**
   * A new file under host placement: its header and its key (as fileKey returns it), both from one FileHeader batch
   * that carries each new file's sealed key, so a new file costs no round trip of its own. A spare whose lease has
   * less than SPARE_KEY_MIN_MS left is dropped; a server that sends no keys gets a FileKey request per file.
   */
  async newHostFile (d: Decision): Promise<HostFile> {
    const s = await this.spare(d, undefined, true)
    if (s.sealed === null) return { bytes: s.bytes, header: decodeHeader(s.bytes), ...await this.fileKey(d, s.bytes) }
    return this.opened(s, performance.now())
  }

  /**
   * Up to `max` more new host files for `d` from the spares already here (no round trip; none when there are
   * none): the native session keeps them for the next creates of the pool poolOf(d) names. The next batch is asked
   * for at once, so it is here when the session has used these.
   */
  spareHostFiles (d: Decision, max: number): HostFile[] {
    if (d.placement !== 'host' || d.pv !== this.pv) return []
    const list = this.spareHeaders.get(spareKeyOf(d, true))
    const out: HostFile[] = []
    const now = performance.now()
    while (list !== undefined && list.length > 0 && out.length < max) {
      const s = list.pop() as Spare
      if (s.sealed !== null && s.until - now >= SPARE_KEY_MIN_MS) out.push(this.opened(s, now))
    }
    this.prefetch(d, true)
    return out
  }

  /** A spare with its sealed key opened (the key in a pooled secure buffer: releaseFileKey once handed over). */
  private opened (s: Spare, now: number): HostFile {
    const header = decodeHeader(s.bytes)
    const key = openFileKey(this.identity, s.from, s.sealed as Buffer, header.fileId, header.keyVersion)
    return { bytes: s.bytes, header, key, ttlMs: Math.max(0, Math.floor(s.until - now)) }
  }

  /** The number naming the spare new host files of decisions like `d` (the native session's pool), 0 for none. */
  poolOf (d: Decision): number {
    if (d.placement !== 'host' || d.pv !== this.pv || d.bypass) return 0
    const k = spareKeyOf(d, true)
    let n = this.pools.get(k)
    if (n === undefined) {
      if (this.pools.size >= POOLS_KEPT) this.pools.clear() // ids are never reused, so a stale one names nothing
      n = ++this.lastPool
      this.pools.set(k, n)
    }
    return n
  }

  private async spare (d: Decision, blockBytes: number | undefined, keys: boolean): Promise<Spare> {
    if (keys && d.placement !== 'host') throw new PemError('PEM_ERR_KEY_NOT_GRANTED', 'the decision places crypto on the appliance')
    // Spares are kept only for the version this host is on: a decision of an older one asks for its header alone.
    const pooled = blockBytes === undefined && d.pv === this.pv
    const spareKey = spareKeyOf(d, keys)
    if (pooled) {
      let s = this.popSpare(spareKey, keys)
      const ahead = this.spareFetches.get(spareKey)
      if (s === undefined && ahead !== undefined) {
        await ahead
        s = this.popSpare(spareKey, keys)
      }
      if (s !== undefined) {
        if ((this.spareHeaders.get(spareKey)?.length ?? 0) < SPARES_LOW) this.prefetch(d, keys)
        return s
      }
    }
    const generation = this.spareGeneration
    const spares = await this.fetchSpares(d, blockBytes, keys, pooled ? HEADER_BATCH : 1)
    const first = spares.shift() as Spare
    if (pooled) this.keepSpares(d, spareKey, spares, generation)
    return first
  }

  private popSpare (spareKey: string, keys: boolean): Spare | undefined {
    const list = this.spareHeaders.get(spareKey) ?? []
    for (let s = list.pop(); s !== undefined; s = list.pop()) if (!keys || s.until - performance.now() >= SPARE_KEY_MIN_MS) return s
    return undefined
  }

  /** One FileHeader batch of `count` headers (with their sealed keys when `keys`) from the decision's server. */
  private async fetchSpares (d: Decision, blockBytes: number | undefined, keys: boolean, count: number): Promise<Spare[]> {
    const asked = performance.now()
    const { reply, ch } = await this.dataRequestOn(d, Op.FileHeader, { grant: grantOf(d), blockBytes, count, keys: keys || undefined })
    const r = reply as FileHeaderReply
    const until = asked + (r.ttlMs ?? 0)
    return [r.header, ...(r.more ?? [])].map((bytes, i): Spare => ({ bytes, sealed: r.sealed?.[i] ?? null, from: ch.peer.key, until }))
  }

  private keepSpares (d: Decision, spareKey: string, spares: Spare[], generation: number): void {
    if (spares.length === 0 || generation !== this.spareGeneration || d.pv !== this.pv) return
    for (const k of this.spareHeaders.keys()) if (k.split('|')[1] !== String(d.pv)) this.spareHeaders.delete(k)
    this.spareHeaders.set(spareKey, [...(this.spareHeaders.get(spareKey) ?? []), ...spares])
  }

  /**
   * Asks for the next batch of spares like `d`'s in the background, unless one is on its way: a burst of creates
   * then finds it here instead of waiting for the round trip every HEADER_BATCH files. A failure is dropped (the
   * next create asks itself and reports it).
   */
  private prefetch (d: Decision, keys: boolean): void {
    const spareKey = spareKeyOf(d, keys)
    if (d.pv !== this.pv || this.spareFetches.has(spareKey)) return
    const generation = this.spareGeneration
    const fetch = this.fetchSpares(d, undefined, keys, HEADER_BATCH)
      .then(spares => { this.keepSpares(d, spareKey, spares, generation) }, () => undefined)
      .finally(() => { this.spareFetches.delete(spareKey) })
    this.spareFetches.set(spareKey, fetch)
  }

  /**
   * Seals plaintext blocks (numbers `blocks[i]`, bytes `plain[i]`; only a file's last block may be shorter than its
   * block size) and returns one record per block, to be written at recordOffset(). Large inputs are split into
   * batches (LIMITS) sent at once on the one channel. The records are views of pooled reply frames: call release()
   * once they are written, and not touch them after.
   */
  async sealBlocks (d: Decision, header: Buffer, blocks: number[], plain: Uint8Array[]): Promise<Batch> {
    return await this.batches(d, Op.BlocksSeal, header, blocks, plain)
  }

  /** Opens records found by parseSlot() (holes are not sent); returns each block's plaintext, released the same way. */
  async openBlocks (d: Decision, header: Buffer, blocks: number[], records: Uint8Array[]): Promise<Batch> {
    return await this.batches(d, Op.BlocksOpen, header, blocks, records)
  }

  /**
   * The key of the file whose header is `header`, released by the decision's server under host placement: opened
   * with this host's identity and checked against the header's file id and key version. `key` is a sodium_malloc
   * buffer of 32 bytes: give it back with releaseFileKey (crypto/file-key.ts, wipes it) once handed to native code. `ttlMs`: how long it may be used before
   * deciding again. Errors as the blocks calls (PEM_ERR_KEY_NOT_GRANTED and dead servers are in REDECIDE).
   */
  async fileKey (d: Decision, header: Buffer): Promise<{ key: Buffer, ttlMs: number }> {
    const h = decodeHeader(header)
    if (d.placement !== 'host') throw new PemError('PEM_ERR_KEY_NOT_GRANTED', 'the decision places crypto on the appliance')
    const { reply, ch } = await this.dataRequestOn(d, Op.FileKey, { grant: grantOf(d), header })
    const r = reply as FileKeyReply
    return { key: openFileKey(this.identity, ch.peer.key, r.sealed, h.fileId, h.keyVersion), ttlMs: r.ttlMs }
  }

  /**
   * Appliance placement on the native block path (docs/CHANNEL.md §8): the decision's server installs the grant at its
   * native block service and hands out a one-use token; the record keys come from this host's end of the same TLS
   * channel (exporter, the token as context). What the native session needs to seal and open the file's blocks there
   * (`keys` is secret: zero it once handed over), and how long the grant lasts.
   */
  async blockChannel (d: Decision, header: Buffer): Promise<{ remote: BlockRemote, ttlMs: number, seal: boolean }> {
    const { reply, ch, s } = await this.dataRequestOn(d, Op.BlockChannel, { grant: grantOf(d), header })
    const r = reply as BlockChannelReply
    const keys = ch.exportKeys(BLOCK_CHANNEL_KEY_BYTES, BLOCK_CHANNEL_LABEL, r.token)
    const host = splitAddr(s.entry.addr).host
    return { remote: { server: s.entry.id, host, port: r.port, token: r.token, keys, grant: r.handle }, ttlMs: r.ttlMs, seal: r.seal }
  }

  /**
   * What the native block path saw (session.stats().blockServers, polled by mount.ts): each reply's load and weight
   * feed the selection table as a control reply's do, its version the fence, its requests the server's count.
   */
  noteBlockServers (seen: ReadonlyArray<{ server: string, load: number, weight: number, pv: number, alive: boolean, requests: number }>): void {
    const now = Date.now()
    for (const b of seen) {
      const s = this.servers.find(x => x.entry.id === b.server)
      if (s === undefined) continue
      const sent = this.blockRequests.get(b.server) ?? 0
      if (b.requests === sent) continue // nothing new from it since the last look
      s.requests += b.requests - sent
      this.blockRequests.set(b.server, b.requests)
      if (!b.alive || b.weight === 0) continue
      s.load = { total: b.load, cpu: s.load?.cpu ?? 0, nic: s.load?.nic ?? 0, crypto: s.load?.crypto ?? 0 }
      s.loadAt = now
      s.weight = b.weight
      this.seeVersion(s, b.pv)
    }
  }

  /** Whether server `id` is in the list and not marked down: a cached decision it made may still be used. */
  isUp (id: string): boolean { return this.servers.some(s => s.entry.id === id && s.state === 'up') }

  /** The native block path lost server `id` (timeout, closed connection): skip it as dataRequest() would. */
  noteServerLost (id: string): void {
    const s = this.servers.find(x => x.entry.id === id)
    if (s !== undefined) this.markDown(s)
  }

  private async batches (d: Decision, op: Op, header: Buffer, blocks: number[], parts: Uint8Array[]): Promise<Batch> {
    if (blocks.length !== parts.length) throw new PemError('PEM_ERR_BAD_ARGUMENT', 'one buffer per block number')
    const runs: Array<Promise<BlocksReply>> = []
    const grant = grantOf(d)
    for (let start = 0; start < blocks.length;) {
      let end = start
      let bytes = 0
      let budget = 0
      while (end < blocks.length && end - start < LIMITS.blocksPerBatch && (end === start || budget + plainOf(op, parts[end]) <= LIMITS.batchBytes)) {
        budget += plainOf(op, parts[end])
        bytes += parts[end++].length
      }
      const slice = parts.slice(start, end)
      const body = { grant, header, blocks: blocks.slice(start, end), lens: slice.map(p => p.length), data: joined(slice, bytes) }
      runs.push(this.dataRequest(d, op, body) as Promise<BlocksReply>)
      start = end
    }
    const replies = await Promise.all(runs)
    const out: Buffer[] = []
    for (const r of replies) {
      let off = 0
      for (const len of r.lens) { out.push(r.data.subarray(off, off + len)); off += len }
    }
    return { parts: out, release: () => { for (const r of replies) dataPool.give(r.data) } }
  }

  private async dataRequest (d: Decision, op: Op, body: unknown): Promise<unknown> {
    return (await this.dataRequestOn(d, op, body)).reply
  }

  /** dataRequest, with the channel and server it went over. */
  private async dataRequestOn (d: Decision, op: Op, body: unknown): Promise<{ reply: unknown, ch: Channel, s: ServerState }> {
    const s = this.servers.find(x => x.entry.id === d.server)
    if (s === undefined) throw new PemError('PEM_ERR_UNREACHABLE', `server ${d.server} is not in this host's table`)
    let ch: Channel
    try { ch = await this.channelOf(s) } catch (err) {
      this.markDown(s)
      throw new PemError('PEM_ERR_UNREACHABLE', `server ${s.entry.name}: ${(err as Error).message}`)
    }
    s.requests++
    try {
      return { reply: await inflight(s, ch.request(op, body, { timeoutMs: this.timeoutMs })), ch, s }
    } catch (err) {
      // Like decide(): a server that stopped answering is skipped for a while, a busy one briefly, so the caller's
      // new decision (REDECIDE) goes elsewhere instead of waiting on it again.
      const code = PemError.from(err).code
      if (code === 'PEM_ERR_OVERLOAD') this.backOff(s); else if (code === 'PEM_ERR_TIMEOUT' || code === 'PEM_ERR_CLOSED') this.markDown(s)
      throw err
    }
  }

  async ping (s: ServerState): Promise<PingReply> {
    const ch = await this.channelOf(s)
    const r = await ch.request(Op.Ping, null, { timeoutMs: this.timeoutMs }) as PingReply
    s.load = r.load; s.loadAt = Date.now(); s.weight = r.weight; this.seeVersion(s, r.pv)
    return r
  }

  /** The cluster's current server list for this host, from server `s` (Op.Servers). */
  async serverList (s: ServerState): Promise<ServersReply> {
    const ch = await this.channelOf(s)
    const r = await ch.request(Op.Servers, null, { timeoutMs: this.timeoutMs }) as ServersReply
    this.seeVersion(s, r.pv)
    return r
  }

  /**
   * This host's key version counts (Op.KeyUsage) to every server in its list at once; one that cannot take them now
   * gets them at the next report (key-census.ts). Resolves to how many took them.
   */
  async reportKeyUsage (body: KeyUsageBody): Promise<number> {
    const sent = await Promise.allSettled(this.servers.map(async s => await (await this.channelOf(s)).request(Op.KeyUsage, body, { timeoutMs: this.timeoutMs })))
    return sent.filter(r => r.status === 'fulfilled').length
  }

  close (): void {
    for (const s of this.servers) { s.channel?.close(); s.channel = null }
  }
}
