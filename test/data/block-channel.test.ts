// The native block path at spd (issue 17, docs/CHANNEL.md §8): a real spd, enrolled hosts over the real channel get
// grants and one-use tokens (Op.BlockChannel) and speak the block channel's records to spd's native block service
// with a record client written here from node:crypto. Blocks sealed there open with the JS path's BlocksOpen (one
// format). Refusals: a forged grant, an expired one, another host's, a read grant asked to seal, a block whose AAD
// names another file, a tampered block, a header of another file for a bound grant; and at the record layer a peer
// whose keys were never installed, a reused token, a replayed record, a truncated and an oversized frame — each
// closes the connection. A removed host loses its block connections. More than 64 connections at once without an
// authentic record: the rest are closed unread, and the slots come back.
import test from 'ava'
import crypto from 'node:crypto'
import net from 'node:net'
import path from 'node:path'
import { attrsOf } from '../../lib/pem-fs/attrs'
import { ClusterClient, type BlockRemote, type Decision } from '../../lib/pem-fs/client'
import { hostIdentity, readCluster } from '../../lib/pem-fs/host-config'
import { AAD_BYTES, TRAILER_BYTES, encodeHeader, makeHeader, writeAad, writeTrailer, type FileHeader, decodeHeader } from '../../lib/wire/file-format'
import { Op } from '../../lib/wire/opcodes'
import type { Action } from '../../lib/wire/packets'
import { cli, initSpd, loginSpctl, startSpd, stopAll, stopSpd, tempDir, writeFile, type Spd } from '../../scripts/procs'

const POLICY = `format: 1
ttl: 1s
keys: [vault]
guards:
  /srv/data:
    rules:
      - id: appliance-crypto
        effect: apply_key(vault)
`

const SEAL = 1
const OPEN = 2
const STATUS = { ok: 0, grantUnknown: 1, grantExpired: 2, grantHost: 3, grantOps: 4, aadFile: 5, blockAuth: 6 }

let spd: Spd
let spctl: (args: string[]) => Promise<{ code: number, stdout: string, stderr: string }>
const clients: ClusterClient[] = []
const work = tempDir('block-channel-test')
let host1: ClusterClient
let host2: ClusterClient

async function enrollHost (name: string): Promise<ClusterClient> {
  const token = JSON.parse((await spctl(['--json', 'host', 'add', name])).stdout).token as string
  const dir = path.join(work, name)
  const r = await cli('pemfs', ['enroll', '--cluster', spd.listen, '--token', token, '--config-dir', dir, '--name', name])
  if (r.code !== 0) throw new Error(r.stderr)
  const c = new ClusterClient(hostIdentity(dir), readCluster(dir).servers)
  clients.push(c)
  return c
}

const decide = async (c: ClusterClient, p: string, action: Action = 'write'): Promise<Decision> =>
  await c.decide({ guard: '/srv/data', path: p, action, attrs: attrsOf(process.pid, 1000, 1000) })

/** The block channel's records (AES-256-GCM, counter nonces per direction, AAD = the length), from node:crypto. */
class RecordClient {
  private readonly sock: net.Socket
  private sendSeq = 0n
  private recvSeq = 0n
  private buf = Buffer.alloc(0)
  private readonly waiting: Array<(b: Buffer | null) => void> = []
  closed = false

  constructor (port: number, token: Buffer, private readonly keys: Buffer) {
    this.sock = net.connect(port, '127.0.0.1')
    this.sock.setNoDelay(true)
    this.sock.write(token)
    this.sock.on('data', d => { this.buf = Buffer.concat([this.buf, d]); this.pump() })
    this.sock.on('close', () => { this.closed = true; for (const w of this.waiting.splice(0)) w(null) })
    this.sock.on('error', () => {})
  }

  static of (r: BlockRemote): RecordClient { return new RecordClient(r.port, r.token, r.keys) }

  /** One record's bytes as sent (the next nonce is used up). */
  record (plain: Buffer): Buffer {
    const head = Buffer.alloc(4)
    head.writeUInt32BE(plain.length + 16)
    const iv = Buffer.alloc(12)
    iv.writeBigUInt64BE(this.sendSeq++, 4)
    const c = crypto.createCipheriv('aes-256-gcm', this.keys.subarray(0, 32), iv)
    c.setAAD(head)
    const ct = Buffer.concat([c.update(plain), c.final()])
    return Buffer.concat([head, ct, c.getAuthTag()])
  }

  send (bytes: Buffer): void { this.sock.write(bytes) }

  /** The next reply's plaintext, or null once spd closed the connection. */
  async next (): Promise<Buffer | null> {
    return await new Promise(resolve => { this.waiting.push(resolve); this.pump() })
  }

  private pump (): void {
    while (this.waiting.length > 0 && this.buf.length >= 4) {
      const n = this.buf.readUInt32BE(0)
      if (this.buf.length < 4 + n) return
      const head = this.buf.subarray(0, 4)
      const body = this.buf.subarray(4, 4 + n - 16)
      const tag = this.buf.subarray(4 + n - 16, 4 + n)
      const iv = Buffer.alloc(12)
      iv.writeBigUInt64BE(this.recvSeq++, 4)
      const d = crypto.createDecipheriv('aes-256-gcm', this.keys.subarray(32, 64), iv)
      d.setAAD(head)
      d.setAuthTag(tag)
      const plain = Buffer.concat([d.update(body), d.final()])
      this.buf = this.buf.subarray(4 + n)
      this.waiting.shift()?.(plain)
    }
    if (this.closed) for (const w of this.waiting.splice(0)) w(null)
  }

  close (): void { this.sock.destroy() }
}

/** A request: op, count, id, grant, then per block (u32 length, AAD) and the data. */
function request (op: number, id: number, grant: Buffer, blocks: Array<{ aad: Buffer, data: Buffer }>): Buffer {
  const head = Buffer.alloc(24)
  head[0] = op
  head.writeUInt16BE(blocks.length, 2)
  head.writeUInt32BE(id, 4)
  grant.copy(head, 8)
  const meta = blocks.map(b => {
    const m = Buffer.alloc(48)
    m.writeUInt32BE(op === SEAL ? b.data.length : b.data.length - 28)
    b.aad.copy(m, 4)
    return m
  })
  return Buffer.concat([head, ...meta, ...blocks.map(b => b.data)])
}

interface Reply { op: number, status: number, count: number, id: number, load: number, weight: number, index: number, pv: bigint, data: Buffer }
function parse (b: Buffer): Reply {
  return { op: b[0], status: b[1], count: b.readUInt16BE(2), id: b.readUInt32BE(4), load: b.readFloatBE(8), weight: b.readUInt16BE(12), index: b.readUInt16BE(14), pv: b.readBigUInt64BE(16), data: b.subarray(24) }
}

function aadOf (h: FileHeader, block: number, plainLen: number): Buffer {
  const aad = Buffer.alloc(AAD_BYTES)
  writeAad(h, block, h.keyVersion, plainLen, aad)
  return aad
}

async function call (rc: RecordClient, op: number, id: number, grant: Buffer, blocks: Array<{ aad: Buffer, data: Buffer }>): Promise<Reply | null> {
  rc.send(rc.record(request(op, id, grant, blocks)))
  const r = await rc.next()
  return r === null ? null : parse(r)
}

/** A file header spd did not make (a grant binds to it at its first use). */
function foreignHeader (): { bytes: Buffer, header: FileHeader } {
  const bytes = encodeHeader(makeHeader({ fileId: crypto.randomBytes(16), keyName: 'vault', keyVersion: 1, cipher: 'aes-256-gcm', compression: 'none' }))
  return { bytes, header: decodeHeader(bytes) }
}

test.before(async () => {
  spd = await initSpd('spd-block-channel')
  await startSpd(spd)
  spctl = await loginSpctl(spd)
  const applied = await spctl(['policy', 'apply', writeFile(work, 'policy.yaml', POLICY)])
  if (applied.code !== 0) throw new Error(applied.stderr)
  host1 = await enrollHost('host-1')
  host2 = await enrollHost('host-2')
})

test.after.always(async () => {
  for (const c of clients) c.close()
  if (spd !== undefined) await stopSpd(spd)
  stopAll()
})

test.serial('blocks sealed by the native block service open with BlocksOpen; load, weight and version ride in the reply', async t => {
  const d = await decide(host1, '/a')
  t.is(d.placement, 'appliance')
  const { bytes, header } = await host1.newHeader(d)
  const { remote, ttlMs, seal } = await host1.blockChannel(d, bytes)
  t.true(seal)
  t.true(ttlMs > 0 && ttlMs <= 1000)
  const rc = RecordClient.of(remote)
  const plain = [crypto.randomBytes(4096), crypto.randomBytes(100)]
  const sealed = await call(rc, SEAL, 7, remote.grant, plain.map((p, i) => ({ aad: aadOf(header, i, p.length), data: p })))
  t.truthy(sealed)
  t.like(sealed, { op: SEAL, status: STATUS.ok, count: 2, id: 7 })
  t.true(sealed!.weight >= 1 && sealed!.pv >= 1n, `weight ${sealed!.weight}, pv ${sealed!.pv}`)
  t.is(sealed!.data.length, 4096 + 100 + 2 * 28)
  // Records (sealed | trailer) as the native session writes them open on the JS path: one format.
  const records = [sealed!.data.subarray(0, 4096 + 28), sealed!.data.subarray(4096 + 28)].map((s, i) => {
    const r = Buffer.alloc(s.length + TRAILER_BYTES)
    s.copy(r)
    writeTrailer(r, s.length, { sealedLen: s.length, plainLen: plain[i].length, keyVersion: header.keyVersion })
    return r
  })
  const opened = await host1.openBlocks(d, bytes, [0, 1], records)
  t.true(Buffer.concat(opened.parts).equals(Buffer.concat(plain)))
  opened.release()
  // And back through the native service, pipelined: two requests in flight before either reply.
  rc.send(Buffer.concat([
    rc.record(request(OPEN, 8, remote.grant, [{ aad: aadOf(header, 0, 4096), data: records[0].subarray(0, 4096 + 28) }])),
    rc.record(request(OPEN, 9, remote.grant, [{ aad: aadOf(header, 1, 100), data: records[1].subarray(0, 100 + 28) }]))
  ]))
  const r8 = parse((await rc.next())!)
  const r9 = parse((await rc.next())!)
  t.like(r8, { id: 8, status: STATUS.ok })
  t.like(r9, { id: 9, status: STATUS.ok })
  t.true(r8.data.equals(plain[0]) && r9.data.equals(plain[1]))
  // A flipped bit: that block fails, named by index, and no plaintext comes back.
  const bad = Buffer.from(records[1].subarray(0, 128)); bad[40] ^= 1
  const r = await call(rc, OPEN, 10, remote.grant, [{ aad: aadOf(header, 0, 4096), data: records[0].subarray(0, 4096 + 28) }, { aad: aadOf(header, 1, 100), data: bad }])
  t.like(r, { status: STATUS.blockAuth, index: 1 })
  t.is(r!.data.length, 0)
  rc.close()
})

test.serial('grants: forged, another host\'s, read-only asked to seal, another file\'s AAD, another header; expired', async t => {
  const d = await decide(host1, '/b')
  const { bytes, header } = await host1.newHeader(d)
  const { remote } = await host1.blockChannel(d, bytes)
  const rc = RecordClient.of(remote)
  const block = [{ aad: aadOf(header, 0, 10), data: Buffer.alloc(10, 1) }]
  t.like(await call(rc, SEAL, 1, crypto.randomBytes(16), block), { status: STATUS.grantUnknown, data: Buffer.alloc(0) })

  const other = await host2.blockChannel(await decide(host2, '/c'), (await host2.newHeader(await decide(host2, '/c'))).bytes)
  const rc2 = RecordClient.of(other.remote)
  t.like(await call(rc2, SEAL, 1, remote.grant, block), { status: STATUS.grantHost }, 'host-2 presents host-1\'s grant')

  const rd = await decide(host1, '/b', 'read')
  const ro = await host1.blockChannel(rd, bytes)
  t.false(ro.seal)
  t.like(await call(rc, SEAL, 2, ro.remote.grant, block), { status: STATUS.grantOps })

  const elsewhere = foreignHeader().header
  t.like(await call(rc, SEAL, 3, remote.grant, [block[0], { aad: aadOf(elsewhere, 1, 10), data: Buffer.alloc(10) }]), { status: STATUS.aadFile, index: 1 })
  t.like(await call(rc, SEAL, 4, remote.grant, [{ aad: aadOf({ ...header, keyVersion: 2 }, 0, 10), data: Buffer.alloc(10) }]), { status: STATUS.aadFile }, 'another key version')

  // A grant binds to the first file it serves (a header spd did not make); another file's header is refused.
  const dd = await decide(host1, '/d')
  const f1 = foreignHeader()
  await host1.blockChannel(dd, f1.bytes)
  await t.throwsAsync(host1.blockChannel(dd, foreignHeader().bytes), { code: 'PEM_ERR_KEY_NOT_GRANTED', message: /another file/ })
  await t.throwsAsync(host1['dataRequest']({ ...dd, grant: crypto.randomBytes(16).toString('hex') }, Op.BlockChannel, { grant: crypto.randomBytes(16).toString('hex'), header: f1.bytes }), { code: 'PEM_ERR_KEY_NOT_GRANTED' })

  t.like(await call(rc, SEAL, 5, remote.grant, block), { status: STATUS.ok })
  await new Promise(resolve => setTimeout(resolve, 1000 + 2000 + 200)) // ttl 1 s + the grants' 2 s slack
  t.like(await call(rc, SEAL, 6, remote.grant, block), { status: STATUS.grantExpired })
  t.false(rc.closed, 'refused requests keep the connection')
  rc.close()
  rc2.close()
})

test.serial('record layer: keys never installed, a reused token, a replayed record, a truncated and an oversized frame close the connection', async t => {
  const d0 = await decide(host1, '/e')
  const { bytes, header } = await host1.newHeader(d0)
  const block = (id: number): Buffer => request(SEAL, id, Buffer.alloc(16), [{ aad: aadOf(header, 0, 1), data: Buffer.alloc(1) }])
  const open = async (): Promise<BlockRemote> => (await host1.blockChannel(await decide(host1, '/e'), bytes)).remote // fresh grants (ttl 1 s)

  const remote = await open()
  const forged = new RecordClient(remote.port, remote.token, crypto.randomBytes(64)) // the token, but not its keys
  forged.send(forged.record(block(1)))
  t.is(await forged.next(), null)

  const unknown = new RecordClient(remote.port, crypto.randomBytes(16), remote.keys)
  unknown.send(unknown.record(block(1)))
  t.is(await unknown.next(), null, 'a token spd never issued')

  const fresh = await open()
  const first = RecordClient.of(fresh)
  t.like(parse((await (first.send(first.record(block(1))), first.next()))!), { status: STATUS.grantUnknown })
  const again = RecordClient.of(fresh)
  again.send(again.record(block(1)))
  t.is(await again.next(), null, 'a token serves one connection')

  const replay = first.record(block(2))
  first.send(replay)
  t.truthy(await first.next())
  first.send(replay)
  t.is(await first.next(), null, 'a replayed record')

  const cut = RecordClient.of(await open())
  const rec = cut.record(block(3))
  cut.send(rec.subarray(0, rec.length - 5))
  cut['sock'].end()
  t.is(await cut.next(), null, 'a truncated frame')

  const big = RecordClient.of(await open())
  const head = Buffer.alloc(4); head.writeUInt32BE((4 << 20) + (64 << 10) + 1)
  big.send(head)
  t.is(await big.next(), null, 'a length beyond the limit, before any of its bytes')
})

test.serial('a removed host loses its block connections; its grants are gone', async t => {
  const d = await decide(host2, '/f')
  const { bytes, header } = await host2.newHeader(d)
  const { remote } = await host2.blockChannel(d, bytes)
  const rc = RecordClient.of(remote)
  t.like(await call(rc, SEAL, 1, remote.grant, [{ aad: aadOf(header, 0, 3), data: Buffer.from('abc') }]), { status: STATUS.ok })
  t.is((await spctl(['host', 'remove', 'host-2'])).code, 0)
  rc.send(rc.record(request(SEAL, 2, remote.grant, [{ aad: aadOf(header, 0, 3), data: Buffer.from('abc') }])))
  t.is(await rc.next(), null)
})

test.serial('at most 64 connections at once wait for their first authentic record; more are closed unread, and the slots come back', async t => {
  const d = await decide(host1, '/g')
  const { bytes, header } = await host1.newHeader(d)
  const { remote } = await host1.blockChannel(d, bytes)
  // 72 connections that send nothing: the first 64 wait (up to 5 s each), the rest are closed at once.
  const idle = await Promise.all(Array.from({ length: 72 }, async () => await new Promise<{ sock: net.Socket, closed: boolean }>(resolve => {
    const c = { sock: net.connect(remote.port, '127.0.0.1'), closed: false }
    c.sock.on('close', () => { c.closed = true })
    c.sock.on('error', () => {})
    c.sock.on('connect', () => resolve(c))
  })))
  await new Promise(resolve => setTimeout(resolve, 1000))
  const closed = idle.filter(c => c.closed).length
  t.true(closed >= 8 && closed < 72, `closed unread: ${closed} of 72`)
  for (const c of idle) c.sock.destroy()
  // Their slots come back: a real client is served (retried while spd notices the hang-ups).
  let status = -1
  for (let i = 0; i < 20 && status !== STATUS.ok; i++) {
    await new Promise(resolve => setTimeout(resolve, 100))
    const fresh = (await host1.blockChannel(await decide(host1, '/g'), bytes)).remote
    const r = await call(RecordClient.of(fresh), SEAL, 1, fresh.grant, [{ aad: aadOf(header, 0, 3), data: Buffer.from('abc') }]).catch(() => null)
    status = r?.status ?? -1
  }
  t.is(status, STATUS.ok)
})
