// Issue 15 finding 1 with real spd processes: member A is compromised. The harness stops A's process and speaks for it
// with A's real key (its identity.key) over the real TLS cluster transport: an engine whose "installed" configuration is
// one A forged and signed — version 2^53 - 1, listing only A and B, A's own policy. B must refuse it (it does not follow
// from B's installed configuration), keep C, and install the next honest change with the others.
import test from 'ava'
import fs from 'node:fs'
import path from 'node:path'
import { loadIdentity } from '../../lib/crypto/identity'
import { IDENTITY_FILE } from '../../lib/server/member'
import { signAsOrigin } from '../../lib/server/cluster/changes'
import { ChannelTransport } from '../../lib/server/cluster/channel-transport'
import { ClusterNode } from '../../lib/server/cluster/node'
import { MemoryHwmStore } from '../../lib/server/cluster/sequence'
import { ClusterStateFile } from '../../lib/server/cluster/state-file'
import type { ConfigState } from '../../lib/server/state'
import { ConfigStore, storeKeyFrom } from '../../lib/server/store'
import { pack, unpack } from '../../lib/wire/frame'
import { admin, allInstalled, clusterStatus, installedVersion, startCluster, until, type Member } from '../../scripts/cluster'
import { startSpd, stopAll, stopSpd, tempDir, writeFile } from '../../scripts/procs'

const FAST = { load: { threshold: 1 }, cluster: { intervalMs: 200, maxStalenessMs: 3000 } }
const policy = (tag: string): string => `format: 1
guards:
  /srv/data:
    rules:
      - id: ${tag}
        resources: { dirs: [/public] }
        effect: permit
`

let ms: Member[]
test.before(async () => { ms = await startCluster(3, 'ff', FAST) })
test.after.always(() => { stopAll() })

/** A's installed configuration, read from its data dir with its own key (the process is stopped). */
function storedConfig (m: Member): { state: ConfigState, plaintext: Buffer } {
  const identity = loadIdentity(path.join(m.dir, IDENTITY_FILE))
  const store = ConfigStore.open(m.dir, storeKeyFrom(identity.signKey))
  return { state: store.state as ConfigState, plaintext: store.plaintext }
}

test.serial('a member signing version 2^53 - 1 that lists only itself and B: B refuses it, keeps C, and is not wedged', async t => {
  const [a, b, c] = ms
  const v = (await installedVersion(b)) ?? 0
  const bView = await clusterStatus(b)
  const refusedBefore = bView.rejections.PEM_ERR_BAD_SUCCESSION ?? 0
  await stopSpd(a, 'SIGKILL') // a compromised member does not depart politely (a clean stop would install its departure)

  const identity = loadIdentity(path.join(a.dir, IDENTITY_FILE))
  const { state, plaintext } = storedConfig(a)
  const forged = unpack(plaintext) as ConfigState
  delete forged.members[c.id]
  forged.version = Number.MAX_SAFE_INTEGER
  forged.policyText = policy('only-what-A-says')
  forged.changedBy = identity.id
  forged.clusterLog = [...(forged.clusterLog ?? []), { version: forged.version, origin: identity.id, change: 'forged' }]
  signAsOrigin(Buffer.from(state.clusterId ?? '', 'hex'), forged, identity)

  const aRecord = state.members[identity.id]
  const bRecord = state.members[b.id]
  let node: ClusterNode | null = null
  const transport = new ChannelTransport({
    identity,
    listen: aRecord.clusterAddr ?? a.cluster,
    admits: id => id === b.id,
    idOf: addr => addr === (bRecord.clusterAddr ?? b.cluster) ? b.id : undefined,
    receive: p => node?.receive(p),
    onRefused: () => {},
    retryMs: 200
  })
  await transport.start()
  node = new ClusterNode({
    clusterId: Buffer.from(state.clusterId ?? '', 'hex'),
    identity,
    addr: aRecord.clusterAddr ?? a.cluster,
    transport,
    clock: { now: () => performance.now() },
    epoch: ClusterStateFile.open(a.dir).epoch, // fresh for B, and A's own restart later is fresher still
    hwm: new MemoryHwmStore(),
    installed: forged,
    installedPlaintext: pack(forged),
    intervalMs: 200,
    commit: () => {}
  })
  const ticker = setInterval(() => node?.tick(), 200)
  try {
    const refused = await until(async () => ((await clusterStatus(b)).rejections.PEM_ERR_BAD_SUCCESSION ?? 0) > refusedBefore, 15_000)
    t.true(refused, 'B refused the forged set (PEM_ERR_BAD_SUCCESSION)')
    await new Promise(resolve => setTimeout(resolve, 2000)) // ten more intervals of A advertising it
    const view = await clusterStatus(b)
    t.is(view.installed.version, v, 'B kept its installed version')
    t.is(view.pending, null, 'and holds nothing at the forged version')
    t.is(view.members.find(m => m.id === c.id)?.state, 'active', 'C is still a member on B')
  } finally {
    clearInterval(ticker)
    node.stopped = true
    await transport.close()
  }

  await startSpd(a)
  const work = tempDir('spd-fastforward')
  const r = await b.spctl(['--json', 'policy', 'apply', writeFile(work, 'honest.yaml', policy('honest'))])
  t.is(r.code, 0, r.stderr)
  t.is(JSON.parse(r.stdout).version, v + 1, 'the next change takes the next version')
  await allInstalled(ms, v + 1, 30_000)
  for (const m of ms) t.true(((await admin(m, 'GET', '/v1/policy')) as { text: string }).text.includes('honest'), m.name)
  fs.rmSync(work, { recursive: true, force: true })
})
