// Durable cluster protocol state (lib/server/cluster/state-file.ts): epoch always rises, marks and lock survive a
// restart, a corrupt file is PEM_ERR_STORE, a leftover tmp file is ignored; replays stay refused across a restart.
import test from 'ava'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { ReplayGuard } from '../../lib/server/cluster/sequence'
import { ClusterStateFile, CLUSTER_STATE_FILE } from '../../lib/server/cluster/state-file'

const tmpDir = (): string => fs.mkdtempSync(path.join(os.tmpdir(), 'pem-cluster-state-'))

test('the boot epoch rises on every open, and follows the clock after a wipe', t => {
  const dir = tmpDir()
  const a = ClusterStateFile.open(dir, 0)
  const b = ClusterStateFile.open(dir, 0)
  t.is(b.epoch, a.epoch + 1)
  fs.rmSync(path.join(dir, CLUSTER_STATE_FILE))
  t.is(ClusterStateFile.open(dir, 1_700_000_000_000).epoch, 1_700_000_000, 'a wiped member is still ahead of old marks')
  t.is(ClusterStateFile.open(dir, 0).epoch, 1_700_000_001, 'never backwards when the clock is')
})

test('replay marks and the lock survive a restart; a replayed message stays refused', t => {
  const dir = tmpDir()
  const s1 = ClusterStateFile.open(dir)
  const g1 = new ReplayGuard(s1)
  g1.accept('peer', { epoch: 3, counter: 10 })
  s1.locks.save({ version: 7, digest: 'ab', set: Buffer.from('sealed set bytes') })
  s1.flush()
  const s2 = ClusterStateFile.open(dir)
  const g2 = new ReplayGuard(s2)
  t.is(g2.check('peer', { epoch: 3, counter: 10 }), 'duplicate')
  t.is(g2.check('peer', { epoch: 3, counter: 11 }), 'fresh')
  t.deepEqual(s2.locks.load(), { version: 7, digest: 'ab', set: Buffer.from('sealed set bytes') })
})

test('a corrupt state file is PEM_ERR_STORE; a leftover tmp file is ignored', t => {
  const dir = tmpDir()
  ClusterStateFile.open(dir)
  fs.writeFileSync(path.join(dir, `${CLUSTER_STATE_FILE}.tmp`), 'half a write')
  t.notThrows(() => ClusterStateFile.open(dir))
  fs.writeFileSync(path.join(dir, CLUSTER_STATE_FILE), '{"format":1,"epoch":"x"}')
  t.throws(() => ClusterStateFile.open(dir), { code: 'PEM_ERR_STORE' })
  fs.writeFileSync(path.join(dir, CLUSTER_STATE_FILE), 'not json')
  t.throws(() => ClusterStateFile.open(dir), { code: 'PEM_ERR_STORE' })
})
