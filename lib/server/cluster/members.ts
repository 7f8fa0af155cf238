// The member table of an installed configuration: keys parsed once, ids derived from keys (never trusted from the
// record), duplicates collapsed, removed members kept as revoked so their messages and sets stay refused, departed ones
// kept as members (they still get heartbeats and sets) but left out of every majority count.
import { keyId, parsePublicKey } from '../../crypto/identity'
import type { ConfigState, MemberRecord } from '../state'

export interface MemberView {
  /** Hex SHA-256 of the public key: the member id. */
  id: string
  digest: Buffer
  publicKey: Buffer
  addr: string
  name: string
  removed: boolean
  /** Stopped cleanly and left out of the majority count by an installed change of its own (until it returns). */
  departed: boolean
}

// Parsing a key checks its curve point (tens of microseconds); tables are rebuilt per configuration, so cache by text.
const parsedKeys = new Map<string, Buffer>()
function parseKeyCached (text: string): Buffer {
  let k = parsedKeys.get(text)
  if (k === undefined) {
    k = parsePublicKey(text)
    if (parsedKeys.size >= 4096) parsedKeys.clear()
    parsedKeys.set(text, k)
  }
  return k
}

export class MemberTable {
  readonly byId = new Map<string, MemberView>()

  constructor (members: Record<string, MemberRecord>) {
    for (const rec of Object.values(members)) {
      let publicKey: Buffer
      try { publicKey = parseKeyCached(rec.key) } catch { continue }
      const id = keyId(publicKey)
      const prev = this.byId.get(id)
      const removed = rec.state === 'removed' || prev?.removed === true // a revocation anywhere wins
      this.byId.set(id, { id, digest: Buffer.from(id, 'hex'), publicKey, addr: rec.clusterAddr ?? rec.addr, name: rec.name, removed, departed: !removed && rec.departed === true })
    }
  }

  static of (state: ConfigState): MemberTable { return new MemberTable(state.members) }

  get (id: string): MemberView | undefined { return this.byId.get(id) }

  private sorted: MemberView[] | null = null
  private activeList: MemberView[] | null = null
  private activeIdList: string[] | null = null
  private voterIdList: string[] | null = null
  private addrIndex: Map<string, string> | null = null // cluster address -> active member id (activeAt)

  /** Every distinct key, removed ones included, sorted by id (deterministic). Computed once; the table is immutable. */
  all (): MemberView[] {
    this.sorted ??= [...this.byId.values()].sort((a, b) => a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
    return this.sorted
  }

  /** Members that receive heartbeats and sets: every distinct key not removed, sorted by id (voterIds: who counts). */
  active (): MemberView[] {
    this.activeList ??= this.all().filter(m => !m.removed)
    return this.activeList
  }

  /** Id of the active member at a cluster address (the transport routes by address, once per packet). */
  activeAt (addr: string): string | undefined {
    if (this.addrIndex === null) {
      this.addrIndex = new Map()
      for (const m of this.active()) if (!this.addrIndex.has(m.addr)) this.addrIndex.set(m.addr, m.id) // the first by id wins
    }
    return this.addrIndex.get(addr)
  }

  activeIds (): string[] {
    this.activeIdList ??= this.active().map(m => m.id)
    return this.activeIdList
  }

  /** The members counted for every majority (agreement, catch-up, the staleness fence): active and not departed. */
  voterIds (): string[] {
    this.voterIdList ??= this.active().filter(m => !m.departed).map(m => m.id)
    return this.voterIdList
  }
}
