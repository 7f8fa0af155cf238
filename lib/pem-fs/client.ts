// Host-side client of the cluster: enrollment, pinned channels to every server, and decisions with failover.
// Each server's last load, weight, latency and policy version are kept; the host picks its own target from them.
import { connect } from '../channel/tls'
import type { Channel } from '../channel/channel'
import type { Identity } from '../crypto/identity'
import { ERRORS, PemError } from '../wire/errors'
import { Op } from '../wire/opcodes'
import type { DecideBody, DecideReply, EnrollReply, LoadValues, PingReply, ServerEntry } from '../wire/packets'
import { parseToken } from '../wire/token'

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
}

export interface ClientOptions { timeoutMs?: number, retryDownMs?: number }

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

export class ClusterClient {
  readonly servers: ServerState[]
  /** Newest policy version this host has seen. */
  pv = 0
  private readonly timeoutMs: number
  private readonly retryDownMs: number

  constructor (private readonly identity: Identity, entries: ServerEntry[], opts: ClientOptions = {}) {
    this.timeoutMs = opts.timeoutMs ?? 2000
    this.retryDownMs = opts.retryDownMs ?? 5000
    this.servers = entries.map(entry => ({ entry, channel: null, connecting: null, state: 'up', downUntil: 0, load: null, loadAt: 0, weight: 50, latencyMs: null, pv: 0, requests: 0, rejections: 0 }))
  }

  private async channelOf (s: ServerState): Promise<Channel> {
    if (s.channel !== null && !s.channel.closed) return s.channel
    if (s.connecting === null) {
      s.connecting = connect({ ...splitAddr(s.entry.addr), identity: this.identity, role: 'host', expectedId: s.entry.id, connectTimeoutMs: this.timeoutMs, timeoutMs: this.timeoutMs })
        .then(ch => { s.channel = ch; if (ch.helloReply !== undefined) this.seeVersion(s, ch.helloReply.pv); return ch })
        .finally(() => { s.connecting = null })
    }
    return await s.connecting
  }

  private seeVersion (s: ServerState, pv: number): void {
    s.pv = pv
    if (pv > this.pv) this.pv = pv
  }

  /** Candidates in order of preference: servers up (or due for a retry), least projected load weighted first. */
  private candidates (): ServerState[] {
    const now = Date.now()
    const usable = this.servers.filter(s => s.state === 'up' || s.downUntil <= now)
    const score = (s: ServerState): number => (s.load?.total ?? 0) + (s.weight > 90 ? 10 : s.weight / 1000) + (s.latencyMs ?? 0) / 1000
    return usable.sort((a, b) => score(a) - score(b))
  }

  private markDown (s: ServerState): void {
    s.state = 'down'
    s.downUntil = Date.now() + this.retryDownMs
    s.channel?.close()
    s.channel = null
  }

  /**
   * One decision. Overload and timeouts move on to the next server; a stale-version answer makes the host adopt the
   * newer version and retry; a policy denial is returned at once (the caller turns it into EACCES).
   */
  async decide (req: Omit<DecideBody, 'pv'>): Promise<DecideReply & { server: string }> {
    let last: PemError = new PemError('PEM_ERR_UNREACHABLE', 'no server is up')
    for (let attempt = 0; attempt < this.servers.length * 2 + 1; attempt++) {
      const s = this.candidates()[0]
      if (s === undefined) break
      const started = process.hrtime.bigint()
      try {
        const ch = await this.channelOf(s)
        s.requests++
        const reply = await ch.request(Op.Decide, { ...req, pv: this.pv }, { timeoutMs: this.timeoutMs }) as DecideReply
        const ms = Number(process.hrtime.bigint() - started) / 1e6
        s.latencyMs = s.latencyMs === null ? ms : s.latencyMs * 0.8 + ms * 0.2
        s.state = 'up'; s.load = reply.load; s.loadAt = Date.now(); s.weight = reply.weight
        if (reply.ok || reply.reason === ERRORS.PEM_ERR_POLICY_DENY.id) { this.seeVersion(s, reply.pv); return { ...reply, server: s.entry.id } }
        s.rejections++
        if (reply.reason === ERRORS.PEM_ERR_STALE_POLICY.id) {
          if (reply.pv > this.pv) { this.pv = reply.pv; s.pv = reply.pv; continue }
          s.pv = reply.pv
          last = new PemError('PEM_ERR_STALE_POLICY', `server ${s.entry.name} is at version ${reply.pv}, behind ${this.pv}`)
          this.markDown(s)
          continue
        }
        const e = PemError.fromWire(reply.reason, undefined)
        last = new PemError(e.code, `${e.message} (server ${s.entry.name})`)
        this.markDown(s)
      } catch (err) {
        last = PemError.from(err)
        s.rejections++
        this.markDown(s)
      }
    }
    throw last.code === 'PEM_ERR_CLOSED' || last.code === 'PEM_ERR_TIMEOUT' ? new PemError('PEM_ERR_UNREACHABLE', `no server answered: ${last.message}`) : last
  }

  async ping (s: ServerState): Promise<PingReply> {
    const ch = await this.channelOf(s)
    const r = await ch.request(Op.Ping, null, { timeoutMs: this.timeoutMs }) as PingReply
    s.load = r.load; s.loadAt = Date.now(); s.weight = r.weight; this.seeVersion(s, r.pv)
    return r
  }

  close (): void {
    for (const s of this.servers) { s.channel?.close(); s.channel = null }
  }
}
