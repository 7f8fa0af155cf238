// Encrypted policy set: build/open round trip and every refusal by code (CHECKLIST C11, D17, D18, E22, tampering per part).
import test from 'ava'
import crypto from 'node:crypto'
import { SIG_CTX_POLICY_SET } from '../../lib/crypto/contexts'
import { generateIdentity, type Identity } from '../../lib/crypto/identity'
import { sign } from '../../lib/crypto/sign'
import { signAsOrigin } from '../../lib/server/cluster/changes'
import { MemberTable } from '../../lib/server/cluster/members'
import { buildSet, contentOf, openSet } from '../../lib/server/cluster/set-codec'
import { emptyState, type ConfigState } from '../../lib/server/state'
import { parsePolicySet } from '../../lib/wire/policy-set'
import { memberRecord } from '../helpers/cluster-sim'

const A = generateIdentity(); const B = generateIdentity(); const C = generateIdentity(); const R = generateIdentity(); const X = generateIdentity()
const CLUSTER = crypto.createHash('sha256').update('cluster one').digest()

/** Version `version` as `origin` proposed it after version 4: one signed change log entry (changes.ts). */
function stateV (version: number, who: Identity[] = [A, B, C], origin = A): ConfigState {
  const members: ConfigState['members'] = {}
  who.forEach((m, i) => { members[m.id] = memberRecord(m, `m${i}`, `10.0.0.${i + 1}:7400`) })
  const state: ConfigState = { ...emptyState(), version, policyText: 'rules: 1', changedBy: origin.id, changedAt: new Date(0).toISOString(), members, keys: { finance: [{ version: 1, material: Buffer.alloc(32, 7), created: 'then' }] } }
  if (version > 4) { state.clusterLog = [{ version, origin: origin.id, change: 'test' }]; signAsOrigin(CLUSTER, state, origin) }
  return state
}
const installedMembers = (extra: ConfigState['members'] = {}): MemberTable => new MemberTable({ ...stateV(4, [A, B, C]).members, ...extra })
const ctxFor = (identity: Identity, installedVersion = 4, members = installedMembers()) => ({ clusterId: CLUSTER, identity, members, installed: stateV(installedVersion) })
const code = (f: () => unknown): string | undefined => { try { f(); return undefined } catch (e) { return (e as { code?: string }).code } }
const make = (version = 5, source = A, who = [A, B, C]): Buffer => buildSet(CLUSTER, source, contentOf(stateV(version, who, source)).plaintext, source.id)
/** An insider holding the source key re-signs edited bytes (shows what the layers under the signature catch). */
const resign = (set: Buffer, by: Identity = A): Buffer => {
  const unsigned = set.subarray(0, set.length - 64)
  return Buffer.concat([unsigned, sign(SIG_CTX_POLICY_SET, Buffer.concat([CLUSTER, unsigned]), by.signKey)])
}
const M = 3; const WK = 79 + 32 * M; const SEALED = 79 + 112 * M + 4

test('round trip: every listed member opens it; worked byte count', t => {
  const { plaintext, digest } = contentOf(stateV(5))
  const set = buildSet(CLUSTER, A, plaintext, A.id)
  t.is(set.length, 79 + 3 * 112 + 4 + 24 + plaintext.length + 16 + 64) // 523 + P bytes for 3 members (FORMAT.md §6)
  for (const me of [A, B, C]) {
    const s = openSet(set, ctxFor(me))
    t.deepEqual(s.digest, digest); t.is(s.version, 5); t.is(s.source, A.id); t.is(s.origin, A.id)
    t.is(s.state.policyText, 'rules: 1'); t.deepEqual(s.state.keys.finance[0].material, Buffer.alloc(32, 7))
  }
  t.is(parsePolicySet(set).index[0].toString('hex'), A.id, 'the source is row 0')
})

test('a fresh data key per build: same content, different wrapped keys and ciphertext, same content digest', t => {
  const a = make(); const b = make()
  t.notDeepEqual(a.subarray(WK, WK + 80), b.subarray(WK, WK + 80))
  t.deepEqual(parsePolicySet(a).contentDigest, parsePolicySet(b).contentDigest)
})

test('unknown source key → PEM_ERR_UNKNOWN_MEMBER', t => {
  t.is(code(() => openSet(make(5, X, [X, A, B, C]), ctxFor(B))), 'PEM_ERR_UNKNOWN_MEMBER')
})

test('set from a removed member → PEM_ERR_REMOVED_MEMBER', t => {
  const members = installedMembers({ [R.id]: { ...memberRecord(R, 'r', 'x'), state: 'removed' } })
  t.is(code(() => openSet(make(5, R, [R, A, B, C]), ctxFor(B, 4, members))), 'PEM_ERR_REMOVED_MEMBER')
})

test('a member not listed cannot open it → PEM_ERR_NOT_LISTED (and a removed member holds no row)', t => {
  t.is(code(() => openSet(make(5, A, [A, B]), ctxFor(C))), 'PEM_ERR_NOT_LISTED')
})

test('rollback: a validly signed set older than the installed version → PEM_ERR_ROLLBACK', t => {
  t.is(code(() => openSet(make(3), ctxFor(B, 4))), 'PEM_ERR_ROLLBACK')
})

test('tampered index (outsider) → bad signature; (insider re-signs, rows swapped) → PEM_ERR_POLICY_SET_AUTH', t => {
  const set = make()
  const out = Buffer.from(set); out[79 + 32 + 3] ^= 1
  t.is(code(() => openSet(out, ctxFor(B))), 'PEM_ERR_BAD_SIGNATURE')
  const swapped = Buffer.from(set)
  set.copy(swapped, 79 + 32, 79 + 64, 79 + 96); set.copy(swapped, 79 + 64, 79 + 32, 79 + 64) // B's and C's digests swap rows
  t.is(code(() => openSet(resign(swapped), ctxFor(B))), 'PEM_ERR_POLICY_SET_AUTH')
})

test('tampered wrapped key (outsider) → bad signature; (insider) → PEM_ERR_POLICY_SET_AUTH', t => {
  const set = make()
  const rowB = WK + 80 * parsePolicySet(set).index.findIndex(d => d.toString('hex') === B.id) // rows after the source are sorted by id
  const out = Buffer.from(set); out[rowB + 40] ^= 1
  t.is(code(() => openSet(out, ctxFor(B))), 'PEM_ERR_BAD_SIGNATURE')
  t.is(code(() => openSet(resign(out), ctxFor(B))), 'PEM_ERR_POLICY_SET_AUTH')
  t.notThrows(() => openSet(resign(out), ctxFor(C)), 'other rows are untouched')
})

test('tampered ciphertext (outsider) → bad signature; (insider) → PEM_ERR_POLICY_SET_AUTH', t => {
  const set = make()
  const out = Buffer.from(set); out[SEALED + 30] ^= 1
  t.is(code(() => openSet(out, ctxFor(B))), 'PEM_ERR_BAD_SIGNATURE')
  t.is(code(() => openSet(resign(out), ctxFor(B))), 'PEM_ERR_POLICY_SET_AUTH')
})

test('tampered signature (bit flip, zeroed, another cluster id) → PEM_ERR_BAD_SIGNATURE', t => {
  const set = make()
  const flip = Buffer.from(set); flip[set.length - 10] ^= 4
  t.is(code(() => openSet(flip, ctxFor(B))), 'PEM_ERR_BAD_SIGNATURE')
  const zero = Buffer.from(set).fill(0, set.length - 64)
  t.is(code(() => openSet(zero, ctxFor(B))), 'PEM_ERR_BAD_SIGNATURE')
  t.is(code(() => openSet(set, { ...ctxFor(B), clusterId: Buffer.alloc(32, 1) })), 'PEM_ERR_BAD_SIGNATURE')
})

test('C16 mix-and-match: version or content digest of one set with the body of another → refused', t => {
  const set = make(5)
  const v6 = Buffer.from(set); v6.writeBigUInt64BE(6n, 5)
  t.is(code(() => openSet(v6, ctxFor(B))), 'PEM_ERR_BAD_SIGNATURE')
  t.is(code(() => openSet(resign(v6), ctxFor(B))), 'PEM_ERR_POLICY_SET_AUTH', 'the AEAD binds the header too')
  const dg = Buffer.from(set); dg[20] ^= 1
  t.is(code(() => openSet(resign(dg), ctxFor(B))), 'PEM_ERR_POLICY_SET_AUTH')
})

test('D18: truncated, extended, empty or foreign bytes → PEM_ERR_BAD_POLICY_SET', t => {
  const set = make()
  t.is(code(() => openSet(set.subarray(0, set.length - 1), ctxFor(B))), 'PEM_ERR_BAD_POLICY_SET')
  t.is(code(() => openSet(Buffer.concat([set, Buffer.from([0])]), ctxFor(B))), 'PEM_ERR_BAD_POLICY_SET')
  t.is(code(() => openSet(Buffer.alloc(0), ctxFor(B))), 'PEM_ERR_BAD_POLICY_SET')
  t.is(code(() => openSet(Buffer.alloc(600, 1), ctxFor(B))), 'PEM_ERR_BAD_POLICY_SET')
  const huge = Buffer.from(set); huge.writeUInt32BE(0x7fffffff, SEALED - 4)
  t.is(code(() => openSet(huge, ctxFor(B))), 'PEM_ERR_FRAME_TOO_LARGE', 'declared length checked before use')
})

test('D21: an index listing one key twice is refused', t => {
  const set = make()
  const dup = Buffer.from(set); set.copy(dup, 79 + 64, 79 + 32, 79 + 64) // C's row now names B
  t.is(code(() => openSet(resign(dup), ctxFor(B))), 'PEM_ERR_BAD_POLICY_SET')
})
