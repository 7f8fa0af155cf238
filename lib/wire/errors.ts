// The one error table: string code <-> stable wire id <-> errno for pemfs. ONLY APPEND; never renumber or reuse an id.
// Documented in lib/wire/FORMAT.md (test/wire/errors.test.ts checks that every code is there).

export const ERRORS = {
  PEM_ERR_BAD_FRAME: { id: 1, errno: 'EIO', message: 'malformed frame' },
  PEM_ERR_VERSION: { id: 2, errno: 'EPROTO', message: 'no common protocol version' },
  PEM_ERR_BAD_SIGNATURE: { id: 3, errno: 'EACCES', message: 'signature check failed' },
  PEM_ERR_POLICY_DENY: { id: 4, errno: 'EACCES', message: 'denied by policy' },
  PEM_ERR_NOT_FOUND: { id: 5, errno: 'ENOENT', message: 'no such path' },
  PEM_ERR_TIMEOUT: { id: 6, errno: 'ETIMEDOUT', message: 'server did not answer in time' },
  PEM_ERR_UNKNOWN: { id: 7, errno: 'EIO', message: 'unknown remote error' },
  PEM_ERR_FRAME_TOO_LARGE: { id: 8, errno: 'EIO', message: 'frame exceeds the size limit' },
  PEM_ERR_BAD_OPCODE: { id: 9, errno: 'EIO', message: 'unknown opcode' },
  PEM_ERR_BAD_BODY: { id: 10, errno: 'EINVAL', message: 'frame body does not match its opcode' },
  PEM_ERR_STALE_POLICY: { id: 11, errno: 'EAGAIN', message: 'request carries a stale policy version' },
  PEM_ERR_OVERLOAD: { id: 12, errno: 'EAGAIN', message: 'server is over its load threshold' },
  PEM_ERR_NOT_ENROLLED: { id: 13, errno: 'EACCES', message: 'host key is not enrolled' },
  PEM_ERR_BAD_TOKEN: { id: 14, errno: 'EACCES', message: 'enrollment token is unknown, used or expired' },
  PEM_ERR_PEER_KEY: { id: 15, errno: 'EACCES', message: 'peer key does not match the pinned key' },
  PEM_ERR_CLOSED: { id: 16, errno: 'ECONNRESET', message: 'channel closed' },
  PEM_ERR_UNREACHABLE: { id: 17, errno: 'EHOSTUNREACH', message: 'no server could be reached' },
  PEM_ERR_BAD_POLICY: { id: 18, errno: 'EINVAL', message: 'policy document is invalid' },
  PEM_ERR_BAD_CONFIG: { id: 19, errno: 'EINVAL', message: 'configuration is invalid' },
  PEM_ERR_AUTH: { id: 20, errno: 'EACCES', message: 'authentication failed' },
  PEM_ERR_STORE: { id: 21, errno: 'EIO', message: 'configuration store is unreadable or corrupt' },
  PEM_ERR_KEY_NOT_GRANTED: { id: 22, errno: 'EACCES', message: 'key is not granted by the decision' },
  PEM_ERR_NO_KEY: { id: 23, errno: 'EIO', message: 'no such key' },
  PEM_ERR_BAD_ARGUMENT: { id: 24, errno: 'EINVAL', message: 'bad argument' },
  PEM_ERR_BAD_HEADER: { id: 25, errno: 'EIO', message: 'encrypted file header is malformed' },
  PEM_ERR_AUTH_FAILED_BLOCK: { id: 26, errno: 'EIO', message: 'block failed authentication' },
  PEM_ERR_TRUNCATED: { id: 27, errno: 'EIO', message: 'encrypted file is truncated inside a block' },
  PEM_ERR_KEY_VERSION: { id: 28, errno: 'EIO', message: 'block was sealed under another key version' },
  PEM_ERR_BUSY: { id: 29, errno: 'EBUSY', message: 'resource is busy' },
  PEM_ERR_CLUSTER_MSG: { id: 30, errno: 'EPROTO', message: 'malformed cluster message' },
  PEM_ERR_CHECKSUM: { id: 31, errno: 'EIO', message: 'cluster message checksum mismatch' },
  PEM_ERR_UNKNOWN_MEMBER: { id: 32, errno: 'EACCES', message: 'sender is not a member of the installed configuration' },
  PEM_ERR_REMOVED_MEMBER: { id: 33, errno: 'EACCES', message: 'sender was removed from the cluster' },
  PEM_ERR_REPLAY: { id: 34, errno: 'EACCES', message: 'sequence number is not fresh (replay or too old)' },
  PEM_ERR_NOT_ADDRESSED: { id: 35, errno: 'EACCES', message: 'digest list does not name the receiver' },
  PEM_ERR_BAD_POLICY_SET: { id: 36, errno: 'EPROTO', message: 'malformed encrypted policy set' },
  PEM_ERR_POLICY_SET_AUTH: { id: 37, errno: 'EACCES', message: 'policy set failed authentication (wrapped key or ciphertext)' },
  PEM_ERR_NOT_LISTED: { id: 38, errno: 'EACCES', message: 'receiver is not listed in the policy set' },
  PEM_ERR_ROLLBACK: { id: 39, errno: 'EACCES', message: 'policy version is older than the installed one' },
  PEM_ERR_EQUIVOCATION: { id: 40, errno: 'EACCES', message: 'two different policy sets for one version from one origin' },
  PEM_ERR_CHANGE_REBASED: { id: 41, errno: 'EAGAIN', message: 'a concurrent change won this version; the change was re-based on it' },
  PEM_ERR_CHANGE_PENDING: { id: 42, errno: 'EAGAIN', message: 'the change is proposed but not installed yet: too few cluster members are reachable' },
  PEM_ERR_NO_CLUSTER: { id: 43, errno: 'EINVAL', message: 'this member has no cluster listener (spd init --cluster-listen)' },
  PEM_ERR_BAD_SUCCESSION: { id: 44, errno: 'EACCES', message: 'policy set does not follow from the installed configuration (version jump, member list or origin)' },
  PEM_ERR_RATE_LIMITED: { id: 45, errno: 'EAGAIN', message: 'too many attempts from this source: try again later' },
  PEM_ERR_KEY_RETIRED: { id: 46, errno: 'EACCES', message: 'the file is under a retired key version' },
  ENGINE_ERR_OPENSSL: { id: 64, errno: 'EIO', message: 'OpenSSL failure' },
  ENGINE_ERR_BAD_LENGTH: { id: 65, errno: 'EINVAL', message: 'buffer has the wrong length' },
  ENGINE_ERR_AUTH: { id: 66, errno: 'EIO', message: 'AEAD authentication failed' },
  ENGINE_ERR_PROVIDER: { id: 67, errno: 'EIO', message: 'crypto provider or engine could not be loaded' },
  ENGINE_ERR_COMPRESS: { id: 68, errno: 'EIO', message: 'compression or decompression failed' },
  ENGINE_ERR_BAD_ARGUMENT: { id: 69, errno: 'EINVAL', message: 'bad argument to the native engine' },
  ENGINE_ERR_LOAD_REGS: { id: 70, errno: 'EIO', message: 'load registers could not be read' },
  ENGINE_ERR_FUSE: { id: 71, errno: 'EIO', message: 'the native FUSE session failed (mount, unmount or an answer)' }
} as const

export type ErrorCode = keyof typeof ERRORS

const BY_ID = new Map<number, ErrorCode>()
for (const [code, e] of Object.entries(ERRORS)) BY_ID.set(e.id, code as ErrorCode)

export function isErrorCode (code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.prototype.hasOwnProperty.call(ERRORS, code)
}

export class PemError extends Error {
  readonly code: ErrorCode
  /** The raw wire id when it was not in our table (PEM_ERR_UNKNOWN). */
  readonly wireId: number
  constructor (code: ErrorCode, detail?: string, options?: ErrorOptions) {
    super(detail ?? ERRORS[code].message, options)
    this.name = 'PemError'
    this.code = code
    this.wireId = ERRORS[code].id
  }

  get errno (): string { return ERRORS[this.code].errno }

  toWire (): [number, string] { return [this.wireId, this.message] }

  static fromWire (id: unknown, detail: unknown): PemError {
    const code = typeof id === 'number' ? BY_ID.get(id) : undefined
    const err = new PemError(code ?? 'PEM_ERR_UNKNOWN', typeof detail === 'string' ? detail.slice(0, 1024) : undefined)
    if (code === undefined && typeof id === 'number') (err as { wireId: number }).wireId = id
    return err
  }

  /** Anything thrown becomes a PemError; an error that already carries one of our codes keeps it. */
  static from (err: unknown, fallback: ErrorCode = 'PEM_ERR_UNKNOWN'): PemError {
    if (err instanceof PemError) return err
    const code = (err as { code?: unknown } | null)?.code
    const message = err instanceof Error ? err.message : String(err)
    return new PemError(isErrorCode(code) ? code : fallback, message, { cause: err })
  }
}

/** Negative errno for a FUSE callback. */
export function errnoOf (err: unknown, errnos: Record<string, number>): number {
  const code = PemError.from(err).code
  return -(errnos[ERRORS[code].errno] ?? errnos.EIO ?? 5)
}
