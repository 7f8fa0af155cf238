// The audit writer's thread (lib/server/audit.ts, audit-chain.worker.ts) keeps what the event-loop writer promised:
// records in the order written, every one accepted before close() on disk after it, flush() and written() seeing the
// file as written, a restart continuing the chain, and what was handed over written when the process ends abruptly
// through an exception or process.exit. (kill -9 and the torn last line: test/server/audit.test.ts, with spd.)
import test from 'ava'
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { generateIdentity } from '../../lib/crypto/identity'
import { AuditLog } from '../../lib/server/audit'
import { verifyAuditFiles } from '../../lib/server/audit-verify'
import { tempDir } from '../../scripts/procs'

const dir = tempDir('audit-writer-test')
const records = (file: string): Array<Record<string, unknown>> =>
  fs.readFileSync(file, 'utf8').split('\n').slice(0, -1).map(l => JSON.parse(l) as Record<string, unknown>)
const numbered = (file: string): number[] => records(file).filter(r => r.event === 'n').map(r => r.i as number)

test('records written over many ticks are on disk in order after close, chained, signed and contiguous', async t => {
  const identity = generateIdentity()
  const file = path.join(dir, 'order.log')
  const log = new AuditLog(file, identity, { checkpointEvery: 100 })
  for (let tick = 0; tick < 50; tick++) {
    for (let i = 0; i < 97; i++) log.write({ kind: 'admin', event: 'n', i: tick * 97 + i })
    await new Promise(resolve => setImmediate(resolve))
  }
  for (let i = 4850; i < 5000; i++) log.write({ kind: 'admin', event: 'n', i }) // never handed over before close
  log.close()
  t.deepEqual(numbered(file), Array.from({ length: 5000 }, (_, i) => i))
  const seqs = records(file).map(r => r.seq)
  t.deepEqual(seqs, Array.from({ length: seqs.length }, (_, i) => i + 1))
  const r = verifyAuditFiles([file], { publicKey: identity.publicKey })
  t.true(r.ok, JSON.stringify(r.broken)); t.true(r.signaturesChecked); t.is(r.unsigned, 0, 'close ends with a checkpoint')
  t.true(r.checkpoints >= 50)
  log.write({ kind: 'admin', event: 'n', i: 5000 }) // after close: dropped, as before
  t.is(numbered(file).length, 5000)
})

test('flush() and written() see the file as written; a restart continues the chain', t => {
  const identity = generateIdentity()
  const file = path.join(dir, 'restart.log')
  const log = new AuditLog(file, identity)
  log.write({ kind: 'admin', event: 'n', i: 0 })
  log.flush()
  t.deepEqual(numbered(file), [0], 'on disk right after flush, without a tick')
  log.write({ kind: 'admin', event: 'n', i: 1 })
  const head = log.written()
  const last = records(file).at(-1)
  t.is(head.seq, last?.seq as number); t.is(last?.i, 1)
  t.deepEqual(log.tail(1), [last])
  t.true(verifyAuditFiles([file], { publicKey: identity.publicKey, head }).ok)
  log.close()
  const again = new AuditLog(file, identity)
  again.write({ kind: 'admin', event: 'n', i: 2 })
  again.close()
  t.deepEqual(numbered(file), [0, 1, 2])
  const r = verifyAuditFiles([file], { publicKey: identity.publicKey })
  t.true(r.ok, JSON.stringify(r.broken)); t.is(r.firstSeq, 1)
})

test('a bad path fails in the constructor, on the event loop', t => {
  t.throws(() => new AuditLog(path.join(dir, 'no-such-dir', 'audit.log'), generateIdentity()), { code: 'ENOENT' })
})

for (const end of ['throw', 'exit'] as const) {
  test(`records written just before the process ends by ${end === 'throw' ? 'an uncaught exception' : 'process.exit'} are on disk`, t => {
    const file = path.join(dir, `end-${end}.log`)
    const script = `const { AuditLog } = require(${JSON.stringify(require.resolve('../../lib/server/audit'))})
const { generateIdentity } = require(${JSON.stringify(require.resolve('../../lib/crypto/identity'))})
const log = new AuditLog(${JSON.stringify(file)}, generateIdentity())
setTimeout(() => {
  for (let i = 0; i < 3000; i++) { log.write({ kind: 'admin', event: 'n', i }); if (i % 500 === 0) log.checkpoint() }
  ${end === 'throw' ? "throw new Error('the end')" : 'process.exit(3)'}
}, 10)`
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 20_000 })
    t.is(r.status, end === 'throw' ? 1 : 3, r.stderr)
    t.deepEqual(numbered(file), Array.from({ length: 3000 }, (_, i) => i))
    t.true(verifyAuditFiles([file]).ok)
  })
}

test.after.always(() => { fs.rmSync(dir, { recursive: true, force: true }) })
