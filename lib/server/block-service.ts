// spd's side of the native block path (issue 17, docs/CHANNEL.md §8): starts the native block service
// (native/block_service.cc) and installs what it checks — one-use connection tokens keyed from a host channel's TLS
// exporter, and grants (host, file id, key version, cipher, the per-file key handle, seal or not, expiry) — and keeps
// the load and weight every reply carries current. The service is one per process: members in one process (tests)
// share it, the first start binds it and the last stop closes it.
import crypto from 'node:crypto'
import { raw, type BlockServiceStats } from '../native/binding'
import type { KeyHandle } from '../native/crypto-engine'
import type { Channel } from '../channel/channel'
import { BLOCK_CHANNEL_KEY_BYTES, BLOCK_CHANNEL_LABEL } from '../wire/packets'

/** How long an unused connection token stays valid (the native side caps it at 10 s). */
export const BLOCK_TOKEN_LIFE_MS = 10_000
/** Load and weight are pushed to the service this often (spd samples load every 250 ms). */
const LOAD_PUSH_MS = 250

let users = 0
let port = 0

export class BlockService {
  private timer: NodeJS.Timeout | null = null

  /** Starts (or joins) the service on `host`, pushing `load()` every 250 ms. */
  start (host: string, load: () => { load: number, weight: number, pv: number }): void {
    if (users === 0) port = raw.blockServiceStart(host, 0)
    users++
    const push = (): void => { const l = load(); raw.blockServiceLoad(l.load, l.weight, l.pv) }
    push()
    this.timer = setInterval(push, LOAD_PUSH_MS)
    this.timer.unref()
  }

  get port (): number { return port }
  get running (): boolean { return this.timer !== null }

  /** A new block channel for the host of `ch`: a one-use token and the record keys both ends derive from it. */
  token (ch: Channel, host: string): Buffer {
    const token = crypto.randomBytes(16)
    const keys = ch.exportKeys(BLOCK_CHANNEL_KEY_BYTES, BLOCK_CHANNEL_LABEL, token)
    try { raw.blockServiceToken(token, host, keys, BLOCK_TOKEN_LIFE_MS) } finally { keys.fill(0) }
    return token
  }

  /** Installs a grant under a new random handle (returned); the key's bytes are copied natively, never into JS. */
  grant (host: string, fileId: Buffer, keyVersion: number, cipher: number, key: KeyHandle, seal: boolean, ttlMs: number): Buffer {
    const handle = crypto.randomBytes(16)
    raw.blockServiceGrant(handle, host, fileId, keyVersion, cipher, key, seal, ttlMs)
    return handle
  }

  /** A removed host: its grants, tokens and connections go. */
  dropHost (host: string): void { if (this.running) raw.blockServiceDropHost(host) }

  stats (): BlockServiceStats { return raw.blockServiceStats() }

  stop (): void {
    if (this.timer === null) return
    clearInterval(this.timer)
    this.timer = null
    if (--users === 0) raw.blockServiceStop()
  }
}
