// The audit record format's fixed parts (lib/wire/FORMAT.md §7): version, the first prev, the line hash and the bytes
// a checkpoint signs. Shared by the writer (lib/server/audit.ts) and the verifier (lib/server/audit-verify.ts).
import crypto from 'node:crypto'

/** Version of the record format, named by every `start` record. */
export const AUDIT_FORMAT = 1
/** `prev` of the first record ever: base64url of 32 zero bytes. */
export const GENESIS_HASH = 'A'.repeat(43)
/** base64url SHA-256 of one line's exact bytes, without its newline. */
export function lineHash (line: string | Buffer): string {
  return crypto.hash('sha256', line, 'base64url')
}

/** The bytes a checkpoint signs: member id (32 bytes) || seq (u64 big-endian) || SHA-256 of the line before it. */
export function checkpointMessage (memberId: string, seq: number, prev: string): Buffer {
  const out = Buffer.alloc(32 + 8 + 32)
  out.write(memberId, 0, 32, 'hex')
  out.writeBigUInt64BE(BigInt(seq), 32)
  Buffer.from(prev, 'base64url').copy(out, 40)
  return out
}
