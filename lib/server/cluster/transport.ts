// The cluster transport seam: what the membership/sync core sends and receives. Real sockets and the in-memory mock
// (transport-mock.ts) both implement it; the address is routing only, never identity (identity is the signing key).

/** `msg`: a signed cluster message (lib/wire/cluster-msg.ts); `set`: an encrypted policy set (lib/wire/policy-set.ts). */
export type PacketKind = 'msg' | 'set'

export interface Packet { kind: PacketKind, from: string, to: string, bytes: Buffer }

export interface Transport {
  /** Best effort, fire and forget: the packet may be lost, delayed, duplicated, reordered or corrupted. */
  send: (packet: Packet) => void
}

export interface Clock { now: () => number }
