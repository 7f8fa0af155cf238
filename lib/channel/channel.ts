// A Channel: request/reply RPC over lib/wire frames on one authenticated TLS socket (opened by lib/channel/tls.ts).
// Many requests may be in flight (u32 ids, replies matched by id, in any order); frames queued in one tick leave in
// one socket write. Protocol rules enforced here: Hello first, bodies checked by opcode, errors as [id, detail],
// a stream error is fatal (one notice frame, then close). Design and rationale: docs/CHANNEL.md.
import { EventEmitter } from 'node:events'
import type { Socket } from 'node:net'
import { dataPool } from './buffer-pool'
import { ERRORS, PemError, isErrorCode } from '../wire/errors'
import { FLAG_ERROR, FLAG_REPLY, FrameSplitter, MAX_FRAME_BYTES, PREAUTH_FRAME_BYTES, encodeFrameParts, type Frame, type FrameHeader } from '../wire/frame'
import { Op, isOp } from '../wire/opcodes'
import { REPLY_CHECKS, REQUEST_CHECKS, checkErrorBody, type HelloBody, type HelloReply } from '../wire/packets'

export type Role = HelloBody['role']
/** What the server's authorize() granted: a full session, or enrollment only (Op.Enroll, nothing else). */
export type Mode = 'session' | 'enroll'

export interface PeerInfo {
  /** Raw 32-byte Ed25519 public key from the peer's TLS certificate (proven by the TLS 1.3 CertificateVerify). */
  key: Buffer
  /** Hex SHA-256 of key. */
  id: string
  alpn: string
  remoteAddress: string
}

/**
 * A reply body whose `buffers` (taken from dataPool) go back to the pool once the reply is written: spd's data
 * handlers answer with their output batch this way, so it is reused instead of allocated per request.
 */
export class PooledReply {
  constructor (readonly body: unknown, readonly buffers: Uint8Array[]) {}
}

/** Returns the reply body (or a PooledReply, or a promise of either). */
export type RequestHandler = (op: Op, body: unknown, ch: Channel) => unknown
export type MessageHandler = (op: Op, body: unknown, ch: Channel) => void

export interface RequestOptions { timeoutMs?: number }

/** Options shared by both ends (listen() and connect() pass them through). */
export interface ChannelOptions {
  maxFrameBytes?: number
  /** Default deadline of request(); DESIGN §7: 2 s. */
  timeoutMs?: number
  /** Requests served at once; beyond it the socket stops reading until one finishes. */
  maxConcurrent?: number
  /**
   * Server side: the largest frame read after the Hello, by the role the peer declared and the frame's opcode (at
   * most maxFrameBytes); a larger one is PEM_ERR_FRAME_TOO_LARGE and closes the channel. Default: maxFrameBytes.
   */
  frameLimit?: (role: Role, op: number) => number
}

/** @internal Wiring from tls.ts. */
export interface ChannelInit extends ChannelOptions {
  socket: Socket
  side: 'client' | 'server'
  peer: PeerInfo
  mode: Mode
  /** Server side: answer the peer's Hello (throw a PemError to refuse); called once, before any other frame. */
  onHello?: (hello: HelloBody, ch: Channel) => HelloReply
}

interface Pending {
  op: number
  resolve: (v: unknown) => void
  reject: (e: PemError) => void
  timer: NodeJS.Timeout | undefined
}

const COALESCE_COPY_LIMIT = 64 * 1024
/** Requests whose pooled frame the channel gives back after replying (see onPeerRequest). */
const RECYCLED_REQUESTS: ReadonlySet<number> = new Set([Op.BlocksSeal, Op.BlocksOpen])
const DESTROY_AFTER_END_MS = 1000

export class Channel extends EventEmitter {
  readonly peer: PeerInfo
  readonly side: 'client' | 'server'
  readonly mode: Mode
  /** Negotiated protocol version (0 until the Hello completes). */
  version = 0
  /** Server side: the role the client declared in its Hello. Client side: our own role. */
  role: Role | undefined
  /** Client side: the server's Hello reply. */
  helloReply: HelloReply | undefined
  /** Serves the peer's requests; the returned value (or awaited promise) is the reply body. */
  onRequest: RequestHandler | undefined
  /** Receives unsolicited frames (request id 0). */
  onMessage: MessageHandler | undefined
  /** Why the channel closed, once it has. */
  closeReason: PemError | undefined
  /** True when closeReason came from the peer's notice frame. */
  closedByPeer = false

  private readonly socket: Socket
  private readonly splitter: FrameSplitter
  private readonly onHello: ChannelInit['onHello']
  private readonly defaultTimeout: number
  private readonly maxConcurrent: number
  private readonly frameLimit: ChannelOptions['frameLimit']
  private readonly pending = new Map<number, Pending>()
  private state: 'hello' | 'open' | 'closed' = 'hello'
  private nextId = 1
  private outQ: Buffer[] = []
  private outBytes = 0
  private outReleases: Array<() => void> = [] // run once the queued frames are written
  private flushScheduled = false
  private serving = 0
  private paused = false
  private offered: HelloBody | undefined

  constructor (init: ChannelInit) {
    super()
    this.socket = init.socket
    this.side = init.side
    this.peer = init.peer
    this.mode = init.mode
    this.onHello = init.onHello
    this.splitter = new FrameSplitter(init.maxFrameBytes ?? MAX_FRAME_BYTES, dataPool, this.side === 'server' ? h => this.admit(h) : undefined)
    this.defaultTimeout = init.timeoutMs ?? 2000
    this.maxConcurrent = init.maxConcurrent ?? 256
    this.frameLimit = init.frameLimit
    this.socket.setNoDelay(true)
    this.socket.setKeepAlive(true, 15_000)
    this.socket.on('data', (chunk: Buffer) => this.onData(chunk))
    this.socket.on('drain', () => this.updateFlow())
    this.socket.on('error', (err) => this.close(new PemError('PEM_ERR_CLOSED', `socket error: ${err.message}`, { cause: err })))
    this.socket.on('close', () => this.close(new PemError('PEM_ERR_CLOSED', 'peer closed the connection')))
  }

  get closed (): boolean { return this.state === 'closed' }
  get inFlight (): number { return this.pending.size }

  /**
   * Keying material from this channel's TLS 1.3 session (RFC 8446 §7.5, `exportKeyingMaterial`): both ends of one
   * channel get the same bytes for the same label and context, nobody else can compute them. The block channel's
   * record keys (docs/CHANNEL.md §8).
   */
  exportKeys (bytes: number, label: string, context: Buffer): Buffer {
    const tls = this.socket as Socket & { exportKeyingMaterial?: (n: number, label: string, ctx?: Buffer) => Buffer }
    if (typeof tls.exportKeyingMaterial !== 'function') throw new PemError('PEM_ERR_BAD_ARGUMENT', 'this channel is not TLS: no exporter')
    return tls.exportKeyingMaterial(bytes, label, context)
  }

  /** Send a request and wait for its reply body (checked by REPLY_CHECKS[op]); errors arrive as PemError. */
  request (op: Op, body: unknown, opts?: RequestOptions): Promise<unknown> {
    if (this.state !== 'open') return Promise.reject(this.notOpen())
    return this.send(op, body, opts?.timeoutMs ?? this.defaultTimeout)
  }

  /** Send an unsolicited frame (request id 0); the peer's onMessage receives it. */
  notify (op: Op, body: unknown): void {
    if (this.state !== 'open') throw this.notOpen()
    if (!isOp(op)) throw new PemError('PEM_ERR_BAD_OPCODE', `unknown opcode ${String(op)}`)
    this.queue(encodeFrameParts(op, 0, body))
  }

  /** Close the channel: pending requests reject with PEM_ERR_CLOSED, queued frames are flushed, the socket ends. */
  close (reason?: PemError): void {
    if (this.state === 'closed') return
    this.state = 'closed'
    this.closeReason = reason ?? new PemError('PEM_ERR_CLOSED', 'channel closed locally')
    const err = new PemError('PEM_ERR_CLOSED', `channel closed: ${this.closeReason.message}`, { cause: this.closeReason })
    const waiting = [...this.pending.values()]
    this.pending.clear()
    for (const p of waiting) { if (p.timer !== undefined) clearTimeout(p.timer); p.reject(err) }
    this.flush()
    if (!this.socket.destroyed) {
      this.socket.end()
      setTimeout(() => this.socket.destroy(), DESTROY_AFTER_END_MS).unref()
    }
    this.emit('close', this.closeReason)
  }

  /** @internal tls.ts: the client's Hello; resolves with the server's reply and opens the channel. */
  async clientHello (hello: HelloBody, timeoutMs: number): Promise<HelloReply> {
    if (this.side !== 'client' || this.state !== 'hello' || this.offered !== undefined) throw new PemError('PEM_ERR_BAD_ARGUMENT', 'hello already sent')
    this.role = hello.role
    this.offered = hello
    try {
      return await this.send(Op.Hello, hello, timeoutMs) as HelloReply
    } catch (err) {
      const e = this.closedByPeer && this.closeReason !== undefined ? this.closeReason : PemError.from(err)
      this.fatal(e)
      throw e
    }
  }

  /** Client side, called as the Hello reply is read, so frames right behind it in the same chunk see an open channel. */
  private acceptHelloReply (reply: HelloReply): void {
    const offered = this.offered!
    if (reply.version < offered.min || reply.version > offered.max) {
      throw new PemError('PEM_ERR_VERSION', `server chose version ${reply.version}, we speak ${offered.min}..${offered.max}`)
    }
    this.version = reply.version
    this.helloReply = reply
    this.state = 'open'
  }

  // ---- sending ----

  private send (op: Op, body: unknown, timeoutMs: number): Promise<unknown> {
    if (!isOp(op)) return Promise.reject(new PemError('PEM_ERR_BAD_OPCODE', `unknown opcode ${String(op)}`))
    const id = this.allocId()
    let frame: Buffer[]
    try {
      frame = encodeFrameParts(op, id, body)
    } catch (err) {
      return Promise.reject(new PemError('PEM_ERR_BAD_BODY', `cannot encode request body: ${(err as Error).message}`))
    }
    return new Promise((resolve, reject) => {
      const p: Pending = { op, resolve, reject, timer: undefined }
      if (timeoutMs > 0) {
        p.timer = setTimeout(() => {
          if (this.pending.get(id) !== p) return
          this.pending.delete(id)
          reject(new PemError('PEM_ERR_TIMEOUT', `no reply to 0x${op.toString(16)} #${id} within ${timeoutMs} ms`))
        }, timeoutMs)
      }
      this.pending.set(id, p)
      this.queue(frame)
    })
  }

  private allocId (): number {
    for (;;) {
      const id = this.nextId
      this.nextId = this.nextId === 0xffffffff ? 1 : this.nextId + 1 // 0 is reserved for unsolicited frames
      if (!this.pending.has(id)) return id
    }
  }

  /**
   * Queues one frame's buffers (a data batch's bulk is its own buffer, never copied here); `release` runs once they
   * are written (the socket may keep a reference to a buffer until then).
   */
  private queue (frame: Buffer[], release?: () => void): void {
    if (this.state === 'closed' && this.socket.destroyed) { release?.(); return }
    for (const b of frame) { this.outQ.push(b); this.outBytes += b.length }
    if (release !== undefined) this.outReleases.push(release)
    if (!this.flushScheduled) {
      this.flushScheduled = true
      process.nextTick(() => this.flush()) // runs after the current microtasks: every reply resolved now joins this write
    }
  }

  private flush (): void {
    this.flushScheduled = false
    const q = this.outQ
    const releases = this.outReleases
    this.outReleases = []
    const written = releases.length === 0 ? undefined : () => { for (const r of releases) r() }
    if (q.length === 0 || this.socket.destroyed || !this.socket.writable) { this.outQ = []; this.outBytes = 0; written?.(); return }
    this.outQ = []
    if (q.length === 1) this.socket.write(q[0], written)
    else if (this.outBytes <= COALESCE_COPY_LIMIT) { this.socket.write(Buffer.concat(q, this.outBytes)); written?.() }
    else {
      this.socket.cork()
      for (let i = 0; i < q.length; i++) this.socket.write(q[i], i === q.length - 1 ? written : undefined)
      this.socket.uncork()
    }
    this.outBytes = 0
    this.updateFlow()
  }

  /** `release` runs once the reply is written (with a PooledReply's buffers given back to the pool after it). */
  private reply (op: number, id: number, result: unknown, release?: () => void): void {
    const pooled = result instanceof PooledReply ? result : null
    const body = pooled === null ? result : pooled.body
    const done = pooled === null ? release : () => { for (const b of pooled.buffers) dataPool.give(b); release?.() }
    let frame: Buffer[]
    try {
      frame = encodeFrameParts(op, id, body, FLAG_REPLY)
    } catch (err) {
      frame = encodeFrameParts(op, id, new PemError('PEM_ERR_UNKNOWN', `cannot encode reply: ${(err as Error).message}`).toWire(), FLAG_REPLY | FLAG_ERROR)
    }
    this.queue(frame, done)
  }

  private replyError (op: number, id: number, err: PemError, release?: () => void): void {
    this.queue(encodeFrameParts(op, id, err.toWire(), FLAG_REPLY | FLAG_ERROR), release)
  }

  /** A fatal protocol error: tell the peer once (error reply with id 0), then close. */
  private fatal (err: PemError, op: number = Op.Hello): void {
    if (this.state === 'closed') return
    this.replyError(op, 0, err)
    this.close(err)
  }

  private notOpen (): PemError {
    if (this.state === 'closed') return new PemError('PEM_ERR_CLOSED', `channel closed: ${this.closeReason?.message ?? ''}`, { cause: this.closeReason })
    return new PemError('PEM_ERR_BAD_ARGUMENT', 'channel is not open yet (Hello pending)')
  }

  // ---- receiving ----

  private onData (chunk: Buffer): void {
    if (this.state === 'closed') return
    try {
      this.splitter.feed(chunk)
      // One frame at a time: the Hello opens the channel, which changes what admit() lets through after it.
      for (let f = this.splitter.next(); f !== null; f = this.splitter.next()) {
        this.onFrame(f)
        if (this.closed) return
      }
    } catch (err) {
      this.fatal(PemError.from(err, 'PEM_ERR_BAD_FRAME'))
    }
  }

  private onFrame (f: Frame): void {
    if (f.skipped === true) return this.onSkipped(f)
    if ((f.flags & FLAG_REPLY) !== 0) this.onReply(f)
    else if (this.state === 'hello') this.onFirstRequest(f)
    else if (f.id === 0) this.onUnsolicited(f)
    else this.onPeerRequest(f)
  }

  /**
   * Server side, from a frame's header alone (docs/CHANNEL.md §5 "Before authentication"): before the Hello only a
   * Hello request of at most PREAUTH_FRAME_BYTES is read, and on an enrollment channel only Enroll requests of that
   * size are decoded (any other frame is skipped unread); on a session channel, frameLimit caps each frame by the
   * peer's role and the opcode. Throws, failing the stream, for anything else.
   */
  private admit (h: FrameHeader): 'decode' | 'skip' {
    const preauth = this.state === 'hello' || this.mode === 'enroll'
    if (preauth && h.length > PREAUTH_FRAME_BYTES) {
      throw new PemError('PEM_ERR_FRAME_TOO_LARGE', `frame of ${h.length} bytes exceeds the limit of ${PREAUTH_FRAME_BYTES} ${this.state === 'hello' ? 'before the Hello' : 'on an enrollment channel'}`)
    }
    if (this.state === 'open' && this.frameLimit !== undefined && this.role !== undefined) {
      const max = this.frameLimit(this.role, h.op)
      if (h.length > max) throw new PemError('PEM_ERR_FRAME_TOO_LARGE', `frame of ${h.length} bytes exceeds the limit of ${max} for opcode 0x${h.op.toString(16)} from a ${this.role}`)
    }
    if (this.state === 'hello' && (h.op !== Op.Hello || h.flags !== 0 || h.id === 0)) throw new PemError('PEM_ERR_BAD_FRAME', 'the first frame must be a Hello request')
    if (this.mode === 'enroll' && this.state === 'open' && (h.op !== Op.Enroll || h.flags !== 0 || h.id === 0)) return 'skip'
    return 'decode'
  }

  /** A frame admit() skipped: a request gets PEM_ERR_NOT_ENROLLED, anything else is dropped. */
  private onSkipped (f: Frame): void {
    if (f.flags === 0 && f.id !== 0) this.replyError(f.op, f.id, new PemError('PEM_ERR_NOT_ENROLLED', 'an enrollment channel carries only Enroll'))
  }

  private onReply (f: Frame): void {
    if (f.id === 0) { // the peer's last word before it closes
      if ((f.flags & FLAG_ERROR) === 0) return this.fatal(new PemError('PEM_ERR_BAD_FRAME', 'reply with request id 0'))
      let e: PemError
      try { const [id, detail] = checkErrorBody(f.body); e = PemError.fromWire(id, detail) } catch (err) { e = PemError.from(err) }
      this.closedByPeer = true
      this.close(e)
      return
    }
    const p = this.pending.get(f.id)
    if (p === undefined) return // late reply to a request that timed out: ignored
    this.pending.delete(f.id)
    if (p.timer !== undefined) clearTimeout(p.timer)
    if (f.op !== p.op) return p.reject(new PemError('PEM_ERR_BAD_FRAME', `reply opcode 0x${f.op.toString(16)} does not match request 0x${p.op.toString(16)}`))
    try {
      if ((f.flags & FLAG_ERROR) !== 0) {
        const [id, detail] = checkErrorBody(f.body)
        p.reject(PemError.fromWire(id, detail))
        return
      }
      const check = REPLY_CHECKS[f.op as Op]
      const body = check === undefined ? f.body : check(f.body)
      if (this.state === 'hello' && this.side === 'client' && f.op === Op.Hello) this.acceptHelloReply(body as HelloReply)
      p.resolve(body)
    } catch (err) {
      p.reject(PemError.from(err, 'PEM_ERR_BAD_BODY'))
    }
  }

  private onFirstRequest (f: Frame): void {
    if (this.side === 'client') return this.fatal(new PemError('PEM_ERR_BAD_FRAME', 'request from the server before the Hello completed'))
    if (f.op !== Op.Hello || f.id === 0) return this.fatal(new PemError('PEM_ERR_BAD_FRAME', 'the first frame must be a Hello request'))
    let reply: HelloReply
    try {
      const hello = REQUEST_CHECKS[Op.Hello]!(f.body) as HelloBody
      if (this.onHello === undefined) throw new PemError('PEM_ERR_BAD_ARGUMENT', 'no Hello handler')
      reply = this.onHello(hello, this)
      this.role = hello.role
      this.version = reply.version
    } catch (err) {
      return this.fatal(PemError.from(err, 'PEM_ERR_BAD_FRAME'))
    }
    this.state = 'open'
    this.reply(Op.Hello, f.id, reply)
    this.emit('open', this)
  }

  private onUnsolicited (f: Frame): void {
    if ((f.flags & FLAG_ERROR) !== 0) return this.fatal(new PemError('PEM_ERR_BAD_FRAME', 'error flag on a request'))
    try {
      this.onMessage?.(f.op as Op, f.body, this)
    } catch (err) {
      this.emit('handlerError', err)
    }
  }

  private onPeerRequest (f: Frame): void {
    const op = f.op as Op
    // A data request assembled in a pooled buffer goes back to the pool once its reply is written (the reply may be a
    // view of it, like an echo's). Only data ops: their handlers never keep a request's Buffers beyond the reply,
    // while others may (a cluster member keeps a received policy set until it installs it); theirs go to the GC.
    const pooled = RECYCLED_REQUESTS.has(op) ? f.pooled : undefined
    const release = pooled === undefined ? undefined : () => dataPool.give(pooled)
    if ((f.flags & FLAG_ERROR) !== 0) return this.fatal(new PemError('PEM_ERR_BAD_FRAME', 'error flag on a request'))
    if (op === Op.Hello) return this.replyError(op, f.id, new PemError('PEM_ERR_BAD_FRAME', 'Hello was already exchanged'), release)
    const handler = this.onRequest
    if (handler === undefined) return this.replyError(op, f.id, new PemError('PEM_ERR_BAD_OPCODE', `no handler for opcode 0x${op.toString(16)}`), release)
    let result: unknown
    try {
      const check = REQUEST_CHECKS[op]
      result = handler(op, check === undefined ? f.body : check(f.body), this)
    } catch (err) {
      return this.replyError(op, f.id, this.toReplyError(err), release)
    }
    if (!(result instanceof Promise)) return this.reply(op, f.id, result, release)
    this.serving++
    if (this.serving >= this.maxConcurrent) this.updateFlow()
    result.then(
      (body) => { if (this.state !== 'closed') this.reply(op, f.id, body, release); else release?.() },
      (err) => { if (this.state !== 'closed') this.replyError(op, f.id, this.toReplyError(err), release); else release?.() }
    ).finally(() => { this.serving--; this.updateFlow() })
  }

  /** A handler's throw becomes an error reply; only our own codes cross the wire, anything else is 'internal error'. */
  private toReplyError (err: unknown): PemError {
    if (err instanceof PemError) return err
    const code = (err as { code?: unknown } | null)?.code
    if (isErrorCode(code)) return new PemError(code, ERRORS[code].message)
    this.emit('handlerError', err)
    return new PemError('PEM_ERR_UNKNOWN', 'internal error')
  }

  private updateFlow (): void {
    if (this.state === 'closed') return
    // Write backpressure pauses reading only where reading makes writes (a server reading requests). A client that
    // stopped reading replies while its own requests wait to drain would deadlock with a server doing the same.
    const stop = this.serving >= this.maxConcurrent || (this.side === 'server' && this.socket.writableNeedDrain)
    if (stop && !this.paused) { this.paused = true; this.socket.pause() } else if (!stop && this.paused) { this.paused = false; this.socket.resume() }
  }
}
