// Ed25519 verifications per second on spd's paths (libsodium through lib/crypto/sign.ts): a signed cluster heartbeat
// (split + verify, as a receiver does before decoding it), the same with a forged signature, and an admin-signed
// change record; beside `openssl speed ed25519`, raw libsodium and node:crypto verifying the same bytes in the same run.
import crypto from 'node:crypto'
import { spawnSync } from 'node:child_process'
import { verifyClusterMsg, signClusterMsg } from '../../lib/crypto/cluster-auth'
import { SIG_CTX_ADMIN_MEMBER_CHANGE, SIG_CTX_CLUSTER_MSG } from '../../lib/crypto/contexts'
import { generateIdentity } from '../../lib/crypto/identity'
import { sign, verify } from '../../lib/crypto/sign'
import { sodium } from '../../lib/crypto/sodium'
import { ClusterMsgType, encodeHeartbeatBody, encodeUnsigned, splitClusterMsg } from '../../lib/wire/cluster-msg'
import { haveCommand } from '../engine/measure'
import { median, opsPerSecond, type BenchFn } from '../harness'

const PER_CALL = 200 // verifications per timed call

/** `openssl speed ed25519`: verifications per second, or null without the CLI. */
function opensslVerifyRate (seconds: number): number | null {
  if (!haveCommand('openssl')) return null
  const r = spawnSync('openssl', ['speed', '-seconds', String(seconds), 'ed25519'], { encoding: 'utf8', timeout: (4 * seconds + 30) * 1000 })
  const m = /EdDSA \(Ed25519\)\s+[\d.]+s\s+[\d.]+s\s+([\d.]+)\s+([\d.]+)/.exec(r.stdout ?? '')
  return m === null ? null : parseFloat(m[2])
}

function repeat (fn: () => boolean): () => number {
  return () => {
    for (let i = 0; i < PER_CALL; i++) if (fn() !== true) throw new Error('a verification gave the wrong answer')
    return PER_CALL
  }
}

export const run: BenchFn = async ctx => {
  const member = generateIdentity()
  const clusterId = crypto.randomBytes(32)
  const body = encodeHeartbeatBody({ status: 1, installedVersion: 7, installedDigest: Buffer.alloc(32, 1), pendingVersion: 0, pendingDigest: null, phase: 0, bar: null, members: null, listDigest: Buffer.alloc(32, 2) })
  const signed = signClusterMsg(clusterId, encodeUnsigned(ClusterMsgType.Heartbeat, Buffer.from(member.id, 'hex'), 1, 1, body), member.signKey)
  const forged = Buffer.from(signed)
  forged[forged.length - 1] ^= 1
  // The bytes sign.ts verifies for that message, for the raw libsodium and node:crypto baselines.
  const raw = splitClusterMsg(signed)
  const framed = Buffer.concat([Buffer.from(SIG_CTX_CLUSTER_MSG), Buffer.from([0]), clusterId, raw.signed.subarray(0, 1), raw.signed])
  const nodeKey = crypto.createPublicKey({ key: Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), member.publicKey]), format: 'der', type: 'spki' })
  if (!crypto.verify(null, framed, nodeKey, raw.signature)) throw new Error('the baselines do not verify the same bytes')
  const change = Buffer.alloc(160, 3)
  const changeSig = sign(SIG_CTX_ADMIN_MEMBER_CHANGE, change, member.signKey)

  // Rounds interleave every rate (and openssl), so that a shared machine's load falls on all of them alike; each row
  // reports the median rate and the median of its per-round ratios.
  const rates: Record<string, number[]> = { openssl: [], sodiumRaw: [], node: [], heartbeat: [], forged: [], admin: [] }
  const loops: Record<string, () => number> = {
    sodiumRaw: repeat(() => sodium.crypto_sign_verify_detached(raw.signature, framed, member.publicKey)),
    node: repeat(() => crypto.verify(null, framed, nodeKey, raw.signature)),
    heartbeat: repeat(() => verifyClusterMsg(clusterId, splitClusterMsg(signed), member.publicKey)),
    forged: repeat(() => !verifyClusterMsg(clusterId, splitClusterMsg(forged), member.publicKey)),
    admin: repeat(() => verify(SIG_CTX_ADMIN_MEMBER_CHANGE, change, changeSig, member.publicKey))
  }
  for (let round = 0; round < (ctx.quick ? 1 : 5); round++) {
    const o = opensslVerifyRate(1)
    if (o !== null) rates.openssl.push(o)
    for (const [name, loop] of Object.entries(loops)) rates[name].push(await opsPerSecond(ctx.quick ? 100 : 500, loop))
  }
  if (rates.openssl.length === 0) ctx.log('openssl CLI missing: its baseline skipped')
  const row = (name: string, value: string, baselineName: string | null, baseline: string | null, note?: string): void => {
    const v = median(rates[value])
    const b = baseline === null || rates[baseline].length === 0 ? null : median(rates[baseline])
    const paired = b === null ? null : median(rates[value].map((x, i) => x / rates[baseline as string][i]))
    const samples = ` (samples ${rates[value].map(Math.round).join('/')}${b === null ? '' : ` vs ${rates[baseline as string].map(Math.round).join('/')}`})`
    ctx.report({ name: name + samples, value: Math.round(v), unit: 'verifies/s', baseline: b === null ? null : baselineName, baseline_value: b === null ? null : Math.round(b), ratio: paired === null ? null : Math.round(paired * 1000) / 1000, ...(note === undefined ? {} : { note }) })
  }
  const note = `${signed.length}-byte heartbeat, one thread`
  row('verify cluster heartbeat (split + Ed25519, libsodium)', 'heartbeat', 'openssl speed ed25519', 'openssl', note)
  row('verify cluster heartbeat vs raw libsodium (framing cost)', 'heartbeat', 'crypto_sign_verify_detached, same bytes', 'sodiumRaw', note)
  row('verify forged cluster heartbeat (refused)', 'forged', 'valid heartbeat', 'heartbeat', note)
  row('verify admin-signed change (160 B)', 'admin', 'crypto_sign_verify_detached, heartbeat', 'sodiumRaw')
  row('verify Ed25519 node:crypto (same bytes)', 'node', 'crypto_sign_verify_detached, same bytes', 'sodiumRaw')
}
