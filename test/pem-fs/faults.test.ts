// pemfs under cluster faults, on a real mount: a policy change mid-run takes effect without a remount, every server
// down gives a clean error within a bounded time (never a hang), and the mount recovers when the server is back.
import test from 'ava'
import fs from 'node:fs'
import path from 'node:path'
import { startSpd, stopSpd } from '../../scripts/procs'
import { applyPolicy, clusterWithHost, mountOrThrow, sh, tearDown, tempDir, type Cluster } from '../helpers/mounts'

let c: Cluster
let dir: string
const q = (p: string): string => `'${path.join(dir, p)}'`
const policy = (guard: string, denied: string): string => `format: 1
ttl: 300ms
guards:
  ${guard}:
    rules:
      - id: deny-some
        resources: { dirs: [${denied}] }
        effect: deny
      - id: everyone
        effect: permit
`
const settle = async (): Promise<void> => await new Promise(resolve => setTimeout(resolve, 400)) // > the decision ttl

test.before(async () => {
  dir = path.join(tempDir('faults'), 'data')
  fs.mkdirSync(dir)
  c = await clusterWithHost('pemfs-faults', () => policy(dir, '/nothing'))
  await mountOrThrow(c, dir, ['--timeout-ms', '1000'])
})

test.after.always(async () => { await tearDown(c) })

test.serial('a new policy version applies mid-run: a path permitted before is denied after, others keep working', async t => {
  const before = await sh(`mkdir ${q('v')} && echo v1 > ${q('v/x')} && echo ok > ${q('other')} && cat ${q('v/x')}`)
  t.is(before.stdout, 'v1\n', before.stderr)
  await applyPolicy(c, policy(dir, '/v'))
  await settle()
  const after = await sh(`cat ${q('v/x')}`)
  t.not(after.code, 0)
  t.regex(after.stderr, /Permission denied/)
  t.is((await sh(`cat ${q('other')}`)).stdout, 'ok\n')
})

test.serial('every server down: a clean error within a bounded time, no hang; back when the server is', async t => {
  await stopSpd(c.spd)
  await settle()
  const t0 = Date.now()
  const r = await sh(`cat ${q('other')}`, { timeoutMs: 20000 })
  const ms = Date.now() - t0
  t.not(r.code, 124, 'the command was not killed by the timeout')
  t.not(r.code, 0)
  t.regex(r.stderr, /No route to host|Input\/output error/)
  t.true(ms < 8000, `answered in ${ms} ms`)
  await startSpd(c.spd)
  let back = ''
  for (let i = 0; i < 40 && back !== 'ok\n'; i++) {
    back = (await sh(`cat ${q('other')}`)).stdout
    if (back !== 'ok\n') await new Promise(resolve => setTimeout(resolve, 250))
  }
  t.is(back, 'ok\n')
})
