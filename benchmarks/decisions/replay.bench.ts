// Decision replay (issue 20: 1,000,000 recorded decisions in <= 10 s): an audit log of decision records written by
// the real writer (lib/server/audit.ts, chain and checkpoints) is replayed under a draft policy that changes one rule,
// in process (read + parse + decide + group, what `spctl policy simulate --from` does) and through the spctl binary.
// Run alone: `npx tsc -p . && node -e "require('./dist/benchmarks/decisions/replay.bench.js').run({quick:false,report:console.log,log:console.log})"`.
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { generateIdentity } from '../../lib/crypto/identity'
import { decide, parsePolicyOrThrow } from '../../lib/policy'
import { Replay } from '../../lib/policy/simulate'
import { AuditLog } from '../../lib/server/audit'
import { forEachDecision } from '../../lib/server/audit-read'
import { decisionRecord } from '../../lib/wire/audit-record'
import { ACTIONS, type AccessAttrs } from '../../lib/wire/packets'
import type { BenchFn } from '../harness'

const TEAMS = 100

/** One guard point, a rule per team (its uid range's directory, read-only or with a key) and a shared deny. */
function policyText (closeTeam: number | null): string {
  const rules: string[] = []
  if (closeTeam !== null) rules.push(`      - id: close-${closeTeam}\n        resources: { dirs: [/teams/t${closeTeam}/tmp] }\n        effect: deny`)
  for (let t = 0; t < TEAMS; t++) {
    rules.push(`      - id: team-${t}\n        users: { uids: [${2000 + t}, ${3000 + t}] }\n        resources: { dirs: [/teams/t${t}] }\n        effect: ${t % 2 === 0 ? 'apply_key(k)' : 'permit'}`)
  }
  rules.push('      - id: public\n        resources: { dirs: [/public] }\n        actions: readonly\n        effect: permit')
  return `format: 1\nkeys: [k]\nguards:\n  /srv/data:\n    rules:\n${rules.join('\n')}\n`
}

function request (i: number): { path: string, action: (typeof ACTIONS)[number], attrs: AccessAttrs } {
  const team = i % TEAMS
  const uid = (i % 3 === 0 ? 3000 : 2000) + (i % 10 === 9 ? (team + 1) % TEAMS : team) // every tenth asks another team's data
  const attrs: AccessAttrs = { uid, gids: [uid], pid: 10_000 + (i % 5000), sid: 9000 + (i % 50), exe: '/usr/bin/python3', exeHash: 'cd'.repeat(32), auth: 1, user: `u${uid}` }
  const p = i % 5 === 0 ? `/public/docs/page-${i % 997}.html` : `/teams/t${team}/${Math.floor(i / TEAMS) % 4 === 0 ? 'tmp/' : ''}data-${i % 10_007}.csv`
  return { path: p, action: ACTIONS[i % 3], attrs } // read, write, open...
}

/** Writes `n` decisions as spd records them: decided under `installed`, through the chained writer. */
function writeLog (file: string, n: number, installed: ReturnType<typeof parsePolicyOrThrow>): void {
  const log = new AuditLog(file, generateIdentity())
  for (let i = 0; i < n; i++) {
    const q = request(i)
    const ctx = { host: `h${i % 40}`.padEnd(64, '0'), ip: `10.1.${i % 200}.${i % 250}` }
    const d = decide(installed, { guard: '/srv/data', path: q.path, action: q.action, attrs: q.attrs, ctx })
    log.write(decisionRecord('/srv/data', q.path, q.action, q.attrs, ctx, d, 7))
    if (i % 4096 === 4095) log.flush()
  }
  log.close()
}

export const run: BenchFn = async ctx => {
  const n = ctx.quick ? 20_000 : 1_000_000
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pem-replay-bench-'))
  try {
    const installed = parsePolicyOrThrow(policyText(null))
    const draftText = policyText(17)
    const draft = parsePolicyOrThrow(draftText)
    const file = path.join(dir, 'audit.log')
    const t0 = performance.now()
    writeLog(file, n, installed)
    ctx.log(`wrote ${n} decision records (${(fs.statSync(file).size / 1048576).toFixed(0)} MiB) in ${((performance.now() - t0) / 1000).toFixed(1)} s; ${TEAMS + 2} rules, draft adds one deny`)

    const start = performance.now()
    const cpu = process.cpuUsage()
    const replay = new Replay(draft)
    forEachDecision(file, r => replay.add(r))
    const s = replay.result()
    const ms = performance.now() - start
    const used = process.cpuUsage(cpu)
    const cpuMs = (used.user + used.system) / 1000
    if (s.replayed !== n) throw new Error(`replayed ${s.replayed} of ${n}`)
    ctx.log(`in process: ${s.replayed} replayed, ${s.changed} change (${s.permitToDeny} permit -> deny)`)
    ctx.report({ name: `replay ${n} recorded decisions, in process`, value: Math.round(ms), unit: 'ms', baseline: 'goal (issue 20)', baseline_value: n / 100, note: `${Math.round(n / (ms / 1000))} decisions/s, ${Math.round(cpuMs)} ms of CPU; goal ${ms <= n / 100 ? 'met' : 'MISSED'}` })

    const draftFile = path.join(dir, 'draft.yaml')
    fs.writeFileSync(draftFile, draftText)
    const bin = path.join(__dirname, '../../../bin/spctl.js')
    const cliStart = performance.now()
    let out = ''
    try { out = execFileSync(process.execPath, [bin, '--json', 'policy', 'simulate', draftFile, '--from', file], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 }) } catch (err) {
      out = (err as { stdout?: string }).stdout ?? '' // exit 1: changes
    }
    const cliMs = performance.now() - cliStart
    const cli = JSON.parse(out) as { replayed: number, changed: number }
    if (cli.replayed !== n || cli.changed !== s.changed) throw new Error(`spctl replayed ${cli.replayed}, ${cli.changed} changes`)
    ctx.report({ name: `spctl policy simulate --from, ${n} decisions`, value: Math.round(cliMs), unit: 'ms', baseline: 'goal (issue 20)', baseline_value: n / 100, note: `whole process; goal ${cliMs <= n / 100 ? 'met' : 'MISSED'}` })
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}
