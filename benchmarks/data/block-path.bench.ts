// The native block path (issue 17, docs/CHANNEL.md §8): pemfs's native block-channel client against a real spd's
// native block service over loopback — seal and open round trips of 4 KiB, 64 KiB and 1 MiB requests (4 KiB blocks)
// at depth 1 and 32 (threads sharing the one connection) — beside its floor measured in the same run: a C TCP echo
// of the same payload (native/block_bench.cc, one connection per depth). The bench process blocks while a native
// run goes; spd is its own process. Run alone: `npx tsc -p . && node dist/benchmarks/run.js --only data`.
import path from 'node:path'
import { attrsOf } from '../../lib/pem-fs/attrs'
import { ClusterClient } from '../../lib/pem-fs/client'
import { hostIdentity, readCluster } from '../../lib/pem-fs/host-config'
import { raw } from '../../lib/native/binding'
import { AAD_BYTES, writeAad } from '../../lib/wire/file-format'
import { cli, initSpd, loginSpctl, startSpd, stopAll, stopSpd, tempDir, writeFile } from '../../scripts/procs'
import type { BenchContext } from '../harness'

const POLICY = `format: 1
ttl: 1h
keys: [bench]
guards:
  /srv:
    rules:
      - id: plain
        effect: apply_key(bench)
`
const BLOCK = 4096

export async function run (ctx: BenchContext): Promise<void> {
  const ms = ctx.quick ? 300 : 2000
  const work = tempDir('bench-block-path')
  const spd = await initSpd('spd-bench-block-path')
  let client: ClusterClient | undefined
  try {
    await startSpd(spd)
    const spctl = await loginSpctl(spd)
    if ((await spctl(['policy', 'apply', writeFile(work, 'policy.yaml', POLICY)])).code !== 0) throw new Error('policy apply failed')
    const token = JSON.parse((await spctl(['--json', 'host', 'add', 'bench-host'])).stdout).token as string
    const hostDir = path.join(work, 'host')
    const enrolled = await cli('pemfs', ['enroll', '--cluster', spd.listen, '--token', token, '--config-dir', hostDir, '--name', 'bench-host'])
    if (enrolled.code !== 0) throw new Error(enrolled.stderr)
    client = new ClusterClient(hostIdentity(hostDir), readCluster(hostDir).servers, { timeoutMs: 30_000 })
    const d = await client.decide({ guard: '/srv', path: '/f', action: 'write', attrs: attrsOf(process.pid, 1000, 1000) })
    const { bytes, header } = await client.newHeader(d)
    const aad = Buffer.alloc(AAD_BYTES)
    writeAad(header, 0, header.keyVersion, BLOCK, aad)
    ctx.log(`${ms} ms per measurement; rates are round trips/s; the machine is shared: numbers are noisy`)
    for (const blocks of [1, 16, 256]) {
      for (const depth of [1, 32]) {
        const { remote } = await client.blockChannel(d, bytes) // a fresh token each time: the bench opens a connection per run
        const label = `${blocks * BLOCK / 1024} KiB, depth ${depth}`
        const echo = raw.tcpEchoBench(blocks * BLOCK, depth, ms)
        const r = raw.blockBench(remote, aad, BLOCK, blocks, depth, ms)
        if (r.seal.errno !== 0 || r.open.errno !== 0 || echo.errno !== 0) throw new Error(`block bench failed: errno ${r.seal.errno}/${r.open.errno}/${echo.errno}`)
        const base = { baseline: 'C TCP echo, same size', baseline_value: echo.rate }
        ctx.report({ name: `native block seal ${label} /s`, value: r.seal.rate, unit: 'round trips/s', ...base })
        ctx.report({ name: `native block open ${label} /s`, value: r.open.rate, unit: 'round trips/s', ...base })
        if (depth === 1) {
          ctx.report({ name: `native block open ${label} p50`, value: r.open.p50us, unit: 'µs', baseline: 'C TCP echo p50', baseline_value: echo.p50us })
        }
      }
    }
  } finally {
    client?.close()
    await stopSpd(spd)
    stopAll()
  }
}
