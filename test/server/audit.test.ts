// The hash-chained audit log through the real programs: an intact log passes `spctl audit verify` online and offline;
// an edited, deleted, swapped or truncated record and a forged checkpoint are each named; restarts, a kill -9 with a
// torn last line, and a rotation keep the chain; online, a tail cut from the running log is noticed.
import test from 'ava'
import fs from 'node:fs'
import https from 'node:https'
import path from 'node:path'
import { SIG_CTX_AUDIT } from '../../lib/crypto/contexts'
import { generateIdentity } from '../../lib/crypto/identity'
import { sign } from '../../lib/crypto/sign'
import type { VerifyResult } from '../../lib/server/audit-verify'
import { checkpointMessage } from '../../lib/wire/audit-record'
import { cli, initSpd, loginSpctl, startSpd, stopAll, stopSpd, tempDir, type RunResult, type Spd } from '../../scripts/procs'

test.before(async () => { await setUp() })
test.after.always(() => { stopAll() })

let spd: Spd
let spctl: (args: string[]) => Promise<RunResult>
let memberKey: string
let stopped: string // audit.log as a clean stop left it: ends with a checkpoint
const work = tempDir('audit-test')
const log = (): string => path.join(spd.dir, 'audit.log')

async function setUp (): Promise<void> {
  spd = await initSpd('spd-audit')
  const id = await cli('spd', ['id', '--data-dir', spd.dir, '--json'])
  if (id.code !== 0) throw new Error(id.stderr)
  memberKey = (JSON.parse(id.stdout) as { key: string }).key
  await startSpd(spd)
  spctl = await loginSpctl(spd)
  await traffic(4)
  if (await stopSpd(spd) !== 0) throw new Error('spd did not stop cleanly')
  stopped = fs.readFileSync(log(), 'utf8')
  await startSpd(spd)
  spctl = await loginSpctl(spd)
}

/** Admin changes, each an audited line or two. */
async function traffic (n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const r = await spctl(['key', 'create', `k${Date.now()}-${i}`])
    if (r.code !== 0) throw new Error(r.stderr)
  }
}

/** `spctl audit verify` offline on a copy of `text`, with the member's key. */
async function verifyText (text: string, name: string, extra: string[] = []): Promise<{ code: number, result: VerifyResult, stderr: string }> {
  const file = path.join(work, name)
  fs.writeFileSync(file, text)
  const r = await cli('spctl', ['--json', 'audit', 'verify', '--file', file, '--key', memberKey, ...extra])
  return { code: r.code, result: JSON.parse(r.stdout === '' ? 'null' : r.stdout) as VerifyResult, stderr: r.stderr }
}

const linesOf = (text: string): string[] => text.split('\n').slice(0, -1)
const joined = (lines: string[]): string => lines.map(l => l + '\n').join('')

test.serial('an intact log passes, online and as an offline copy, with its checkpoints verified', async t => {
  const online = await spctl(['--json', 'audit', 'verify'])
  t.is(online.code, 0, online.stdout + online.stderr)
  const r = JSON.parse(online.stdout) as VerifyResult
  t.true(r.ok); t.true(r.signaturesChecked); t.true(r.checkpoints >= 1, 'the clean stop wrote one')
  const offline = await verifyText(stopped, 'intact.log')
  t.is(offline.code, 0, offline.stderr)
  t.true(offline.result.ok); t.is(offline.result.unsigned, 0, 'a clean stop ends with a checkpoint'); t.is(offline.result.continues, null)
  const noKey = await cli('spctl', ['audit', 'verify', '--file', path.join(work, 'intact.log')])
  t.is(noKey.code, 0); t.regex(noKey.stdout, /NOT verified \(no key\)/)
})

test.serial('one edited byte is named at the record that was changed', async t => {
  const lines = linesOf(stopped)
  const k = 2
  lines[k] = lines[k].replace('"ts":"2', '"ts":"1')
  const r = await verifyText(joined(lines), 'edited.log')
  t.is(r.code, 1)
  t.is(r.result.broken?.line, k + 1); t.regex(r.result.broken?.reason ?? '', /was changed/)
})

test.serial('a deleted record and two swapped records are named', async t => {
  const lines = linesOf(stopped)
  const deleted = await verifyText(joined(lines.filter((_, i) => i !== 3)), 'deleted.log')
  t.is(deleted.code, 1)
  t.is(deleted.result.broken?.line, 4); t.regex(deleted.result.broken?.reason ?? '', /missing or out of order/)
  const swapped = [...lines]
  ;[swapped[3], swapped[4]] = [swapped[4], swapped[3]]
  const r = await verifyText(joined(swapped), 'swapped.log')
  t.is(r.code, 1)
  t.is(r.result.broken?.line, 4); t.regex(r.result.broken?.reason ?? '', /out of order/)
})

test.serial('a last line truncated mid-way is named', async t => {
  const r = await verifyText(stopped.slice(0, stopped.length - 20), 'truncated.log')
  t.is(r.code, 1)
  t.is(r.result.broken?.line, linesOf(stopped).length); t.regex(r.result.broken?.reason ?? '', /cut mid-way/)
})

test.serial('a checkpoint signed by another key, or with a changed signature, is named; without a key the chain still holds', async t => {
  const lines = linesOf(stopped)
  const k = lines.findIndex(l => l.includes('"event":"checkpoint"'))
  const cp = JSON.parse(lines[k]) as { seq: number, prev: string, member: string, sig: string }
  const forged = sign(SIG_CTX_AUDIT, checkpointMessage(cp.member, cp.seq, cp.prev), generateIdentity().signKey).toString('base64url')
  const other = [...lines]
  other[k] = lines[k].replace(cp.sig, forged)
  const r = await verifyText(joined(other), 'forged.log')
  t.is(r.code, 1)
  t.is(r.result.broken?.line, k + 1); t.regex(r.result.broken?.reason ?? '', /signature does not verify/)
  const flipped = [...lines]
  flipped[k] = lines[k].replace(cp.sig, (cp.sig[0] === 'A' ? 'B' : 'A') + cp.sig.slice(1))
  t.regex((await verifyText(joined(flipped), 'flipped.log')).result.broken?.reason ?? '', /signature does not verify/)
  const wrongKey = await cli('spctl', ['--json', 'audit', 'verify', '--file', path.join(work, 'intact.log'), '--key', `ed25519:${generateIdentity().publicKey.toString('base64url')}`])
  t.is(wrongKey.code, 1); t.regex(wrongKey.stdout, /not of the key given/)
})

test.serial('--from checks from a record on; usage errors exit 2', async t => {
  const lines = linesOf(stopped)
  const r = await verifyText(stopped, 'from.log', ['--from', '3'])
  t.is(r.code, 0, r.stderr); t.is(r.result.firstSeq, 3); t.is(r.result.records, lines.length - 2)
  t.is((await cli('spctl', ['audit', 'verify', '--file', path.join(work, 'from.log'), '--from', 'x'])).code, 2)
  t.is((await cli('spctl', ['audit', 'verify', '--file', path.join(work, 'no-such.log')])).code, 2)
  t.is((await cli('spctl', ['audit', 'verify', '--key', memberKey, '--data-dir', spd.dir])).code, 2)
})

test.serial('a restart continues the chain; kill -9 mid-traffic and a torn last line are reported, not dropped', async t => {
  const burst = traffic(3).catch(() => {}) // spctl calls in flight while the member dies
  await new Promise(resolve => setTimeout(resolve, 300))
  await stopSpd(spd, 'SIGKILL')
  await burst
  const cut = '{"seq":999999,"prev":"cut-by-a-cra' // what a crash mid-write leaves
  fs.appendFileSync(log(), cut)
  const before = await cli('spctl', ['--json', 'audit', 'verify', '--data-dir', spd.dir])
  t.is(before.code, 1); t.regex(before.stdout, /cut mid-way/)
  await startSpd(spd)
  t.true(spd.logs.some(l => l.includes('audit log ended in a cut line')), 'the torn line is logged')
  spctl = await loginSpctl(spd)
  await traffic(1)
  const online = await spctl(['--json', 'audit', 'verify'])
  t.is(online.code, 0, online.stdout)
  const r = JSON.parse(online.stdout) as VerifyResult
  t.true(r.ok); t.is(r.torn.length, 1, 'the cut line is named'); t.is(r.torn[0].bytes, cut.length)
  const metrics = await fetchMetrics()
  t.regex(metrics, /spd_audit_torn_at_start 1/)
  const text = fs.readFileSync(log(), 'utf8')
  t.is(text.match(/"event":"start"/g)?.length, 3, 'one start record per start')
  t.is(text.match(/"event":"torn"/g)?.length, 1)
})

test.serial('rotation: stop, move audit.log to audit.log.1, start; the new file continues the chain of the old one', async t => {
  t.is(await stopSpd(spd), 0)
  fs.renameSync(log(), log() + '.1')
  await startSpd(spd)
  spctl = await loginSpctl(spd)
  const online = JSON.parse((await spctl(['--json', 'audit', 'verify'])).stdout) as VerifyResult
  t.true(online.ok); t.truthy(online.continues, 'the first record names the last hash of audit.log.1')
  const both = await cli('spctl', ['--json', 'audit', 'verify', '--data-dir', spd.dir, '--file', log() + '.1', log()])
  t.is(both.code, 0, both.stdout)
  const r = JSON.parse(both.stdout) as VerifyResult
  t.true(r.ok); t.is(r.continues, null); t.true(r.checkpoints >= 2)
  const wrongOrder = await cli('spctl', ['--json', 'audit', 'verify', '--data-dir', spd.dir, '--file', log(), log() + '.1'])
  t.is(wrongOrder.code, 1)
})

test.serial('online, the member notices records cut from the end of its running log', async t => {
  await traffic(1)
  const text = fs.readFileSync(log(), 'utf8')
  const lines = linesOf(text)
  fs.truncateSync(log(), text.length - lines[lines.length - 1].length - 1) // the last line goes; spd appends after it
  const r = await spctl(['--json', 'audit', 'verify'])
  t.is(r.code, 1)
  // A timed checkpoint written in between links to the cut line, and the gap shows as a missing record instead.
  t.regex((JSON.parse(r.stdout) as VerifyResult).broken?.reason ?? '', /cut from the end|a record is missing/)
  await stopSpd(spd)
})

/** GET /metrics on the member's admin listener (no session; its certificate is its own key, not checked here). */
async function fetchMetrics (): Promise<string> {
  const [host, port] = spd.admin.split(':')
  return await new Promise((resolve, reject) => {
    https.get({ host, port: Number(port), path: '/metrics', rejectUnauthorized: false }, res => {
      let text = ''
      res.on('data', (c: Buffer) => { text += c.toString('utf8') })
      res.on('end', () => resolve(text))
    }).on('error', reject)
  })
}
