// The cluster transport over real sockets: a TLS 1.3 listener that admits only member keys of the installed
// configuration (refused at the handshake, before any frame is read; connections per source address are limited before
// any TLS work, as on the host listener), and one outbound channel per peer address,
// pinned to the key the configuration names for that address. Each packet is a request with an empty reply:
// Op.Heartbeat carries a signed cluster message, Op.PolicySetFetch an encrypted policy set (FORMAT.md §5–6). The
// reply is only an acknowledgment: a channel whose packets go unacknowledged for ackTimeoutMs is stalled (a healed
// partition leaves TCP in retransmission backoff for seconds to minutes), so it is closed and dialled afresh.
import type { Channel } from '../../channel/channel'
import type { ConnectionLimits } from '../../channel/limits'
import { connect, listen, type ChannelServer, type RefuseReason } from '../../channel/tls'
import type { Identity } from '../../crypto/identity'
import { PemError } from '../../wire/errors'
import { Op } from '../../wire/opcodes'
import { splitHostPort } from '../config'
import type { Packet, Transport } from './transport'

/** Policy sets carry whole configurations (10,000 rules and 1,000 hosts are a few MB). */
const CLUSTER_MAX_FRAME = 32 * 1024 * 1024
/** Packets queued per peer while its channel connects; heartbeats are periodic, so older ones are dropped. */
const QUEUE_LIMIT = 8

export interface ChannelTransportOptions {
  identity: Identity
  /** HOST:PORT to listen on for members. */
  listen: string
  /** Is this key a member (installed, not removed) that may connect? */
  admits: (id: string) => boolean
  /** The member id a peer address belongs to, to pin its key; undefined: the address is unknown (packet dropped). */
  idOf: (addr: string) => string | undefined
  receive: (packet: Packet) => void
  /** Per-source admission on the listener (lib/channel/limits.ts); undefined: none. */
  limits?: ConnectionLimits
  onRefused: (reason: RefuseReason, peer: { id?: string, remoteAddress?: string }) => void
  /** A connect attempt to a peer failed: wait this long before the next one (default 1000 ms). */
  retryMs?: number
  connectTimeoutMs?: number
  /** A packet not acknowledged within this time marks its channel stalled: closed, and redialled (default 2000 ms). */
  ackTimeoutMs?: number
}

interface Peer { id: string, channel: Channel | null, connecting: boolean, queue: Packet[], retryAt: number }

export class ChannelTransport implements Transport {
  private server: ChannelServer | null = null
  private readonly peers = new Map<string, Peer>()
  private closed = false
  addr = ''
  readonly counts = { sent: 0, received: 0, dropped: 0, connectFailures: 0, stalled: 0 }

  constructor (private readonly o: ChannelTransportOptions) {}

  async start (): Promise<string> {
    const { host, port } = splitHostPort(this.o.listen)
    this.server = await listen({
      host,
      port,
      identity: this.o.identity,
      maxFrameBytes: CLUSTER_MAX_FRAME,
      authorize: peer => this.o.admits(peer.id) ? 'session' : false,
      limits: this.o.limits,
      hello: h => {
        if (h.role !== 'member') throw new PemError('PEM_ERR_BAD_ARGUMENT', 'the cluster listener serves members only')
        return { name: '', pv: 0 }
      },
      onRefused: (reason, peer) => this.o.onRefused(reason, peer),
      onChannel: ch => { ch.onRequest = async (op, body) => { this.deliver(op, body, ch); return null } }
    })
    const a = this.server.address()
    this.addr = `${a.address.includes(':') ? `[${a.address}]` : a.address}:${a.port}`
    return this.addr
  }

  /** A packet from a peer; throws (an error reply) for anything that is not a cluster packet. */
  private deliver (op: Op, body: unknown, ch: Channel): void {
    if (this.closed) return
    if (!(body instanceof Uint8Array) || (op !== Op.Heartbeat && op !== Op.PolicySetFetch)) {
      throw new PemError('PEM_ERR_CLUSTER_MSG', `opcode 0x${op.toString(16)} with a ${typeof body} body is not a cluster packet`)
    }
    // A member removed since the channel opened is cut off at once.
    if (!this.o.admits(ch.peer.id)) { ch.close(new PemError('PEM_ERR_REMOVED_MEMBER')); return }
    this.counts.received++
    this.o.receive({ kind: op === Op.Heartbeat ? 'msg' : 'set', from: ch.peer.id, to: this.addr, bytes: Buffer.from(body.buffer, body.byteOffset, body.byteLength) })
  }

  send (packet: Packet): void {
    if (this.closed) return
    const id = this.o.idOf(packet.to)
    if (id === undefined) { this.counts.dropped++; return }
    let peer = this.peers.get(packet.to)
    if (peer !== undefined && peer.id !== id) { peer.channel?.close(); this.peers.delete(packet.to); peer = undefined } // the address changed hands
    if (peer === undefined) {
      peer = { id, channel: null, connecting: false, queue: [], retryAt: 0 }
      this.peers.set(packet.to, peer)
    }
    if (peer.channel !== null && !peer.channel.closed) { this.write(peer, peer.channel, packet); return }
    peer.queue.push(packet)
    if (peer.queue.length > QUEUE_LIMIT) { peer.queue.shift(); this.counts.dropped++ }
    this.dial(packet.to, peer)
  }

  private write (peer: Peer, ch: Channel, packet: Packet): void {
    this.counts.sent++
    ch.request(packet.kind === 'msg' ? Op.Heartbeat : Op.PolicySetFetch, packet.bytes, { timeoutMs: this.o.ackTimeoutMs ?? 2000 }).catch((err: PemError) => {
      this.counts.dropped++
      if (err.code === 'PEM_ERR_TIMEOUT' && peer.channel === ch) {
        this.counts.stalled++
        ch.close(new PemError('PEM_ERR_TIMEOUT', 'cluster packets unacknowledged: the connection is stalled'))
        peer.channel = null // the next packet dials a fresh connection
      }
    })
  }

  private dial (addr: string, peer: Peer): void {
    if (peer.connecting || Date.now() < peer.retryAt) return
    peer.connecting = true
    const { host, port } = splitHostPort(addr)
    connect({ host, port, identity: this.o.identity, role: 'member', expectedId: peer.id, connectTimeoutMs: this.o.connectTimeoutMs ?? 2000, maxFrameBytes: CLUSTER_MAX_FRAME })
      .then(ch => {
        peer.connecting = false
        if (this.closed || this.peers.get(addr) !== peer) { ch.close(); return }
        peer.channel = ch
        for (const p of peer.queue.splice(0)) this.write(peer, ch, p)
      })
      .catch(() => {
        peer.connecting = false
        peer.retryAt = Date.now() + (this.o.retryMs ?? 1000)
        this.counts.connectFailures++
        this.counts.dropped += peer.queue.length
        peer.queue.length = 0
      })
  }

  /** Drop the channel to an address (its member was removed or changed key). */
  private forget (addr: string): void {
    this.peers.get(addr)?.channel?.close()
    this.peers.delete(addr)
  }

  /** Close channels of peers whose key is no longer admitted (after an install removed them). */
  prune (): void {
    for (const [addr, p] of this.peers) if (!this.o.admits(p.id)) this.forget(addr)
    for (const ch of this.server?.channels ?? []) if (!this.o.admits(ch.peer.id)) ch.close(new PemError('PEM_ERR_REMOVED_MEMBER'))
  }

  async close (): Promise<void> {
    this.closed = true
    for (const p of this.peers.values()) p.channel?.close()
    this.peers.clear()
    await this.server?.close()
  }
}
