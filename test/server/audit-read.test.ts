// Reading decision records back for replay (lib/server/audit-read.ts) from logs the real writer produced, larger than
// the 4 MiB read window: forwards and backwards give the same records; `since`, `limit` and a rotated file are
// honoured; a cut last line is not read. A full decision record replays to the very decision it recorded, and a log
// of them verifies as before (the chain does not look into records).
import test from 'ava'
import fs from 'node:fs'
import path from 'node:path'
import { generateIdentity } from '../../lib/crypto/identity'
import { decide, parsePolicyOrThrow } from '../../lib/policy'
import { Replay } from '../../lib/policy/simulate'
import { AuditLog, ROTATED_SUFFIX } from '../../lib/server/audit'
import { forEachDecision, recentDecisions } from '../../lib/server/audit-read'
import { verifyAuditFiles } from '../../lib/server/audit-verify'
import { decisionRecord, type DecisionRecord } from '../../lib/wire/audit-record'
import { ACTIONS, type AccessAttrs } from '../../lib/wire/packets'
import { tempDir } from '../../scripts/procs'

const POLICY = parsePolicyOrThrow(`format: 1
keys: [k]
sets:
  users:
    staff: { groups: [staff], gids: [50] }
guards:
  /g:
    rules:
      - id: signed
        processes: { signatures: ["sha256:${'ab'.repeat(32)}"] }
        effect: apply_key(k)
      - id: strong
        min_auth: 2
        resources: { dirs: [/secure] }
        effect: permit
      - id: staff
        users: staff
        actions: readonly
        effect: permit
      - id: session
        resources: { files: ["/s/*.log"] }
        users: { uids: [7] }
        effect: deny
`)

function request (i: number): { path: string, action: (typeof ACTIONS)[number], attrs: AccessAttrs } {
  const attrs: AccessAttrs = {
    uid: i % 11, gids: i % 3 === 0 ? [50] : [100 + (i % 5)], pid: 1000 + i, sid: i % 13, exe: `/usr/bin/tool${i % 4}`,
    exeHash: i % 7 === 0 ? 'ab'.repeat(32) : '', auth: i % 4
  }
  if (i % 2 === 0) attrs.groups = i % 6 === 0 ? ['staff'] : ['users']
  if (i % 5 === 0) attrs.user = `user${i % 11}`
  const dir = ['/secure', '/s', '/pub', '/secure/deep'][i % 4]
  return { path: `${dir}/file-${i}${i % 2 === 0 ? '-été' : ''}.log`, action: ACTIONS[i % ACTIONS.length], attrs } // UTF-8 too
}

/** Decides request i under POLICY and writes its record, as spd does. */
function record (log: AuditLog, i: number, pv: number): void {
  const q = request(i)
  const ctx = { host: `host${i % 3}`, ip: `10.0.0.${i % 250}` }
  const d = decide(POLICY, { guard: '/g', path: q.path, action: q.action, attrs: q.attrs, ctx })
  log.write(decisionRecord('/g', q.path, q.action, q.attrs, ctx, d, pv))
}

const dir = tempDir('audit-read')
const file = path.join(dir, 'audit.log')
const PER_BATCH = 12000 // ~4.3 MiB per batch: both readers cross window edges (4 MiB forwards, 1 MiB backwards)
let mid = ''

test.before(async () => {
  const identity = generateIdentity()
  const old = new AuditLog(file + ROTATED_SUFFIX, identity)
  for (let i = 0; i < 100; i++) record(old, i, 1)
  old.close()
  const log = new AuditLog(file, identity)
  for (let i = 0; i < PER_BATCH; i++) record(log, i, 2)
  log.flush()
  await new Promise(resolve => setTimeout(resolve, 20))
  mid = new Date().toISOString()
  await new Promise(resolve => setTimeout(resolve, 20))
  for (let i = PER_BATCH; i < 2 * PER_BATCH; i++) record(log, i, 3)
  log.close()
  fs.appendFileSync(file, '{"seq":99999,"prev":"x","ts":"2999-01-01T00:00:00.000Z","kind":"decision","guard":"/g"') // cut by a crash
})

test('forwards and backwards read the same records, oldest first; the cut last line is not read', async t => {
  t.true(fs.statSync(file).size > 2 * 4 * 1024 * 1024, "more than two read windows")
  const forward: DecisionRecord[] = []
  const counts = forEachDecision(file, r => forward.push(r))
  t.deepEqual(counts, { decisions: 2 * PER_BATCH, unreadable: 0 })
  const back = await recentDecisions([file], '1970-01-01T00:00:00.000Z', 1_000_000)
  t.false(back.truncated)
  t.is(back.records.length, forward.length)
  t.true(back.records.every((r, i) => JSON.stringify(r) === JSON.stringify(forward[i])), 'record for record')
  t.is(forward[0].path, request(0).path)
})

test('since and limit pick the newest matching records; a rotated file continues the window', async t => {
  const recent = await recentDecisions([file], mid, 1_000_000)
  t.is(recent.records.length, PER_BATCH)
  t.true(recent.records.every(r => r.pv === 3))
  const newest = await recentDecisions([file], mid, 10)
  t.true(newest.truncated)
  t.deepEqual(newest.records.map(r => r.seq), recent.records.slice(-10).map(r => r.seq))
  const both = await recentDecisions([file, file + ROTATED_SUFFIX], '1970-01-01T00:00:00.000Z', 1_000_000)
  t.is(both.records.length, 2 * PER_BATCH + 100)
  t.is(both.records[0].pv, 1, 'the rotated file is older')
})

test('full records replay to the decisions they recorded; without attributes, the rules testing them are named', t => {
  const replay = new Replay(POLICY, 3, POLICY)
  forEachDecision(file, r => replay.add(r))
  const s = replay.result()
  t.deepEqual([s.replayed, s.changed, s.notAsRecorded, s.partial], [2 * PER_BATCH, 0, 0, 0])
  t.deepEqual(s.versions, { 2: PER_BATCH, 3: PER_BATCH })
  // The same records as an older spd wrote them (no gids, groups, user, session, hash or auth level).
  const old = new Replay(POLICY)
  forEachDecision(file, r => {
    const { gids, groups, user, sid, exeHash, auth, ...rest } = r
    old.add(rest as DecisionRecord)
  })
  const o = old.result()
  t.is(o.partial, 2 * PER_BATCH)
  t.true(o.changed > 0, 'replayed without their attributes, some decide otherwise')
  t.deepEqual(o.rulesTestingUnrecorded, ['signed', 'strong', 'staff'])
})

test('a log of full decision records verifies, continuing its rotated file', t => {
  const text = fs.readFileSync(file)
  const whole = path.join(dir, 'whole.log')
  fs.writeFileSync(whole, text.subarray(0, text.lastIndexOf(10) + 1)) // without the cut line (a restart would name it)
  const r = verifyAuditFiles([file + ROTATED_SUFFIX, whole])
  t.true(r.ok, JSON.stringify(r.broken))
  t.is(r.firstSeq, 1)
  t.true(r.records > 2 * PER_BATCH + 100)
})
