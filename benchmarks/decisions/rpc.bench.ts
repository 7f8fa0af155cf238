// Decisions through the real programs: spd processes with 10- and 10,000-rule policies answer Decide over the TLS
// channel, beside a bare msgpack echo (another process) in the same run; plus spd's start-up and memory budgets.
// Run alone: `npx tsc -p . && node dist/benchmarks/run.js --only decisions` (--quick shortens it).
import { spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { connectBareEcho } from '../../lib/channel/echo'
import { connect } from '../../lib/channel/tls'
import type { Channel } from '../../lib/channel/channel'
import { generateIdentity } from '../../lib/crypto/identity'
import { ClusterClient } from '../../lib/pem-fs/client'
import { hostIdentity, readCluster } from '../../lib/pem-fs/host-config'
import { pack } from '../../lib/wire/frame'
import { Op } from '../../lib/wire/opcodes'
import type { DecideReply } from '../../lib/wire/packets'
import { startSpd, stopAll, stopSpd } from '../../scripts/procs'
import { processMemory, type BenchContext, type BenchFn } from '../harness'
import { alternate, type Send, type Series } from './drive'
import { applyPolicy, enrollHosts, hitRequest, HIT_RULE, policyYaml, startMember, type Member } from './spd-setup'

const BIG = 10_000
const START_BUDGET_MS = 1000 // DESIGN §8: `spd start` serves within 1 s
const RSS_BUDGET_MIB = 200 // DESIGN §8: spd with 10,000 rules, 1,000 hosts, 32 in flight

interface EchoChild { proc: ChildProcess, id: string, bare: number, channel: number }

async function startEcho (): Promise<EchoChild> {
  const proc = spawn(process.execPath, [path.join(__dirname, 'echo-server.js')], { stdio: ['pipe', 'pipe', 'inherit'] })
  const line = await new Promise<string>((resolve, reject) => {
    let buf = ''
    proc.stdout?.on('data', (c: Buffer) => { buf += c.toString('utf8'); if (buf.includes('\n')) resolve(buf.slice(0, buf.indexOf('\n'))) })
    proc.once('exit', code => reject(new Error(`echo server exited with ${String(code)}`)))
  })
  return { proc, ...(JSON.parse(line) as { id: string, bare: number, channel: number }) }
}

/** VmRSS and VmHWM (peak) of a process, in MiB. */
async function hostChannel (m: Member): Promise<Channel> {
  const server = readCluster(m.hostDir).servers[0]
  const [host, port] = server.addr.split(':')
  return await connect({ host, port: Number(port), identity: hostIdentity(m.hostDir), role: 'host', expectedId: server.id })
}

function check (d: DecideReply): void {
  if (!d.ok || d.rule !== HIT_RULE) throw new Error(`unexpected decision: ok=${String(d.ok)} rule=${String(d.rule)} reason=${d.reason}`)
}

/** Decide over a Channel with the policy version it saw at Hello. */
function decideOn (ch: Channel): Send {
  const body = hitRequest(ch.helloReply?.pv ?? 0)
  return async () => { check(await ch.request(Op.Decide, body) as DecideReply) }
}

function decideVia (client: ClusterClient): Send {
  const { pv: _pv, ...req } = hitRequest(0)
  return async () => { check(await client.decide(req)) }
}

function met (ok: boolean, target: string): string { return `target ${target}: ${ok ? 'met' : 'MISSED'}` }
const THRESHOLD_NOTE = '; spd load threshold 1, so no overload rejections'

function reportDepth (ctx: BenchContext, depth: number, s: Record<string, Series>): void {
  const at = `depth ${depth}`
  const base = s['bare echo']
  const latency = (name: string, of: Series, vs: Series, vsName: string, target?: number): void => {
    for (const q of [50, 99]) {
      const value = of.p(q)
      const limit = q === 99 ? target : undefined
      ctx.report({ name: `${name}, ${at}, p${q}`, value, unit: 'ms', baseline: `${vsName}, ${at}, p${q}`, baseline_value: vs.p(q), note: limit === undefined ? undefined : met(value <= limit * vs.p(q), `<= ${limit}x`) })
    }
  }
  for (const n of [10, BIG]) {
    const of = s[`${n} rules`]
    ctx.report({ name: `spd decide ${n} rules, ${at}`, value: Math.round(of.perSecond), unit: 'ops/s', baseline: `bare echo, ${at}`, baseline_value: Math.round(base.perSecond), note: met(of.perSecond >= 0.7 * base.perSecond, '>= 0.7x') + THRESHOLD_NOTE })
    latency(`spd decide ${n} rules`, of, base, 'bare echo', 1.5)
  }
  const small = s['10 rules']
  const big = s[`${BIG} rules`]
  ctx.report({ name: `spd decide ${BIG} vs 10 rules, ${at}`, value: Math.round(big.perSecond), unit: 'ops/s', baseline: `spd decide 10 rules, ${at}`, baseline_value: Math.round(small.perSecond), note: met(big.perSecond * 1.3 >= small.perSecond, 'within 1.3x') })
  ctx.report({ name: `spd decide ${BIG} vs 10 rules, ${at}, p99`, value: big.p(99), unit: 'ms', baseline: `spd decide 10 rules, ${at}, p99`, baseline_value: small.p(99), note: met(big.p(99) <= 1.3 * small.p(99), 'within 1.3x') })
  const ch = s['Channel echo']
  ctx.report({ name: `Channel echo (Ping), ${at}`, value: Math.round(ch.perSecond), unit: 'ops/s', baseline: `bare echo, ${at}`, baseline_value: Math.round(base.perSecond), note: 'lib/channel without spd: how much of the gap is the channel' })
  latency('Channel echo (Ping)', ch, base, 'bare echo')
  for (const n of [10, BIG]) {
    const cc = s[`ClusterClient ${n} rules`]
    if (cc !== undefined) ctx.report({ name: `ClusterClient.decide ${n} rules, ${at}`, value: Math.round(cc.perSecond), unit: 'ops/s', baseline: `bare echo, ${at}`, baseline_value: Math.round(base.perSecond), note: 'client library with failover bookkeeping' })
  }
}

export const run: BenchFn = async (ctx: BenchContext) => {
  const quick = ctx.quick
  const rounds = quick ? 1 : 4
  const roundMs = quick ? 200 : 600
  const hosts = quick ? 50 : 1000
  const echo = await startEcho()
  const clients: Array<{ close: () => void }> = []
  const members: Member[] = []
  try {
    ctx.log('spd members run with load threshold 1 (never overloaded): this benchmark loads the same CPUs it measures')
    const small = await startMember('spd-small', policyYaml(10), members)
    // The big member enrolls its hosts under the small policy and gets the big one after: every commit rewrites the
    // whole store (policy text included), so this order is faster and ends in the same state.
    const big = await startMember('spd-big', policyYaml(10), members)
    const enrollMs = await enrollHosts(big, hosts)
    ctx.log(`enrolled ${hosts} hosts (+1 benchmark host) on spd-big in ${Math.round(enrollMs)} ms (admin API token + client enroll() each)`)
    const t0 = performance.now()
    await applyPolicy(big, policyYaml(BIG))
    ctx.log(`spctl policy apply of ${BIG} rules (${Math.round(policyYaml(BIG).length / 1024)} KiB YAML) took ${Math.round(performance.now() - t0)} ms`)

    const starts: number[] = []
    for (let i = 0; i < (quick ? 1 : 3); i++) {
      await stopSpd(big.spd)
      const t = performance.now()
      await startSpd(big.spd)
      starts.push(performance.now() - t)
    }
    const pid = big.spd.proc?.pid ?? 0
    const atStart = processMemory(pid)
    ctx.log(`spd start with ${BIG} rules and ${hosts + 1} hosts, spawn to 'spd serving': ${starts.map(x => Math.round(x)).join(', ')} ms`)
    const worst = Math.max(...starts)
    ctx.report({ name: `spd start (${BIG} rules, ${hosts + 1} hosts), slowest of ${starts.length}`, value: Math.round(worst), unit: 'ms', baseline: 'budget (DESIGN §8)', baseline_value: START_BUDGET_MS, note: met(worst <= START_BUDGET_MS, '<= 1000 ms') })

    const chSmall = await hostChannel(small)
    const chBig = await hostChannel(big)
    const chEcho = await connect({ host: '127.0.0.1', port: echo.channel, identity: generateIdentity(), role: 'host', expectedId: echo.id })
    const bare = await connectBareEcho(generateIdentity(), echo.bare)
    const ccSmall = new ClusterClient(hostIdentity(small.hostDir), readCluster(small.hostDir).servers)
    const ccBig = new ClusterClient(hostIdentity(big.hostDir), readCluster(big.hostDir).servers)
    clients.push(chSmall, chBig, chEcho, bare, ccSmall, ccBig)
    const body = hitRequest(chBig.helloReply?.pv ?? 0)
    const reply = await chBig.request(Op.Decide, body) as DecideReply
    ctx.log(`Decide body ${pack(body).length} B, reply ${pack(reply).length} B; the bare echo sends the same Decide body and gets it back`)
    const common: Record<string, Send> = {
      'bare echo': async () => { await bare.roundTrip(body) },
      'Channel echo': async () => { await chEcho.request(Op.Ping, null) },
      '10 rules': decideOn(chSmall),
      [`${BIG} rules`]: decideOn(chBig)
    }
    reportDepth(ctx, 1, await alternate({ ...common, 'ClusterClient 10 rules': decideVia(ccSmall), [`ClusterClient ${BIG} rules`]: decideVia(ccBig) }, 1, rounds, roundMs))
    reportDepth(ctx, 32, await alternate(common, 32, rounds, roundMs))

    const after = processMemory(pid)
    const rss = (name: string, value: number): void => ctx.report({ name, value: Math.round(value * 10) / 10, unit: 'MiB', baseline: 'budget (DESIGN §8)', baseline_value: RSS_BUDGET_MIB, note: met(value <= RSS_BUDGET_MIB, '<= 200 MiB') })
    rss(`spd RSS at start (${BIG} rules, ${hosts + 1} hosts)`, atStart.rss)
    rss('spd RSS after the depth-1 and depth-32 runs', after.rss)
    rss('spd peak RSS (VmHWM) over start-up and load', after.peak)
  } finally {
    for (const c of clients) c.close()
    stopAll()
    echo.proc.kill('SIGTERM')
    for (const m of members) fs.rmSync(path.dirname(m.spd.dir), { recursive: true, force: true })
  }
}
