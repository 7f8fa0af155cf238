// A child node process that serves a FUSE mount for a test (a test/helpers/*-serve.js script taking one JSON config
// argument): its JSON lines on stdout, commands on stdin, and a stop that leaves nothing mounted.
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import readline from 'node:readline'

export const isMounted = (dir: string): boolean => fs.readFileSync('/proc/self/mounts', 'utf8').split('\n').some(l => l.split(' ')[1] === dir)

export class ServeChild {
  readonly child: ChildProcess
  private readonly lines: string[] = []
  private readonly waiting: Array<(l: string) => void> = []

  private constructor (script: string, cfg: Record<string, unknown>) {
    this.child = spawn(process.execPath, [script, JSON.stringify(cfg)], { stdio: ['pipe', 'pipe', 'inherit'] })
    readline.createInterface({ input: this.child.stdout as NodeJS.ReadableStream }).on('line', l => {
      const w = this.waiting.shift()
      if (w !== undefined) w(l); else this.lines.push(l)
    })
  }

  /** Starts `script` and waits for its {"ready":true}. */
  static async start (script: string, cfg: Record<string, unknown>): Promise<ServeChild> {
    const s = new ServeChild(script, cfg)
    const first = await s.next(15000)
    if (first.ready !== true) throw new Error(`serving process: ${JSON.stringify(first)}`)
    return s
  }

  async next (timeoutMs = 10000): Promise<Record<string, unknown>> {
    const l = this.lines.shift() ?? await new Promise<string>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('no answer from the serving process')), timeoutMs)
      this.waiting.push(v => { clearTimeout(t); resolve(v) })
    })
    return JSON.parse(l) as Record<string, unknown>
  }

  async command (cmd: string): Promise<Record<string, unknown>> {
    this.child.stdin?.write(cmd + '\n')
    return await this.next()
  }

  /** Its exit code once it has exited (waiting up to timeoutMs); null when it is still running or died by a signal. */
  async exited (timeoutMs: number): Promise<number | null> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return this.child.exitCode
    return await new Promise(resolve => {
      const t = setTimeout(() => resolve(null), timeoutMs)
      this.child.once('exit', code => { clearTimeout(t); resolve(code) })
    })
  }

  /** SIGTERM (clean unmount), then SIGKILL, then umount -l. */
  async stop (dir: string): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill('SIGTERM')
      if (await this.exited(3000) === null && this.child.signalCode === null) { this.child.kill('SIGKILL'); await this.exited(3000) }
    }
    for (let i = 0; i < 30 && isMounted(dir); i++) await new Promise(resolve => setTimeout(resolve, 100))
    if (isMounted(dir)) await new Promise(resolve => execFile('umount', ['-l', dir], { timeout: 5000 }, resolve))
  }
}
