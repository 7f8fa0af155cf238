// The native decision cache honours decision scopes (docs/PEMFS.md "Decisions"): on a real mount with a scoped
// policy, one process creating, stat'ing and removing many files in a directory costs a few JS decide calls (the
// session's jsCalls, `pemfs status` nativeJsCalls), not some per name; a directory outside the scope, a new policy
// version and another uid each ask again; a scoped deny keeps its errno for every name under it.
import test, { type ExecutionContext } from 'ava'
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import readline from 'node:readline'
import { cli } from '../../scripts/procs'
import { applyPolicy, clusterWithHost, mountOrThrow, sh, tearDown, tempDir, type Cluster } from '../helpers/mounts'

const N = 300
let c: Cluster
let dir: string

const policy = (guard: string, ttl: string): string => `format: 1
ttl: ${ttl}
guards:
  ${guard}:
    rules:
      - id: deny-secret
        resources: { dirs: [/secret] }
        effect: deny
      - id: everyone
        effect: permit
`

// One python process for every step, so its pid (a part of the native cache's key) stays the same throughout.
// Commands on stdin, one JSON line back for each: loop DIR N (create + write 4 KiB, stat, unlink N files),
// deny DIR N (stat N names there: how many got EACCES), euid UID.
const DRIVER = `
import errno, json, os, sys
for line in sys.stdin:
    cmd, *args = line.split()
    out = {}
    try:
        if cmd == 'loop':
            d, n = args[0], int(args[1])
            for i in range(n):
                with open(f'{d}/f{i}', 'wb') as f: f.write(b'a' * 4096)
            for i in range(n): os.stat(f'{d}/f{i}')
            for i in range(n): os.unlink(f'{d}/f{i}')
        elif cmd == 'deny':
            d, n = args[0], int(args[1])
            out['eacces'] = 0
            for i in range(n):
                try: os.stat(f'{d}/f{i}')
                except OSError as e: out['eacces'] += e.errno == errno.EACCES
        elif cmd == 'euid':
            os.seteuid(int(args[0]))
        out['ok'] = True
    except OSError as e:
        out['error'] = str(e)
    print(json.dumps(out), flush=True)
`

let driver: ChildProcessWithoutNullStreams | undefined
let lines: AsyncIterator<string>

async function step (cmd: string): Promise<Record<string, unknown>> {
  driver?.stdin.write(cmd + '\n')
  const r = await Promise.race([lines.next(), new Promise<never>((_resolve, reject) => setTimeout(() => reject(new Error(`${cmd}: no answer in 60 s`)), 60_000))])
  return JSON.parse(r.value as string)
}

const status = async (): Promise<{ nativeJsCalls: number, pv: number }> => JSON.parse((await cli('pemfs', ['status', dir, '--config-dir', c.hostDir, '--json'])).stdout)

/** JS decide calls the mount made while `cmd` ran in the driver. */
async function calls (cmd: string, t: ExecutionContext, expect: Record<string, unknown> = { ok: true }): Promise<number> {
  const before = (await status()).nativeJsCalls
  const t0 = Date.now()
  t.deepEqual(await step(cmd), expect, cmd)
  const n = (await status()).nativeJsCalls - before
  t.log(`${cmd.replace(dir, 'DIR')}: ${n} JS decide calls, ${Date.now() - t0} ms`)
  return n
}

test.before(async () => {
  dir = path.join(tempDir('nscope'), 'data')
  fs.chmodSync(path.dirname(dir), 0o755)
  fs.mkdirSync(dir, { mode: 0o777 })
  for (const d of ['a', 'b', 'secret']) fs.mkdirSync(path.join(dir, d), { mode: 0o777 })
  fs.chmodSync(path.join(dir, 'a'), 0o777)
  c = await clusterWithHost('pemfs-nscope', () => policy(dir, '60s'))
  await mountOrThrow(c, dir)
  driver = spawn('python3', ['-c', DRIVER], { stdio: 'pipe' })
  lines = readline.createInterface({ input: driver.stdout })[Symbol.asyncIterator]()
})

test.after.always(async () => {
  driver?.kill('SIGKILL')
  await tearDown(c)
})

test.serial('scoped decisions: O(1) JS calls per directory, asked again outside the scope, after a policy change, for another uid', async t => {
  const a = path.join(dir, 'a')
  const first = await calls(`loop ${a} ${N}`, t)
  t.true(first >= 1 && first <= 12, `${first} calls`)
  t.true(await calls(`loop ${a} ${N}`, t) <= 1, 'the same process again: the scope holds for the new names too')

  t.true(await calls(`loop ${path.join(dir, 'b')} 20`, t) >= 1, 'another directory is outside /a\'s scope')

  const denied = await calls(`deny ${path.join(dir, 'secret')} ${N}`, t, { ok: true, eacces: N })
  t.true(denied >= 1 && denied <= 4, `a scoped deny keeps EACCES for every name: ${denied} calls for ${N} names`)

  const pv = (await status()).pv
  await applyPolicy(c, policy(dir, '50s'))
  const deadline = Date.now() + 20_000
  while ((await status()).pv === pv && Date.now() < deadline) {
    // The host learns a version from a reply: another program's question misses every cache and brings one.
    await sh(`stat -c %n '${path.join(dir, 'b')}' > /dev/null`)
    await new Promise(resolve => setTimeout(resolve, 200))
  }
  t.not((await status()).pv, pv, 'the host saw the new policy version')
  t.true(await calls(`loop ${a} 20`, t) >= 1, 'a new policy version drops the native cache')
  t.true(await calls(`loop ${a} 20`, t) <= 1)

  t.deepEqual(await step('euid 1'), { ok: true })
  const other = await calls(`loop ${a} ${N}`, t)
  t.true(other >= 1 && other <= 12, `another uid asks again, once per scope: ${other} calls`)
  t.deepEqual(await step('euid 0'), { ok: true })
})
