// Admin changes on the cluster: the outcome events an admin is told, and drafting version + 1 from the installed
// configuration with the membership rules checked (one member added or removed per version, no self-removal, no
// re-activation of a removed key) and the change log entry that lets a proposer learn its outcome later.
import { PemError, type ErrorCode } from '../../wire/errors'
import { pack, unpack } from '../../wire/frame'
import type { ConfigState } from '../state'
import { MemberTable } from './members'

export interface ChangeEvent {
  changeId: string
  outcome: 'installed' | 'rebased' | 'failed'
  version: number
  digest?: string
  /** For 'rebased': the concurrent change that won the version this change had taken. */
  lostTo?: { version: number, digest: string }
  code?: ErrorCode
}

export interface Change { changeId: string, mutate: (draft: ConfigState) => void }

/** Versions of change history kept in the configuration, so a proposer that skips versions still learns its outcome. */
export const CHANGE_LOG_LENGTH = 64

/** Version + 1 of `base` with the change applied; throws a PemError (the change fails, nothing else happens). */
export function draftChange (base: { plaintext: Buffer, version: number }, members: MemberTable, self: string, change: Change, nowMs: number): { state: ConfigState, plaintext: Buffer } {
  const draft = unpack(base.plaintext) as ConfigState
  change.mutate(draft)
  draft.version = base.version + 1
  draft.changedBy = self
  draft.changedAt = new Date(nowMs).toISOString()
  draft.clusterLog = [...(draft.clusterLog ?? []), { version: draft.version, origin: self, change: change.changeId }].slice(-CHANGE_LOG_LENGTH)
  const before = new Set(members.activeIds())
  const after = new Set(MemberTable.of(draft).activeIds())
  const diff = [...before].filter(x => !after.has(x)).length + [...after].filter(x => !before.has(x)).length
  if (diff > 1) throw new PemError('PEM_ERR_BAD_CONFIG', 'a change may add or remove at most one member per version')
  if (!after.has(self)) throw new PemError('PEM_ERR_BAD_CONFIG', 'a member cannot remove itself; remove it from another member')
  for (const m of members.all()) {
    if (m.removed && after.has(m.id)) throw new PemError('PEM_ERR_BAD_CONFIG', `member ${m.id.slice(0, 16)} was removed; a removed key cannot rejoin`)
  }
  return { state: draft, plaintext: pack(draft) }
}

/** Did the installed configuration take this member's change at the version it proposed it for? */
export function changeLanded (installed: ConfigState, version: number, self: string, changeId: string): boolean {
  return installed.clusterLog?.some(e => e.version === version && e.origin === self && e.change === changeId) === true
}
