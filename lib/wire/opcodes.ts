// Opcodes of the PEM <-> spd frames and the cluster channel. Numbers travel on the wire. ONLY APPEND; never renumber or reuse.
// Format of each body: lib/wire/packets.ts; byte layout: lib/wire/FORMAT.md.

export const Op = {
  Hello: 0x01, // first frame on every channel: version negotiation
  Enroll: 0x02, // host presents a one-time token (only on the enrollment ALPN)
  Ping: 0x03, // liveness + fresh load values, no decision
  Servers: 0x04, // the cluster's current server list (hosts learn of member changes)
  Decide: 0x10, // one file operation with its access attributes -> decision
  BlocksSeal: 0x20, // encrypt a batch of plaintext blocks of one file (issue: crypto engine)
  BlocksOpen: 0x21, // decrypt a batch of ciphertext blocks of one file
  FileHeader: 0x22, // a new encrypted-file header for a key granted by a decision
  FileKey: 0x23, // a file's key, sealed to the host, for a host-placement decision (issue 18)
  KeysDrop: 0x24, // spd -> host, unsolicited: wipe every file key held and decide again (revocation, issue 18)
  BlockChannel: 0x25, // a grant installed at spd's native block service, and a block channel token (issue 17)
  KeyUsage: 0x26, // host -> spd: how many files each key version protects on this host, from its last scan (issue 19)
  Heartbeat: 0x30, // cluster message (heartbeat, set or list fetch), cluster listener only; nil reply = acknowledgment
  PolicySetFetch: 0x31, // an encrypted policy set, sent in answer to a set fetch, cluster listener only; nil reply
  AuditRead: 0x40 // a peer member reads this member's decision records (spctl audit tail); host listener, members only
} as const
export type Op = (typeof Op)[keyof typeof Op]

const NAMES = new Map<number, string>(Object.entries(Op).map(([k, v]) => [v, k]))
export function opName (op: number): string | undefined { return NAMES.get(op) }
export function isOp (op: number): op is Op { return NAMES.has(op) }
