// TLS 1.3 transport for every channel: self-signed Ed25519 certificates, peers pinned by key (docs/CHANNEL.md).
// listen(): authorize each client key at the handshake, before any frame is read. connect(): pin the server's key,
// then exchange Hello. Both resolve to lib/channel/channel.ts Channels.
import type { AddressInfo, Socket } from 'node:net'
import tls from 'node:tls'
import { PemError } from '../wire/errors'
import { FLAG_ERROR, FLAG_REPLY, encodeFrame } from '../wire/frame'
import { Op } from '../wire/opcodes'
import type { HelloBody, HelloReply } from '../wire/packets'
import { negotiate, PROTOCOL } from '../wire/version'
import { keyId, rawPublicKey, type Identity } from '../crypto/identity'
import { Channel, type ChannelOptions, type MessageHandler, type Mode, type PeerInfo, type RequestHandler, type Role } from './channel'
import { SourceLimiter, type ConnectionLimits, type LimitRefusal } from './limits'

export const ALPN_SESSION = 'pem/1'
export const ALPN_ENROLL = 'pem-enroll/1'

const TLS_BASE = {
  minVersion: 'TLSv1.3',
  maxVersion: 'TLSv1.3',
  sigalgs: 'ed25519' // both CertificateVerify signatures must be Ed25519: other key types fail the handshake
} as const

export interface VersionRange { min: number, max: number, cur: number }
export type Authorization = Mode | false
const OURS: VersionRange = { min: PROTOCOL.MIN, max: PROTOCOL.MAX, cur: PROTOCOL.CUR }
/**
 * Why a connection got no channel: at the TCP connection (LimitRefusal), in the TLS handshake ('handshake': failed
 * or timed out), after it (the key or ALPN), or at the Hello ('hello': a bad, oversized or refused first frame, or
 * none in time).
 */
export type RefuseReason = 'no-certificate' | 'key-type' | 'alpn' | 'unauthorized' | 'alpn-mismatch' | 'authorize-failed' | LimitRefusal | 'handshake' | 'hello'

export interface ListenOptions extends ChannelOptions {
  host?: string
  port?: number
  identity: Identity
  /** Decide on a client key at the handshake: a session, enrollment only, or refuse (the socket is closed unread). */
  authorize: (peer: PeerInfo) => Authorization | Promise<Authorization>
  /** A new channel, after its Hello: set ch.onRequest here. */
  onChannel: (ch: Channel) => void
  onRefused?: (reason: RefuseReason, peer: Partial<PeerInfo>) => void
  /** Fills the Hello reply; may throw a PemError to refuse the declared role. Default name '' and pv 0. */
  hello?: (hello: HelloBody, ch: Channel) => { name: string, pv: number }
  /** Versions this server speaks (tests override it; default lib/wire/version.ts PROTOCOL). */
  versions?: VersionRange
  /** TLS handshake deadline, and the deadline for the Hello after it (default 5000 ms). */
  handshakeTimeoutMs?: number
  /** An enrollment channel is closed this long after it opened (default 30000 ms): it carries one Enroll or two. */
  enrollChannelMs?: number
  /** Refuse TCP connections beyond this many at once (node:net maxConnections); default unlimited. */
  maxConnections?: number
  /**
   * Per-source connection limits, checked on the TCP connection before the TLS handshake (a refused one is closed
   * unread, reason 'source-connections', 'source-rate' or 'pending'); default none.
   */
  limits?: ConnectionLimits
}

export interface ChannelServer {
  address: () => AddressInfo
  /** Stop listening and close every open channel and half-open handshake. */
  close: () => Promise<void>
  readonly channels: ReadonlySet<Channel>
}

export interface ConnectOptions extends ChannelOptions {
  host: string
  port: number
  identity: Identity
  role: Role
  /** Accept the server's key; give this or expectedId. */
  pin?: (peer: { key: Buffer, id: string }) => boolean
  expectedId?: string
  /** Default: 'pem-enroll/1' for role 'enroll', else 'pem/1'. */
  alpn?: string
  /** Deadline for TCP + TLS + Hello (default 2000 ms). */
  connectTimeoutMs?: number
  /** Versions this client offers (tests override it). */
  versions?: VersionRange
  /** Installed before the Hello, so requests and messages the server sends right after it are not missed. */
  onRequest?: RequestHandler
  onMessage?: MessageHandler
}

function peerKeyOf (socket: tls.TLSSocket): { key: Buffer, id: string } | RefuseReason {
  const cert = socket.getPeerX509Certificate()
  if (cert === undefined) return 'no-certificate'
  if (cert.publicKey.asymmetricKeyType !== 'ed25519') return 'key-type'
  const key = rawPublicKey(cert.publicKey)
  return { key, id: keyId(key) }
}

/** Refuse a client: one error notice frame (the peer learns the code), then close without reading anything. */
function refuse (socket: tls.TLSSocket, err: PemError): void {
  socket.end(encodeFrame(Op.Hello, 0, err.toWire(), FLAG_REPLY | FLAG_ERROR))
  setTimeout(() => socket.destroy(), 1000).unref()
}

export async function listen (opts: ListenOptions): Promise<ChannelServer> {
  const versions = opts.versions ?? OURS
  const handshakeMs = opts.handshakeTimeoutMs ?? 5000
  const enrollMs = opts.enrollChannelMs ?? 30_000
  const channels = new Set<Channel>()
  const sockets = new Set<Socket>()
  const server = tls.createServer({
    ...TLS_BASE,
    key: opts.identity.keyPem,
    cert: opts.identity.certPem,
    requestCert: true,
    rejectUnauthorized: false, // we pin keys instead of validating chains
    ALPNProtocols: [ALPN_SESSION, ALPN_ENROLL],
    handshakeTimeout: handshakeMs
  })
  if (opts.maxConnections !== undefined) server.maxConnections = opts.maxConnections
  const count = (reason: RefuseReason, peer: Partial<PeerInfo>): void => {
    try { opts.onRefused?.(reason, peer) } catch { /* a counter must not break the server */ }
  }
  const refused = (socket: tls.TLSSocket, reason: RefuseReason, peer: Partial<PeerInfo>, code: PemError): void => {
    count(reason, peer)
    refuse(socket, code)
  }
  const limiter = opts.limits === undefined ? null : new SourceLimiter(opts.limits)
  const admitted = new Map<string, { source: string, pending: boolean }>() // by remote address and port
  const endpoint = (s: Socket): string => `${s.remoteAddress ?? ''}|${s.remotePort ?? 0}`
  server.on('connection', (s: Socket) => {
    sockets.add(s)
    s.once('close', () => sockets.delete(s))
    if (limiter === null) return
    const verdict = limiter.admit(s.remoteAddress ?? '')
    if (typeof verdict === 'string') {
      count(verdict, { remoteAddress: s.remoteAddress ?? '' })
      s.destroy()
      return
    }
    const at = endpoint(s)
    const entry = { source: verdict.source, pending: true }
    admitted.set(at, entry)
    s.once('close', () => { admitted.delete(at); limiter.release(entry.source, entry.pending) })
  })
  server.on('tlsClientError', (err: NodeJS.ErrnoException, s) => {
    // A peer (or the limiter) hanging up mid-handshake is not a refusal; bad TLS and a handshake timeout are.
    if (err.code !== 'ECONNRESET') count('handshake', { remoteAddress: s.remoteAddress ?? '' })
    s.destroy()
  })
  server.on('secureConnection', (socket: tls.TLSSocket) => {
    socket.on('error', () => socket.destroy())
    const remoteAddress = socket.remoteAddress ?? ''
    const alpn = typeof socket.alpnProtocol === 'string' ? socket.alpnProtocol : ''
    const pk = peerKeyOf(socket)
    if (typeof pk === 'string') return refused(socket, pk, { alpn, remoteAddress }, new PemError('PEM_ERR_PEER_KEY', 'an Ed25519 client certificate is required'))
    const peer: PeerInfo = { key: pk.key, id: pk.id, alpn, remoteAddress }
    if (alpn !== ALPN_SESSION && alpn !== ALPN_ENROLL) return refused(socket, 'alpn', peer, new PemError('PEM_ERR_VERSION', 'no common application protocol'))
    const decide = (mode: Authorization): void => {
      if (socket.destroyed) return
      if (mode === false) return refused(socket, 'unauthorized', peer, new PemError('PEM_ERR_NOT_ENROLLED'))
      if ((mode === 'enroll') !== (alpn === ALPN_ENROLL)) return refused(socket, 'alpn-mismatch', peer, new PemError(mode === 'enroll' ? 'PEM_ERR_NOT_ENROLLED' : 'PEM_ERR_BAD_ARGUMENT', `this key must use the ${mode} protocol`))
      open(socket, peer, mode)
    }
    let verdict: Authorization | Promise<Authorization>
    try { verdict = opts.authorize(peer) } catch { return refused(socket, 'authorize-failed', peer, new PemError('PEM_ERR_NOT_ENROLLED')) }
    if (verdict instanceof Promise) verdict.then(decide, () => refused(socket, 'authorize-failed', peer, new PemError('PEM_ERR_NOT_ENROLLED')))
    else decide(verdict)
  })

  function open (socket: tls.TLSSocket, peer: PeerInfo, mode: Mode): void {
    const ch = new Channel({
      ...opts,
      socket,
      side: 'server',
      peer,
      mode,
      onHello: (hello, c) => {
        if (mode === 'enroll' && hello.role !== 'enroll') throw new PemError('PEM_ERR_NOT_ENROLLED', `role ${hello.role} on an enrollment channel`)
        if (mode === 'session' && hello.role === 'enroll') throw new PemError('PEM_ERR_BAD_BODY', 'role enroll needs the enrollment protocol')
        const version = negotiateRange(hello, versions)
        if (version === undefined) throw new PemError('PEM_ERR_VERSION', `client speaks ${hello.min}..${hello.max}, server ${versions.min}..${versions.max}`)
        const extra = opts.hello?.(hello, c) ?? { name: '', pv: 0 }
        return { version, server: opts.identity.id, name: extra.name, pv: extra.pv }
      }
    })
    channels.add(ch)
    let deadline = setTimeout(() => ch.close(new PemError('PEM_ERR_TIMEOUT', 'no Hello in time')), handshakeMs)
    deadline.unref()
    ch.once('open', () => {
      clearTimeout(deadline)
      if (mode === 'enroll') { // an unauthenticated peer does not get to keep a channel
        deadline = setTimeout(() => ch.close(new PemError('PEM_ERR_TIMEOUT', `enrollment channel open for ${enrollMs} ms`)), enrollMs)
        deadline.unref()
      }
      const entry = admitted.get(endpoint(socket))
      if (entry !== undefined && limiter !== null) { entry.pending = false; limiter.opened() }
      try { opts.onChannel(ch) } catch (err) { ch.close(PemError.from(err)) }
    })
    ch.once('close', (reason: PemError) => {
      clearTimeout(deadline)
      channels.delete(ch)
      // A channel that closes before its Hello, other than by the peer hanging up, was refused there.
      if (ch.version === 0 && reason.code !== 'PEM_ERR_CLOSED') count('hello', peer)
    })
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => { server.off('error', reject); resolve() })
  })
  return {
    address: () => server.address() as AddressInfo,
    channels,
    close: async () => {
      const closed = new Promise<void>(resolve => server.close(() => resolve()))
      for (const ch of [...channels]) ch.close(new PemError('PEM_ERR_CLOSED', 'server shutting down'))
      for (const s of sockets) s.destroy()
      await closed
    }
  }
}

function negotiateRange (hello: HelloBody, ours: VersionRange): number | undefined {
  if (ours === OURS) return negotiate(hello.min, hello.max)
  const v = Math.min(hello.max, ours.max)
  return v >= Math.max(hello.min, ours.min) ? v : undefined
}

function connectError (err: NodeJS.ErrnoException): PemError {
  const unreachable = ['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT', 'ENOTFOUND', 'EAI_AGAIN']
  return new PemError(unreachable.includes(err.code ?? '') ? 'PEM_ERR_UNREACHABLE' : 'PEM_ERR_CLOSED', `connect: ${err.message}`, { cause: err })
}

/** Open a channel to a server: TLS 1.3, pin its key, Hello. Rejects with a PemError (PEER_KEY, VERSION, TIMEOUT, ...). */
export function connect (opts: ConnectOptions): Promise<Channel> {
  if (opts.pin === undefined && opts.expectedId === undefined) return Promise.reject(new PemError('PEM_ERR_BAD_ARGUMENT', 'connect needs pin or expectedId'))
  const pin = opts.pin ?? ((p: { id: string }) => p.id === opts.expectedId)
  const alpn = opts.alpn ?? (opts.role === 'enroll' ? ALPN_ENROLL : ALPN_SESSION)
  const versions = opts.versions ?? OURS
  const deadline = opts.connectTimeoutMs ?? 2000
  return new Promise<Channel>((resolve, reject) => {
    let done = false
    let ch: Channel | undefined
    const fail = (err: PemError): void => {
      if (done) return
      done = true
      clearTimeout(timer)
      if (ch !== undefined) ch.close(err)
      socket.destroy()
      reject(err)
    }
    const timer = setTimeout(() => fail(new PemError('PEM_ERR_TIMEOUT', `no channel to ${opts.host}:${opts.port} within ${deadline} ms`)), deadline)
    const socket = tls.connect({
      ...TLS_BASE,
      host: opts.host,
      port: opts.port,
      key: opts.identity.keyPem,
      cert: opts.identity.certPem,
      ALPNProtocols: [alpn],
      rejectUnauthorized: false // the key is pinned below
    })
    const onError = (err: NodeJS.ErrnoException): void => fail(connectError(err))
    const onClose = (): void => fail(new PemError('PEM_ERR_CLOSED', 'connection closed during the handshake'))
    socket.once('error', onError)
    socket.once('close', onClose)
    socket.once('secureConnect', () => {
      let pk: { key: Buffer, id: string } | RefuseReason
      try { pk = peerKeyOf(socket) } catch (err) { return fail(PemError.from(err, 'PEM_ERR_PEER_KEY')) }
      if (typeof pk === 'string') return fail(new PemError('PEM_ERR_PEER_KEY', `server presented no Ed25519 key (${pk})`))
      let ok = false
      try { ok = pin(pk) === true } catch { ok = false }
      if (!ok) return fail(new PemError('PEM_ERR_PEER_KEY', `server key ${pk.id} is not the pinned key`))
      if (socket.alpnProtocol !== alpn) return fail(new PemError('PEM_ERR_VERSION', `server did not accept protocol ${alpn}`))
      ch = new Channel({ ...opts, socket, side: 'client', peer: { ...pk, alpn, remoteAddress: socket.remoteAddress ?? opts.host }, mode: opts.role === 'enroll' ? 'enroll' : 'session' })
      ch.onRequest = opts.onRequest
      ch.onMessage = opts.onMessage
      socket.off('close', onClose) // from here the channel reports errors and closing
      socket.off('error', onError)
      ch.clientHello({ min: versions.min, max: versions.max, cur: versions.cur, role: opts.role }, deadline).then(() => {
        if (done) return
        done = true
        clearTimeout(timer)
        resolve(ch!)
      }, (err) => fail(PemError.from(err)))
    })
  })
}

export type { HelloReply }
