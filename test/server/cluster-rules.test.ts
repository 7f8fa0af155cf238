// The install rule as a table (lib/server/cluster/sync.ts): one row per branch of shouldSwitch and agreement.
import test from 'ava'
import { agreement, betterTarget, majorityOf, nextStreak, setKey, shouldSwitch, type AgreementInput, type Candidate, type PeerState, type PendingRef } from '../../lib/server/cluster/sync'
import { PendingPhase } from '../../lib/wire/cluster-msg'

const S = (version: number, digest: string, locked = false): { version: number, digest: string, locked: boolean } => ({ version, digest, locked })
const C = (version: number, digest: string, installed = false): { version: number, digest: string, installed: boolean } => ({ version, digest, installed })

const switchRows: Array<[string, number, PendingRef | null, Candidate, boolean]> = [
  ['not newer than installed', 5, null, C(5, 'aa', true), false],
  ['nothing pending: take it', 5, null, C(6, 'bb'), true],
  ['higher version wins', 5, S(6, 'aa'), C(7, 'ff'), true],
  ['higher version wins over a lock', 5, S(6, 'aa', true), C(7, 'ff'), true],
  ['lower version loses', 5, S(7, 'aa'), C(6, '00', true), false],
  ['same digest: nothing to do', 5, S(6, 'aa'), C(6, 'aa', true), false],
  ['installed digest wins at equal version', 5, S(6, '00'), C(6, 'ff', true), true],
  ['installed digest wins even over a lock', 5, S(6, '00', true), C(6, 'ff', true), true],
  ['smaller pending digest wins', 5, S(6, 'bb'), C(6, 'aa'), true],
  ['larger pending digest loses', 5, S(6, 'aa'), C(6, 'bb'), false],
  ['a lock never yields to a pending digest', 5, S(6, 'bb', true), C(6, 'aa'), false],
  ['a lock never yields to another lock', 5, S(6, 'bb', true), { ...C(6, 'aa'), locked: true }, false],
  ['a digest locked elsewhere beats a smaller unlocked one', 5, S(6, 'bb'), { ...C(6, 'cc'), locked: true }, true],
  ['held digest locked elsewhere keeps against a smaller unlocked one', 5, { ...S(6, 'bb'), lockedElsewhere: true }, C(6, 'aa'), false],
  ['both locked elsewhere: the smaller digest wins', 5, { ...S(6, 'bb'), lockedElsewhere: true }, { ...C(6, 'aa'), locked: true }, true]
]
for (const [name, iv, pending, cand, want] of switchRows) {
  test(`switch: ${name}`, t => { t.is(shouldSwitch(iv, pending, cand), want) })
}

test('fetch target preference: higher version, then installed, then smaller digest', t => {
  t.true(betterTarget(C(6, 'bb'), null))
  t.true(betterTarget(C(7, 'ff'), C(6, '00', true)))
  t.true(betterTarget(C(6, 'ff', true), C(6, '00')))
  t.false(betterTarget(C(6, '00'), C(6, 'ff', true)))
  t.true(betterTarget(C(6, 'aa'), C(6, 'bb')))
})

test('streaks count consecutive messages per advertised (version, digest)', t => {
  const a = { iv: 5, idg: 'x', pv: 6, pdg: 'y', phase: PendingPhase.Held }
  const s2 = nextStreak(nextStreak(new Map(), a), a)
  t.is(s2.get(setKey(6, 'y')), 2)
  const s3 = nextStreak(s2, { ...a, pdg: 'z' })
  t.is(s3.get(setKey(6, 'y')), undefined, 'a change of digest ends the streak')
  t.is(s3.get(setKey(5, 'x')), 3)
})

test('majorities: 1→1, 2→2, 3→2, 4→3, 5→3', t => { t.deepEqual([1, 2, 3, 4, 5].map(majorityOf), [1, 2, 2, 3, 3]) })

const peer = (iv: number, idg: string, pv: number, pdg: string | null, phase: PendingPhase, streak: number, lastHeard = 0): PeerState => {
  const advert = { iv, idg, pv, pdg, phase }
  const m = new Map<string, number>()
  m.set(setKey(iv, idg), streak); if (pdg !== null) m.set(setKey(pv, pdg), streak)
  return { advert, lastHeard, streak: m }
}
const base = (peers: Record<string, PeerState>, over: Partial<AgreementInput> = {}): AgreementInput => ({
  self: 'a', now: 1000, activeWindowMs: 3500, voters: ['a', 'b', 'c'], listed: new Set(['a', 'b', 'c']), installedVersion: 5,
  pending: S(6, 'd'), peers: new Map(Object.entries(peers)), ...over
})

const agreeRows: Array<[string, AgreementInput, Partial<ReturnType<typeof agreement>>]> = [
  ['all three hold it twice: lock', base({ b: peer(5, 'i', 6, 'd', 1, 2), c: peer(5, 'i', 6, 'd', 1, 2) }), { canLock: true, canInstall: false }],
  ['one message only: no lock yet', base({ b: peer(5, 'i', 6, 'd', 1, 1), c: peer(5, 'i', 6, 'd', 1, 2) }), { canLock: false, everyone: false }],
  ['an active member advertises another digest: conflict blocks', base({ b: peer(5, 'i', 6, 'd', 1, 2), c: peer(5, 'i', 6, 'e', 1, 2) }), { conflict: true, canLock: false }],
  ['a silent member past the window does not block; the pair is a majority', base({ b: peer(5, 'i', 6, 'd', 1, 2), c: peer(5, 'i', 6, 'e', 1, 2, -5000) }), { conflict: false, canLock: true }],
  ['alone of three (others silent): no majority', base({}), { canLock: false }],
  ['locked with a majority of locks: install (a)', base({ b: peer(5, 'i', 6, 'd', 2, 2), c: peer(5, 'i', 6, 'd', 1, 2) }, { pending: S(6, 'd', true) }), { canInstall: true }],
  ['locked but only self locked: wait', base({ b: peer(5, 'i', 6, 'd', 1, 2), c: peer(5, 'i', 6, 'd', 1, 2) }, { pending: S(6, 'd', true) }), { canInstall: false }],
  ['catch-up: everyone active has it installed', base({ b: peer(8, 'd', 0, null, 0, 2), c: peer(8, 'd', 0, null, 0, 2) }, { pending: S(8, 'd') }), { canInstall: true, canLock: false }],
  ['fast-forward: one claims installed, the other only holds it', base({ b: peer(99, 'd', 0, null, 0, 2), c: peer(5, 'i', 99, 'd', 1, 2) }, { pending: S(99, 'd') }), { canInstall: false }],
  ['a member removed by the set does not have to agree', base({ b: peer(5, 'i', 6, 'd', 1, 2), c: peer(5, 'i', 0, null, 0, 9) }, { listed: new Set(['a', 'b']) }), { canLock: true }]
]
for (const [name, input, want] of agreeRows) {
  test(`agreement: ${name}`, t => { t.like(agreement(input), want) })
}
