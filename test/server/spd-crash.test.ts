// Crash during install (CHECKLIST 19): a member is SIGKILLed at each step of writing a new configuration (inside the
// temp file, before the rename, after it, right after persisting its lock); on restart it has exactly the old or the
// new version, never a mix, and converges to the digest the others installed.
import test from 'ava'
import { admin, allInstalled, installedVersion, startCluster, until, type Member } from '../../scripts/cluster'
import { cli, startSpd, stopAll, stopSpd } from '../../scripts/procs'

const FAST = { load: { threshold: 1 }, cluster: { intervalMs: 200 } }
let ms: Member[]

test.before(async () => { ms = await startCluster(3, 'x', FAST) })
test.after.always(() => { stopAll() })

const storedVersion = async (m: Member): Promise<number> =>
  (JSON.parse((await cli('spd', ['id', '--data-dir', m.dir, '--json'])).stdout) as { version: number }).version

// Where the process dies, and which version its store must hold afterwards: 'old' or 'new'.
const STEPS: Array<[string, 'old' | 'new']> = [
  ['store:mid-write', 'old'],
  ['store:before-rename', 'old'],
  ['store:after-rename', 'new'],
  ['lock:after-save', 'old']
]

for (const [step, expected] of STEPS) {
  test.serial(`killed at ${step}: restarts with the ${expected} version and catches up`, async t => {
    const victim = ms[2]
    await stopSpd(victim, 'SIGKILL') // not a clean stop: that would depart, and its return would be the store write the failpoint hits
    await startSpd(victim, 30000, { PEM_FAILPOINT: step })
    const died = new Promise<string | null>(resolve => victim.proc?.once('exit', (_code, signal) => resolve(signal)))
    const before = (await installedVersion(ms[0])) ?? 0
    await allInstalled(ms, before)
    const r = await admin(ms[0], 'PUT', '/v1/policy', { text: `format: 1\nguards:\n  /srv/x:\n    rules:\n      - id: ${step.replace(/[^a-z]/g, '-')}\n        effect: permit\n` }) as { version: number }
    t.is(r.version, before + 1)
    t.is(await Promise.race([died, new Promise<string>(resolve => setTimeout(() => resolve('still running'), 15000))]), 'SIGKILL', `died at ${step}`)
    victim.proc = null
    t.is(await storedVersion(victim), expected === 'old' ? before : before + 1, 'exactly the old or the new configuration')
    const digest = await allInstalled([ms[0], ms[1]], before + 1)
    await startSpd(victim)
    t.is(await allInstalled(ms, before + 1), digest, 'the same content as the others')
    t.true(await until(async () => (await installedVersion(victim)) === before + 1, 1000))
  })
}
