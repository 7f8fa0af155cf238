// spd's data service end to end over loopback: BlocksSeal and BlocksOpen batches from the host client to a real
// spd process, 32 batches in flight, in blocks/s and MB/s of plaintext — beside the floor it cannot beat: the bare
// Channel echoing a request of the same size (lib/channel/echo.ts, in its own process, like spd).
// Run alone: `npx tsc -p . && node dist/benchmarks/run.js --only data` (--quick shortens it).
import { spawn, type ChildProcess } from 'node:child_process'
import crypto from 'node:crypto'
import path from 'node:path'
import type { Channel } from '../../lib/channel/channel'
import { connect } from '../../lib/channel/tls'
import { generateIdentity } from '../../lib/crypto/identity'
import { attrsOf } from '../../lib/pem-fs/attrs'
import { ClusterClient, type Decision } from '../../lib/pem-fs/client'
import { hostIdentity, readCluster } from '../../lib/pem-fs/host-config'
import { Op } from '../../lib/wire/opcodes'
import { cli, initSpd, loginSpctl, startSpd, stopAll, stopSpd, tempDir, writeFile } from '../../scripts/procs'
import type { BenchContext } from '../harness'

const IN_FLIGHT = 32
const POLICY = `format: 1
keys: [bench]
guards:
  /srv:
    rules:
      - id: plain
        resources: { dirs: [/plain] }
        effect: apply_key(bench)
      - id: zstd
        resources: { dirs: [/zstd] }
        effect: apply_key(bench)
        compression: zstd
`

/** Runs `send` with IN_FLIGHT requests always outstanding for `ms`; returns completed requests per second. */
async function pump (ms: number, send: () => Promise<unknown>): Promise<number> {
  const until = Date.now() + ms
  const start = process.hrtime.bigint()
  let done = 0
  const lane = async (): Promise<void> => { while (Date.now() < until) { await send(); done++ } }
  await Promise.all(Array.from({ length: IN_FLIGHT }, lane))
  return done / (Number(process.hrtime.bigint() - start) / 1e9)
}

async function startEcho (): Promise<{ proc: ChildProcess, id: string, port: number }> {
  const proc = spawn(process.execPath, [path.join(__dirname, 'echo-child.js')], { stdio: ['ignore', 'pipe', 'inherit'] })
  const line = await new Promise<string>((resolve, reject) => {
    let buf = ''
    proc.stdout?.on('data', (c: Buffer) => { buf += c.toString('utf8'); if (buf.includes('\n')) resolve(buf.slice(0, buf.indexOf('\n'))) })
    proc.once('exit', code => reject(new Error(`echo child exited with ${String(code)}`)))
  })
  return { proc, ...(JSON.parse(line) as { id: string, port: number }) }
}

export async function run (ctx: BenchContext): Promise<void> {
  const ms = ctx.quick ? 400 : 3000
  const work = tempDir('bench-data')
  const spd = await initSpd('spd-bench-data')
  const echo = await startEcho()
  let client: ClusterClient | undefined
  let echoCh: Channel | undefined
  try {
    await startSpd(spd)
    const spctl = await loginSpctl(spd)
    if ((await spctl(['policy', 'apply', writeFile(work, 'policy.yaml', POLICY)])).code !== 0) throw new Error('policy apply failed')
    const token = JSON.parse((await spctl(['--json', 'host', 'add', 'bench-host'])).stdout).token as string
    const hostDir = path.join(work, 'host')
    const enrolled = await cli('pemfs', ['enroll', '--cluster', spd.listen, '--token', token, '--config-dir', hostDir, '--name', 'bench-host'])
    if (enrolled.code !== 0) throw new Error(enrolled.stderr)
    client = new ClusterClient(hostIdentity(hostDir), readCluster(hostDir).servers, { timeoutMs: 30_000 })
    const c = client
    const decide = async (p: string): Promise<Decision> => await c.decide({ guard: '/srv', path: p, action: 'write', attrs: attrsOf(process.pid, 1000, 1000) })
    const floorCh = echoCh = await connect({ host: '127.0.0.1', port: echo.port, identity: generateIdentity(), role: 'host', expectedId: echo.id, timeoutMs: 30_000 })
    ctx.log(`${IN_FLIGHT} batches in flight, ${ms} ms per measurement, one host channel; MB = 10^6 bytes of plaintext`)

    for (const [dir, blockBytes, perBatch] of [['plain', 4096, 64], ['plain', 4096, 256], ['zstd', 65536, 16]] as const) {
      const d = await decide(`/${dir}/f`)
      const { bytes: header } = await c.newHeader(d)
      const nums = Array.from({ length: perBatch }, (_, i) => i)
      // Compressible input for zstd (half random, half zeros per block), random otherwise.
      const parts = nums.map(() => { const b = crypto.randomBytes(blockBytes); if (dir === 'zstd') b.fill(0, blockBytes / 2); return b })
      const records = (await c.sealBlocks(d, header, nums, parts)).parts
      const batchMB = (perBatch * blockBytes) / 1e6
      const label = `${dir} ${blockBytes / 1024} KiB x ${perBatch}`
      // Floor: the same request frame echoed by the bare Channel (request and reply both carry the batch).
      const sealBody = { grant: d.grant, header, blocks: nums, lens: parts.map(p => p.length), data: Buffer.concat(parts) }
      const floor = await pump(ms, async () => await floorCh.request(Op.BlocksSeal, sealBody))
      const seal = await pump(ms, async () => { (await c.sealBlocks(d, header, nums, parts)).release() })
      const open = await pump(ms, async () => { (await c.openBlocks(d, header, nums, records)).release() })
      const base = { baseline: 'channel echo, same size', baseline_value: floor * batchMB }
      ctx.report({ name: `seal ${label} MB/s`, value: seal * batchMB, unit: 'MB/s', ...base })
      ctx.report({ name: `seal ${label} blocks/s`, value: seal * perBatch, unit: 'blocks/s', baseline: 'channel echo, same size', baseline_value: floor * perBatch })
      ctx.report({ name: `open ${label} MB/s`, value: open * batchMB, unit: 'MB/s', ...base })
      ctx.report({ name: `open ${label} blocks/s`, value: open * perBatch, unit: 'blocks/s', baseline: 'channel echo, same size', baseline_value: floor * perBatch })
    }
  } finally {
    client?.close()
    echoCh?.close()
    echo.proc.kill()
    await stopSpd(spd)
    stopAll()
  }
}
