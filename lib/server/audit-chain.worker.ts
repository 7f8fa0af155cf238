// The audit log's writer thread (lib/server/audit.ts starts it): takes batches of record bodies from spd's event loop,
// gives each its chain fields (seq, prev = SHA-256 of the line before), adds the signed checkpoints and appends each
// batch with one write, so the hashing, signing and syscall cost spd's event loop nothing (format: FORMAT.md §7).
import fs from 'node:fs'
import { parentPort, workerData } from 'node:worker_threads'
import { SIG_CTX_AUDIT } from '../crypto/contexts'
import { sign } from '../crypto/sign'
import { sodium } from '../crypto/sodium'
import { checkpointMessage, lineHash } from '../wire/audit-record'
import { type AuditChainStart, type AuditChainOp, AUDIT_STATE, publishHead } from './audit-chain-state'

const start = workerData as AuditChainStart
const state = new Int32Array(start.state)
const signKey = sodium.sodium_malloc(sodium.crypto_sign_SECRETKEYBYTES)
signKey.set(start.signKey)
sodium.sodium_memzero(Buffer.from(start.signKey.buffer, start.signKey.byteOffset, start.signKey.byteLength))

/** After the close request: the event loop closes the file once this thread is done with it. */
let closed = false
let seq = start.seq
let head = start.head
let unsigned = 0
let stampMs = -1
let stamp = ''

/** new Date().toISOString(), formatted again only when the millisecond changes (checkpoints' own time). */
function now (): string {
  const ms = Date.now()
  if (ms !== stampMs) { stampMs = ms; stamp = new Date(ms).toISOString() }
  return stamp
}

function chained (lines: string[], body: string): void {
  const line = `{"seq":${seq + 1},"prev":"${head}",${body}`
  seq++
  head = lineHash(line)
  lines.push(line)
}

/** A signed record over (member id, its seq, the hash of the line before it), if any record is not covered yet. */
function checkpoint (lines: string[]): void {
  if (unsigned === 0) return
  unsigned = 0
  const sig = sign(SIG_CTX_AUDIT, checkpointMessage(start.memberId, seq + 1, head), signKey).toString('base64url')
  chained(lines, `"ts":"${now()}","kind":"audit","event":"checkpoint","member":"${start.memberId}","sig":"${sig}"}`)
}

/** One message: a batch (bodies joined by `\n`; JSON text has no raw newline) or a checkpoint or close request. */
function handle (message: string | AuditChainOp): void {
  const lines: string[] = []
  if (typeof message === 'string') {
    for (const body of message.split('\n')) {
      chained(lines, body)
      if (++unsigned >= start.checkpointEvery) checkpoint(lines)
    }
  } else {
    checkpoint(lines)
  }
  if (lines.length > 0 && !closed) fs.writeSync(start.fd, lines.join('\n') + '\n')
  if (typeof message !== 'string' && message.op === 'close') { closed = true; sodium.sodium_memzero(signKey) }
  publishHead(state, seq, head)
}

parentPort?.on('message', (message: string | AuditChainOp) => {
  try {
    handle(message)
  } catch (err) {
    Atomics.store(state, AUDIT_STATE.failed, 1)
    Atomics.notify(state, AUDIT_STATE.done)
    throw err
  }
  Atomics.add(state, AUDIT_STATE.done, 1)
  Atomics.notify(state, AUDIT_STATE.done)
})
