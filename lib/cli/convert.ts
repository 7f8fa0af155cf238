// `pemfs encrypt | rekey | decrypt PATH`: converts the files of a live guard point in place (lib/pem-fs/convert.ts),
// with progress on a terminal, plain lines otherwise, JSON lines with --json, a --rate limit and --max-load back-off;
// registered with the mount daemon for the whole run (lib/pem-fs/conversions.ts), which shows it in `pemfs status`.
import type { Command } from 'commander'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { Converter, type ConvertMode, type FileResult } from '../pem-fs/convert'
import { registerConversion, type ConversionProgress } from '../pem-fs/conversions'
import { readControl, runFiles } from '../pem-fs/daemon'
import { defaultConfigDir } from '../pem-fs/host-config'
import { PemError } from '../wire/errors'
import { printObject, run } from './common'
import { STORE_FILE } from './embedded-store'
import { Progress } from './progress'

interface ConvertFlags { configDir: string, rate?: string, wait: string, maxLoad?: string, json?: boolean }

const WHAT: Record<ConvertMode, string> = {
  encrypt: 'encrypt the plaintext files the policy encrypts (left from before the guard point)',
  rekey: 'rewrite encrypted files whose key version is not the one new files get now',
  decrypt: 'rewrite encrypted files as plaintext underneath (to leave the guard point)'
}

/**
 * A path from which this process reaches the guard point's backing directory. With --backing it is that directory;
 * guarded in place it is under the mount, so it is reached through the daemon's own descriptor of it
 * (/proc/PID/fd/N, which only root may follow), opened here once.
 */
function backingRootOf (guard: string, backing: string, daemonPid: number): string {
  if (backing !== guard) return backing
  if (process.getuid?.() !== 0) throw new PemError('PEM_ERR_AUTH', `${guard} is guarded in place: its files underneath are reached through the mount daemon's descriptor, which needs root`)
  const mountDev = fs.statSync(guard).dev
  const fds = fs.readdirSync(`/proc/${daemonPid}/fd`)
  for (const n of fds) {
    const link = `/proc/${daemonPid}/fd/${n}`
    try {
      if (fs.readlinkSync(link) !== backing) continue
      const st = fs.statSync(link)
      if (!st.isDirectory() || st.dev === mountDev) continue
      return `/proc/self/fd/${fs.openSync(link, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY)}`
    } catch {}
  }
  throw new PemError('PEM_ERR_NOT_FOUND', `the mount daemon of ${guard} (pid ${daemonPid}) holds no descriptor of its backing directory`)
}

/**
 * Why the copy should wait now, or null: the host's 1-minute load average per CPU, or the load the least loaded spd
 * server of the mount reported (1.0 = full), above `max`.
 */
async function overLoad (max: number, controlSock: string): Promise<string | null> {
  const host = os.loadavg()[0] / Math.max(1, os.cpus().length)
  if (host > max) return `host load ${host.toFixed(2)} per CPU is above --max-load ${max}`
  const servers = ((await readControl(controlSock).catch(() => ({ servers: [] }))).servers ?? []) as Array<{ state: string, load: number | null }>
  const loads = servers.filter(s => s.state === 'up' && typeof s.load === 'number').map(s => s.load as number)
  const least = loads.length > 0 ? Math.min(...loads) : 0
  return least > max ? `spd load ${least.toFixed(2)} (the least loaded server) is above --max-load ${max}` : null
}

async function convertCommand (mode: ConvertMode, target: string, o: ConvertFlags, guardOf: (abs: string) => string): Promise<void> {
  const abs = path.resolve(target)
  const guard = guardOf(abs)
  const rate = o.rate === undefined ? 0 : Number(o.rate)
  if (!Number.isFinite(rate) || rate < 0) throw new PemError('PEM_ERR_BAD_ARGUMENT', `--rate must be a number of MB/s, not ${o.rate}`)
  const wait = Number(o.wait)
  if (!Number.isFinite(wait) || wait < 0) throw new PemError('PEM_ERR_BAD_ARGUMENT', `--wait must be a number of seconds, not ${o.wait}`)
  const maxLoad = o.maxLoad === undefined ? undefined : Number(o.maxLoad)
  if (maxLoad !== undefined && !(Number.isFinite(maxLoad) && maxLoad > 0)) throw new PemError('PEM_ERR_BAD_ARGUMENT', `--max-load must be a positive number (1.0 = full load), not ${o.maxLoad}`)
  const sockets = runFiles(path.resolve(o.configDir), guard)
  const status = await readControl(sockets.sock)
  const daemonPid = Number(status.pid)
  const backing = String(status.backing)
  const json = o.json === true
  const emit = (event: Record<string, unknown>): void => { process.stdout.write(JSON.stringify(event) + '\n') }
  let filesDone = 0
  let progress: Progress | undefined
  let lastJson = 0
  let total = { files: 0, bytes: 0 }
  // Registered for the whole run: the mount serves this process its own names (the temporary copies) and shows the run.
  const link = await registerConversion(sockets.convertSock, mode, abs)
  const now: ConversionProgress = { files: 0, totalFiles: 0, bytes: 0, totalBytes: 0, converted: 0, convertedBytes: 0, paused: null }
  const report = (): void => { link.report({ ...now, files: filesDone, totalFiles: total.files, totalBytes: total.bytes }) }
  const reporter = setInterval(report, 1000)
  let loadChecked = 0
  const pace = maxLoad === undefined ? undefined : async (): Promise<void> => {
    for (;;) {
      if (Date.now() - loadChecked >= 1000) {
        loadChecked = Date.now()
        const why = await overLoad(maxLoad, sockets.sock)
        if (why !== now.paused) {
          now.paused = why
          report()
          if (json) emit({ event: why === null ? 'resumed' : 'paused', reason: why })
        }
      }
      if (now.paused === null) return
      await new Promise(resolve => setTimeout(resolve, 1000))
    }
  }
  const converter = new Converter({
    mode,
    mountDir: guard,
    backingRoot: backingRootOf(guard, backing, daemonPid),
    backingPath: backing,
    sub: abs.slice(guard.length + 1),
    ignorePids: new Set([daemonPid]),
    uid: process.getuid?.() ?? 0,
    exclude: new Set([STORE_FILE, `${STORE_FILE}.tmp`]),
    rateBytes: rate * 1e6,
    waitMs: wait * 1000,
    pace,
    onFile: (r: FileResult) => {
      filesDone++
      if (r.state === 'converted') { now.converted++; now.convertedBytes += r.bytes }
      if (json) emit({ event: 'file', ...r })
      else if (r.state === 'skipped' || r.state === 'failed') process.stderr.write(`${progress !== undefined && process.stderr.isTTY ? '\r\x1b[K' : ''}pemfs ${mode}: ${r.state} ${r.path}: ${r.reason ?? ''}\n`)
    },
    onBytes: (done: number) => {
      now.bytes = done
      progress?.update(done, `${filesDone}/${total.files} files`)
      if (json && Date.now() - lastJson >= 1000) {
        lastJson = Date.now()
        emit({ event: 'progress', bytes: done, totalBytes: total.bytes, files: filesDone, totalFiles: total.files })
      }
    }
  })
  let summary
  try {
    const files = await converter.plan()
    total = { files: files.length, bytes: files.reduce((s, f) => s + f.bytes, 0) }
    report()
    if (json) emit({ event: 'plan', mode, guard, path: abs, ...total, leftoversRemoved: converter.leftoversRemoved })
    else progress = new Progress({ total: total.bytes, label: `pemfs ${mode}`, unit: 'bytes' })
    summary = await converter.run(files)
    report()
  } finally {
    clearInterval(reporter)
    link.close()
  }
  if (json) emit({ event: 'done', ...summary })
  else {
    progress?.update(summary.bytes, `${filesDone}/${total.files} files`)
    progress?.finish()
    printObject({ ...summary }, false)
  }
  if (summary.skipped + summary.failed > 0) {
    if (!json) process.stderr.write(`pemfs ${mode}: ${summary.skipped + summary.failed} file(s) not converted (listed above); run it again once that is resolved\n`)
    process.exitCode = 1
  }
}

/** Adds encrypt, rekey and decrypt to the pemfs program. */
export function addConvertCommands (program: Command, guardOf: (abs: string) => string): void {
  for (const mode of ['encrypt', 'rekey', 'decrypt'] as const) {
    program.command(`${mode} <path>`)
      .description(`${WHAT[mode]}, under PATH (a guard point or inside one), while applications keep using them`)
      .option('--config-dir <dir>', 'host config directory (the one the mount was started with)', defaultConfigDir())
      .option('--rate <MBps>', 'at most this many MB (10^6 bytes) per second, over the whole run')
      .option('--wait <seconds>', 'how long to wait for a file that another process has open for writing, before skipping it', '30')
      .option('--max-load <fraction>', 'pause while the host\'s load average per CPU, or the load the least loaded spd server reports, is above this (1.0 = full)')
      .option('--json', 'print JSON lines: plan, file, progress (every second), paused/resumed, done')
      .action((p: string, o: ConvertFlags) => run(async () => await convertCommand(mode, p, o, guardOf)))
  }
}
