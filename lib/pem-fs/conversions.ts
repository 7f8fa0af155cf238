// Running conversions as the mount daemon sees them (docs/PEMFS.md "A running conversion"): `pemfs encrypt | rekey |
// decrypt` registers over the guard point's convert socket (run/<id>.convert.sock, next to the control socket), is
// then served pemfs's own names by the mount (native/fuse/reserved.h) for as long as that connection lasts, and sends
// its progress on it; `pemfs status` and the Prometheus metrics show it. A registration is a decision first: the
// policy's admin-level action `convert` on the path, for the converting process's attributes (decided and audited
// by spd like any other). One JSON object per line:
//   converter → daemon  {"pid":N,"mode":"encrypt","path":"/srv/data"}                         (first line)
//   daemon → converter  {"ok":true} | {"error":"…","code":"PEM_ERR_…"}
//   converter → daemon  {"files":n,"totalFiles":N,"bytes":b,"totalBytes":B,"converted":c,"convertedBytes":cb,"paused":"…"|null}
import fs from 'node:fs'
import net from 'node:net'
import { PemError } from '../wire/errors'

export interface ConversionProgress {
  files: number
  totalFiles: number
  bytes: number
  totalBytes: number
  converted: number
  convertedBytes: number
  /** Why the run waits (load above --max-load), or null. */
  paused: string | null
}

interface Running extends ConversionProgress { pid: number, mode: string, path: string, started: number }

const MODES = new Set(['encrypt', 'rekey', 'decrypt'])
const LINE_MAX = 4096

/** The daemon's side: who converts now, and what every run converted since the mount started. */
export class Conversions {
  private readonly running = new Set<Running>()
  private convertedFiles = 0
  private convertedBytes = 0

  /**
   * `authorize` throws when the policy refuses process `pid` the `convert` action on `target`; `reserve` gets the
   * pids served pemfs's own names after each change (FuseSession.reservedPids); `ended` is called when a registered
   * conversion ends (done, failed or killed: its connection closed).
   */
  constructor (
    private readonly authorize: (pid: number, target: string) => Promise<void>,
    private readonly reserve: (pids: number[]) => void,
    private readonly ended: () => void = () => {}
  ) {}

  serve (file: string): net.Server {
    fs.rmSync(file, { force: true })
    const server = net.createServer(sock => { this.accept(sock) })
    server.listen(file)
    server.unref()
    return server
  }

  private accept (sock: net.Socket): void {
    let text = ''
    let run: Running | undefined
    let asked = false // the first line is being decided: nothing else is read until it is answered
    const refuse = (why: string, code = 'PEM_ERR_BAD_ARGUMENT'): void => { sock.end(JSON.stringify({ error: why, code }) + '\n') }
    sock.on('data', (c: Buffer) => {
      text += c.toString('utf8')
      if (text.length > LINE_MAX && !text.includes('\n')) { sock.destroy(); return }
      let nl: number
      while ((nl = text.indexOf('\n')) >= 0) {
        const line = text.slice(0, nl)
        text = text.slice(nl + 1)
        let msg: Record<string, unknown>
        try { msg = JSON.parse(line) } catch { refuse('not JSON'); return }
        if (run === undefined) {
          if (asked) { refuse('wait for the answer'); return }
          asked = true
          const pid = msg.pid
          if (typeof pid !== 'number' || !Number.isInteger(pid) || pid <= 0 || !fs.existsSync(`/proc/${pid}`)) { refuse(`no process ${String(pid)}`); return }
          const mode = msg.mode
          const target = msg.path
          if (typeof mode !== 'string' || !MODES.has(mode) || typeof target !== 'string') { refuse('mode and path wanted'); return }
          this.authorize(pid, target).then(() => {
            if (sock.destroyed) return
            run = { pid, mode, path: target, started: Date.now(), files: 0, totalFiles: 0, bytes: 0, totalBytes: 0, converted: 0, convertedBytes: 0, paused: null }
            this.running.add(run)
            this.reserveNow()
            sock.write(JSON.stringify({ ok: true }) + '\n')
          }, err => { const e = PemError.from(err); refuse(e.message, e.code) })
          return // what follows comes after the answer
        }
        this.progress(run, msg)
      }
    })
    sock.on('error', () => {})
    sock.on('close', () => {
      if (run === undefined) return
      this.running.delete(run)
      this.reserveNow()
      this.ended()
    })
  }

  private progress (run: Running, msg: Record<string, unknown>): void {
    const n = (k: keyof ConversionProgress): number => { const v = msg[k]; return typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : Number(run[k]) }
    const converted = Math.max(run.converted, n('converted'))
    const convertedBytes = Math.max(run.convertedBytes, n('convertedBytes'))
    this.convertedFiles += converted - run.converted
    this.convertedBytes += convertedBytes - run.convertedBytes
    Object.assign(run, { files: n('files'), totalFiles: n('totalFiles'), bytes: n('bytes'), totalBytes: n('totalBytes'), converted, convertedBytes, paused: typeof msg.paused === 'string' ? msg.paused : null })
  }

  private reserveNow (): void { this.reserve([...new Set([...this.running].map(r => r.pid))]) }

  /** What `pemfs status` adds: the running conversions (with rate and ETA) and the counters since the mount started. */
  status (): Record<string, unknown> {
    const now = Date.now()
    return {
      convertedFiles: this.convertedFiles,
      convertedBytes: this.convertedBytes,
      conversions: [...this.running].map(r => {
        const rate = r.bytes / Math.max(0.001, (now - r.started) / 1000)
        return {
          pid: r.pid,
          mode: r.mode,
          path: r.path,
          files: r.files,
          totalFiles: r.totalFiles,
          bytes: r.bytes,
          totalBytes: r.totalBytes,
          bytesPerSecond: Math.round(rate),
          etaSeconds: rate > 0 ? Math.round((r.totalBytes - r.bytes) / rate) : null,
          paused: r.paused
        }
      })
    }
  }
}

/** The converter's side: a registered conversion; `report` sends progress, `close` ends it (so does the process's death). */
export interface ConversionLink { report: (p: ConversionProgress) => void, close: () => void }

export async function registerConversion (file: string, mode: string, target: string, timeoutMs = 3000): Promise<ConversionLink> {
  return await new Promise((resolve, reject) => {
    const sock = net.connect(file)
    let text = ''
    const fail = (err: PemError): void => { clearTimeout(timer); sock.destroy(); reject(err) }
    const timer = setTimeout(() => fail(new PemError('PEM_ERR_TIMEOUT', `${file} did not answer`)), timeoutMs)
    sock.on('error', err => fail(new PemError('PEM_ERR_NOT_FOUND', `the mount daemon takes no conversion at ${file}: ${err.message} (a daemon started by an older pemfs: remount)`)))
    sock.on('data', c => {
      text += c.toString('utf8')
      if (!text.includes('\n')) return
      clearTimeout(timer)
      const answer = JSON.parse(text) as { ok?: boolean, error?: string, code?: string }
      if (answer.ok !== true) {
        sock.destroy()
        reject(new PemError(answer.code === 'PEM_ERR_POLICY_DENY' ? 'PEM_ERR_POLICY_DENY' : 'PEM_ERR_BAD_ARGUMENT', `the mount daemon refused the conversion: ${answer.error ?? text}`))
        return
      }
      sock.removeAllListeners('data')
      sock.on('error', () => {})
      resolve({ report: p => { sock.write(JSON.stringify(p) + '\n') }, close: () => { sock.end() } })
    })
    sock.write(JSON.stringify({ pid: process.pid, mode, path: target }) + '\n')
  })
}
