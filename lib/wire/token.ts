// Enrollment tokens: `pem1.<secret>.<server id>`. The host pins the server named in the token when it enrolls,
// and spd keeps only the SHA-256 of the secret (lib/crypto/password.ts tokenHash).
import { PemError } from './errors'

const TOKEN = /^pem1\.([A-Za-z0-9_-]{43})\.([0-9a-f]{64})$/

export function formatToken (secret: string, serverId: string): string { return `pem1.${secret}.${serverId}` }

export function parseToken (token: string): { secret: string, serverId: string } {
  const m = TOKEN.exec(token)
  if (m === null) throw new PemError('PEM_ERR_BAD_TOKEN', 'token must look like pem1.<secret>.<server id>')
  return { secret: m[1], serverId: m[2] }
}
