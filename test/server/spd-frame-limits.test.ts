// Frame limits after authentication on spd's host listener (issue 15): an enrolled host's largest legitimate requests
// fit hostListenerFrameLimit, and against a real spd on loopback a frame over it is refused from its header with
// PEM_ERR_FRAME_TOO_LARGE and closes that channel only, while another channel of the same host keeps getting decisions.
import test from 'ava'
import tls from 'node:tls'
import { ALPN_SESSION } from '../../lib/channel/tls'
import { attrsOf } from '../../lib/pem-fs/attrs'
import { ClusterClient } from '../../lib/pem-fs/client'
import { hostIdentity } from '../../lib/pem-fs/host-config'
import { ERRORS } from '../../lib/wire/errors'
import { FLAG_ERROR, FLAG_REPLY, FrameSplitter, HOST_CONTROL_FRAME_BYTES, HOST_DATA_FRAME_BYTES, MAX_FRAME_BYTES, PREAUTH_FRAME_BYTES, encodeFrame, hostListenerFrameLimit, type Frame } from '../../lib/wire/frame'
import { HEADER_MAX_BYTES, RECORD_OVERHEAD } from '../../lib/wire/file-format'
import { Op } from '../../lib/wire/opcodes'
import { LIMITS, checkBlocks, checkDecide } from '../../lib/wire/packets'
import { tempDir, type Spd } from '../../scripts/procs'
import { spdWithEnrolledHost, stopEnrolledHost, type EnrolledHost } from '../helpers/enrolled-host'

const POLICY = 'format: 1\nguards:\n  /srv/data:\n    rules:\n      - id: public\n        resources: { dirs: [/public] }\n        effect: permit\n'

/** The frame length field of `body` under `op`. */
const lengthOf = (op: number, body: unknown): number => encodeFrame(op, 1, body).length - 4
const longest = (bytes: number, lead = ''): string => lead + 'x'.repeat(bytes - lead.length)

/** A Decide with every field at the longest its checker accepts. */
function largestDecide (): unknown {
  return {
    pv: Number.MAX_SAFE_INTEGER,
    guard: longest(LIMITS.pathBytes, '/'),
    path: longest(LIMITS.pathBytes, '/'),
    action: 'readlink',
    bytes: Number.MAX_SAFE_INTEGER,
    attrs: {
      uid: 0xffffffff,
      gids: Array(LIMITS.gids).fill(0xffffffff),
      user: longest(LIMITS.stringBytes),
      groups: Array(LIMITS.gids).fill(longest(LIMITS.stringBytes)),
      domain: longest(LIMITS.stringBytes),
      pid: 0xffffffff,
      sid: 0xffffffff,
      exe: longest(LIMITS.pathBytes, '/'),
      exeHash: 'f'.repeat(64),
      auth: 255
    }
  }
}

/** A BlocksSeal/BlocksOpen batch at its limits: every block number large, a record's overhead on every block. */
function largestBatch (): { grant: string, header: Buffer, blocks: number[], lens: number[], data: Buffer } {
  const n = LIMITS.blocksPerBatch
  const per = LIMITS.batchBytes / n + RECORD_OVERHEAD
  return { grant: longest(LIMITS.grantBytes), header: Buffer.alloc(HEADER_MAX_BYTES), blocks: Array(n).fill(2 ** 48), lens: Array(n).fill(per), data: Buffer.alloc(per * n) }
}

test('the largest legitimate host requests fit the host limits; the limits are far below the old 4 MiB', t => {
  const decide = largestDecide()
  t.notThrows(() => checkDecide(decide))
  const batch = largestBatch()
  t.notThrows(() => checkBlocks(batch))
  const decideBytes = lengthOf(Op.Decide, decide)
  const batchBytes = lengthOf(Op.BlocksSeal, batch)
  t.log(`largest Decide ${decideBytes} bytes (limit ${HOST_CONTROL_FRAME_BYTES}), largest batch ${batchBytes} bytes (limit ${HOST_DATA_FRAME_BYTES})`)
  t.true(decideBytes <= hostListenerFrameLimit('host', Op.Decide))
  t.true(batchBytes <= hostListenerFrameLimit('host', Op.BlocksSeal))
  t.true(batchBytes <= hostListenerFrameLimit('host', Op.BlocksOpen))
  t.true(HOST_CONTROL_FRAME_BYTES - decideBytes < 32 * 1024, 'the control limit is the largest Decide plus a margin')
  t.true(HOST_DATA_FRAME_BYTES - batchBytes < 32 * 1024, 'the data limit is the largest batch plus a margin')
  for (const op of [Op.FileHeader, Op.FileKey, Op.BlockChannel, Op.Ping, Op.Servers, Op.AuditRead]) t.is(hostListenerFrameLimit('host', op), HOST_CONTROL_FRAME_BYTES)
  const audit = { since: longest(64), after: Number.MAX_SAFE_INTEGER, limit: LIMITS.auditRecords, uid: 0xffffffff, host: longest(LIMITS.stringBytes), effect: 'permit', rule: longest(LIMITS.stringBytes) }
  t.true(lengthOf(Op.AuditRead, audit) <= hostListenerFrameLimit('member', Op.AuditRead), 'a member\'s AuditRead')
  t.is(hostListenerFrameLimit('member', Op.BlocksSeal), PREAUTH_FRAME_BYTES)
  t.true(HOST_DATA_FRAME_BYTES < MAX_FRAME_BYTES)
})

let spd: Spd
let hostDir: string
let client: ClusterClient
let env: EnrolledHost | undefined
const work = tempDir('frame-limits')

test.before(async () => {
  env = await spdWithEnrolledHost(work, 'spd-frames', { load: { threshold: 1 } }, POLICY, 'big')
  ;({ spd, hostDir, client } = env)
})

test.after.always(async () => { await stopEnrolledHost(env) })

interface Raw { sock: tls.TLSSocket, frames: Frame[], closed: Promise<void>, frame: () => Promise<Frame> }

/** A session channel of the enrolled host, written byte by byte: the Hello is sent and its reply awaited. */
async function hostSession (t: { teardown: (fn: () => void) => void }): Promise<Raw> {
  const me = hostIdentity(hostDir)
  const [host, port] = spd.listen.split(':')
  const sock = tls.connect({ host, port: Number(port), rejectUnauthorized: false, minVersion: 'TLSv1.3', ALPNProtocols: [ALPN_SESSION], key: me.keyPem, cert: me.certPem })
  t.teardown(() => sock.destroy())
  sock.on('error', () => {})
  const split = new FrameSplitter(MAX_FRAME_BYTES)
  const waiters: Array<() => void> = []
  let seen = 0
  const raw: Raw = {
    sock,
    frames: [],
    closed: new Promise<void>(resolve => sock.on('close', () => resolve())),
    frame: async () => {
      const deadline = Date.now() + 5000
      while (raw.frames.length <= seen) {
        if (sock.destroyed || Date.now() > deadline) throw new Error(`no frame from spd (${sock.destroyed ? 'closed' : 'timed out'})`)
        await new Promise<void>(resolve => { waiters.push(resolve); setTimeout(resolve, 100) })
      }
      return raw.frames[seen++]
    }
  }
  sock.on('data', (d: Buffer) => { raw.frames.push(...split.push(d)); for (const w of waiters.splice(0)) w() })
  sock.on('close', () => { for (const w of waiters.splice(0)) w() })
  await new Promise<void>((resolve, reject) => { sock.once('secureConnect', () => resolve()); sock.once('error', reject) })
  sock.write(encodeFrame(Op.Hello, 1, { min: 1, max: 1, cur: 1, role: 'host' }))
  const hello = await raw.frame()
  if (hello.op !== Op.Hello || hello.flags !== FLAG_REPLY) throw new Error(`no Hello reply: ${JSON.stringify(hello.body)}`)
  return raw
}

function header (op: number, id: number, length: number): Buffer {
  const b = Buffer.alloc(10)
  b.writeUInt32BE(length, 0); b[4] = op; b.writeUInt32BE(id, 6)
  return b
}
const codeOf = (f: Frame): number | undefined => (f.flags & FLAG_ERROR) !== 0 ? (f.body as [number, string])[0] : undefined

async function decideHonestly (): Promise<boolean> {
  return (await client.decide({ guard: '/srv/data', path: '/public/report', action: 'read', attrs: attrsOf(process.pid, 1000, 1000) })).ok
}

test.serial('spd reads an enrolled host\'s largest requests and answers them on an open channel', async t => {
  const raw = await hostSession(t)
  raw.sock.write(encodeFrame(Op.Decide, 2, largestDecide()))
  const decided = await raw.frame()
  t.is(decided.id, 2)
  t.not(codeOf(decided), ERRORS.PEM_ERR_FRAME_TOO_LARGE.id)
  raw.sock.write(encodeFrame(Op.BlocksSeal, 3, largestBatch()))
  const sealed = await raw.frame()
  t.is(sealed.id, 3)
  t.is(codeOf(sealed), ERRORS.PEM_ERR_KEY_NOT_GRANTED.id, 'read whole, then refused for its made-up grant')
  raw.sock.write(encodeFrame(Op.Ping, 4, null))
  const pong = await raw.frame()
  t.deepEqual([pong.id, pong.flags], [4, FLAG_REPLY])
})

test.serial('an enrolled host\'s oversize frame closes its channel with PEM_ERR_FRAME_TOO_LARGE; spd keeps serving the host\'s other channel', async t => {
  t.true(await decideHonestly())
  const cases: Array<[string, Buffer]> = [
    ['a Decide one byte over the control limit (header only)', header(Op.Decide, 2, HOST_CONTROL_FRAME_BYTES + 1)],
    ['a Ping announcing the data limit (header only)', header(Op.Ping, 2, HOST_DATA_FRAME_BYTES)],
    ['a BlocksSeal one byte over the data limit (header only)', header(Op.BlocksOpen, 2, HOST_DATA_FRAME_BYTES + 1)],
    ['a whole 4 MiB BlocksSeal, body sent', encodeFrame(Op.BlocksSeal, 2, { ...largestBatch(), data: Buffer.alloc(MAX_FRAME_BYTES - 64 * 1024) })]
  ]
  for (const [what, bytes] of cases) {
    const raw = await hostSession(t)
    raw.sock.write(bytes)
    const notice = await raw.frame()
    t.deepEqual([notice.id, codeOf(notice)], [0, ERRORS.PEM_ERR_FRAME_TOO_LARGE.id], what)
    t.regex((notice.body as [number, string])[1], /exceeds the limit of \d+ for opcode 0x[0-9a-f]+ from a host/, what)
    await raw.closed
    t.true(await decideHonestly(), `decisions go on after ${what}`)
  }
  const after = await hostSession(t)
  after.sock.write(encodeFrame(Op.Ping, 2, null))
  t.is((await after.frame()).flags, FLAG_REPLY, 'the host opens a new channel and is answered')
})
