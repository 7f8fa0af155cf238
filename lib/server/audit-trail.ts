// The cluster's audit trail: decision records of every active member merged by time, for GET /v1/audit/trail
// (spctl audit tail). The member the admin is logged in to reads its own log and asks each peer over the peer's host
// listener (AuditRead, a channel under the member's own key, which the peer accepts from active members only), so one
// admin login reads the whole cluster. Filters run where the records are, so only matching records travel.
import type { Channel } from '../channel/channel'
import { connect } from '../channel/tls'
import { PemError } from '../wire/errors'
import { Op } from '../wire/opcodes'
import { asDecisionRecord, type DecisionRecord } from '../wire/audit-record'
import { LIMITS, type AuditReadBody, type AuditReadReply } from '../wire/packets'
import { ROTATED_SUFFIX } from './audit'
import { recentDecisions } from './audit-read'
import { splitHostPort } from './config'
import type { Member } from './member'

/** How long a peer may take to connect and to answer before the trail is given without its records. */
const PEER_TIMEOUT_MS = 2000

/** One member's part of a trail: its records, or why it has none. */
export interface MemberPart { member: string, id: string, records: DecisionRecord[], truncated: boolean, error: string | null }

/** Answers AuditRead from this member's own log: the newest matching records after `q.after`, oldest first. */
export async function readOwnDecisions (m: Member, q: AuditReadBody): Promise<AuditReadReply> {
  m.audit.flush()
  const r = await recentDecisions([m.audit.file, m.audit.file + ROTATED_SUFFIX], q.since ?? '', q.limit, {
    afterSeq: q.after,
    match: rec => (q.uid === null || rec.uid === q.uid) && (q.host === null || rec.host === q.host) &&
      (q.effect === null || rec.effect === q.effect) && (q.rule === null || rec.rule === q.rule)
  })
  return { member: m.config.name, records: r.records as unknown as Array<Record<string, unknown>>, truncated: r.truncated }
}

export class AuditTrail {
  private readonly peers = new Map<string, Promise<Channel>>()

  constructor (private readonly m: Member) {}

  /**
   * The parts of the active members named by `only` (all when null), each read with `q` and `after[member id]` as its
   * cursor. A peer that cannot be reached gives a part with `error` set; the others are still returned.
   */
  async read (q: AuditReadBody, only: string | null, after: Record<string, number>): Promise<MemberPart[]> {
    const members = Object.values(this.m.store.state.members).filter(r => r.state === 'active')
    if (!members.some(r => r.id === this.m.identity.id)) members.unshift({ id: this.m.identity.id, key: '', name: this.m.config.name, addr: this.m.hostAddr, clusterAddr: null, state: 'active' })
    const chosen = only === null ? members : members.filter(r => r.name === only || r.id === only)
    if (chosen.length === 0) throw new PemError('PEM_ERR_NOT_FOUND', `no active member ${only ?? ''}`)
    return await Promise.all(chosen.map(async r => {
      const part: MemberPart = { member: r.name, id: r.id, records: [], truncated: false, error: null }
      const query = { ...q, after: after[r.id] ?? 0 }
      try {
        const reply = r.id === this.m.identity.id ? await readOwnDecisions(this.m, query) : await this.ask(r.id, r.addr, query)
        part.records = reply.records.map(x => asDecisionRecord(x)).filter((x): x is DecisionRecord => x !== null)
        part.truncated = reply.truncated
      } catch (err) {
        part.error = `${PemError.from(err).code}: ${(err as Error).message}`
      }
      return part
    }))
  }

  private async ask (id: string, addr: string, q: AuditReadBody): Promise<AuditReadReply> {
    if (addr === '') throw new PemError('PEM_ERR_UNREACHABLE', 'the member has no host address yet')
    let ch = this.peers.get(id)
    if (ch === undefined) {
      ch = connect({ ...splitHostPort(addr), identity: this.m.identity, role: 'member', expectedId: id, connectTimeoutMs: PEER_TIMEOUT_MS })
      this.peers.set(id, ch)
      ch.then(c => c.on('close', () => { if (this.peers.get(id) === ch) this.peers.delete(id) }), () => { if (this.peers.get(id) === ch) this.peers.delete(id) })
    }
    return await (await ch).request(Op.AuditRead, q, { timeoutMs: PEER_TIMEOUT_MS }) as AuditReadReply
  }

  close (): void {
    for (const ch of this.peers.values()) ch.then(c => c.close(), () => {})
    this.peers.clear()
  }
}

/** Records of all parts in time order (ts, then member name, then seq), the newest `n` of them. */
export function mergeParts (parts: MemberPart[], n: number): Array<DecisionRecord & { member: string }> {
  const all = parts.flatMap(p => p.records.map(r => ({ ...r, member: p.member })))
  all.sort((a, b) => (a.ts ?? '') < (b.ts ?? '') ? -1 : (a.ts ?? '') > (b.ts ?? '') ? 1 : a.member < b.member ? -1 : a.member > b.member ? 1 : (a.seq ?? 0) - (b.seq ?? 0))
  return all.slice(Math.max(0, all.length - n))
}

export const TRAIL_MAX = LIMITS.auditRecords
