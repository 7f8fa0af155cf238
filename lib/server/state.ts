// The replicated configuration set of an spd member: its shape, its limits, and a fresh empty one.
// Persisted (encrypted) by lib/server/store.ts; format: lib/wire/FORMAT.md §3.

export interface KeyVersion { version: number, material: Buffer, created: string }
/** A version taken out of use by `spctl key retire` (its material is gone): who retired it, when. */
export interface RetiredKeyVersion { version: number, retired: string, by: string }
/** keysRevoked (`spctl host revoke`): the host gets no file keys (its host-placement files are served by spd). */
export interface HostRecord { id: string, name: string, key: string, enrolled: string, keysRevoked?: boolean }
export interface TokenRecord { name: string, expires: string, createdBy: string }
/**
 * `hash`: the password's scrypt hash (written by `spd init`; now only the proof of an upgrade checks it); `signKey`:
 * the public half of a key derived from the same password (lib/crypto/admin-key.ts), which logins and member-list
 * changes are signed with. A record without one (made before admins had keys) gains it at the admin's next login.
 */
export interface AdminRecord { hash: string, signKey?: string }
/** Which members a host uses and which it prefers (0..1), by member name; key '*' applies to hosts without their own. */
export interface HostServers { only: string[] | null, prefer: Record<string, number> }
/**
 * `departed`: the member stopped cleanly and the cluster agreed to leave it out of the majority count until it returns
 * (it sets and clears the flag itself, one change each; docs/CLUSTER.md, "Clean stops").
 */
export interface MemberRecord { id: string, key: string, name: string, addr: string, clusterAddr: string | null, state: 'active' | 'removed', departed?: true }

export interface ConfigState {
  /** The configuration (policy) version: + 1 on every committed admin change. Never goes backwards. */
  version: number
  policyText: string | null // as the admin wrote it (spctl policy get)
  policyCanonical: string | null // canonical JSON of the same policy: parsed at start-up (10,000 rules in ~0.3 s, vs seconds of YAML)
  /** Named data keys: index 0 of each list is the newest version. Material never leaves spd. */
  keys: Record<string, KeyVersion[]>
  /** Retired versions of the named keys, by key name (absent: none retired). */
  retiredKeys?: Record<string, RetiredKeyVersion[]>
  hosts: Record<string, HostRecord>
  /** One-time enrollment tokens by SHA-256 of the token. */
  tokens: Record<string, TokenRecord>
  admins: Record<string, AdminRecord>
  members: Record<string, MemberRecord>
  /** Server lists and preferences for hosts, by host name or '*' (absent: every member, no preference). */
  hostServers?: Record<string, HostServers>
  changedBy: string
  changedAt: string
  /** Random id of the cluster (hex, 32 bytes), set when its first member is created; binds every signature and set to it. */
  clusterId?: string
  /** Cluster change log, newest last, at most 64 entries: which member's which admin change made each version (lib/server/cluster). */
  clusterLog?: ClusterLogEntry[]
}

/**
 * One version's entry in the cluster change log (lib/server/cluster/changes.ts checks them on every member): which
 * member proposed which change; a change of the member list names the one member it adds or removes and the admin
 * user it was made for with `adminSig`, that admin's signature over (version, op, member, origin) (a member's own
 * departure and return name no admin); `adminUpgrade` names the admin whose record gained its `signKey` in this version;
 * `sig` is the origin member's signature over the configuration it proposed (without `sig`).
 */
export interface ClusterLogEntry { version: number, origin: string, change: string, member?: { op: 'add' | 'remove' | 'depart' | 'return', id: string }, admin?: string, adminSig?: string, adminUpgrade?: string, adminPasswd?: AdminPasswdEntry, sig?: string }
/** A password change in the change log: the admin's new record and the signature of its old key (adminPasswdInput). */
export interface AdminPasswdEntry { user: string, hash: string, signKey: string, sig: string }

export function emptyState (): ConfigState {
  return { version: 0, policyText: null, policyCanonical: null, keys: {}, hosts: {}, tokens: {}, admins: {}, members: {}, changedBy: 'init', changedAt: new Date().toISOString() }
}
