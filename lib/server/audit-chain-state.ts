// What spd's event loop and the audit writer thread (lib/server/audit-chain.worker.ts) share: the start of the chain,
// the messages, and one SharedArrayBuffer holding how many messages are written and the chain's head after them.

/** The writer thread's workerData. */
export interface AuditChainStart {
  /** The log, opened for appending by the event loop (so a bad path fails in the constructor), which also closes it. */
  fd: number
  seq: number
  head: string
  memberId: string
  /** A copy of Identity.signKey; the thread moves it into sodium memory and zeroes this copy. */
  signKey: Uint8Array
  checkpointEvery: number
  state: SharedArrayBuffer
}

/** The messages other than a batch (a string of record bodies joined by `\n`). */
export interface AuditChainOp { op: 'checkpoint' | 'close' }

/** Int32 slots of the shared state; the seq (a float64) and the head's 43 base64url bytes follow them. */
export const AUDIT_STATE = { done: 0, failed: 1 } as const
const SEQ_OFFSET = 8
const HEAD_OFFSET = 16
const HEAD_CHARS = 43

export function newAuditState (): SharedArrayBuffer { return new SharedArrayBuffer(HEAD_OFFSET + HEAD_CHARS + 5) }

/** Written by the thread before it counts a message done (the Atomics.add that follows makes it visible). */
export function publishHead (state: Int32Array, seq: number, head: string): void {
  new Float64Array(state.buffer, SEQ_OFFSET, 1)[0] = seq
  Buffer.from(state.buffer, HEAD_OFFSET, HEAD_CHARS).write(head, 'latin1')
}

/** The last record written, read once every message posted is done. */
export function readHead (state: Int32Array): { seq: number, hash: string } {
  return { seq: new Float64Array(state.buffer, SEQ_OFFSET, 1)[0], hash: Buffer.from(state.buffer, HEAD_OFFSET, HEAD_CHARS).toString('latin1') }
}
