// The pemfs daemon's log: one JSON line per event in spd's format (pino: level, time, msg, and the guard point as
// spd logs its member name), on stderr — the mount's log file under the config dir for a daemon. Paths are as the
// policy sees them under the guard point; /proc/self/fd links, which name nothing a reader can find, are replaced.
// One failure seen by several layers (the decision, the io hook) is one line: warn() drops a repeat of the same
// code and message within a second and counts it in the next line that gets through.
import pino from 'pino'

let current: pino.Logger = pino({ base: {} }, pino.destination({ fd: 2, sync: true }))

/** The log of this process (one mount per process). */
export function pemfsLog (): pino.Logger { return current }

/** From now on every line names the guard point `dir` (called once the mount is known). */
export function logGuard (dir: string): void {
  current = pino({ base: { guard: dir } }, pino.destination({ fd: 2, sync: true }))
}

/** `message` with each /proc/self/fd/N[/...] link (the daemon's own view of a backing file) replaced by `label`. */
export function withoutFdLinks (message: string, label: string): string {
  return message.replace(/\/proc\/self\/fd\/\d+(\/[^\s'",)]*)?/g, label)
}

const REPEAT_MS = 1000
const lastWarned = new Map<string, { at: number, dropped: number }>()

/** A warning, once per second per code and message; `repeated` counts the ones dropped since the last line. */
export function warn (fields: { code?: string, [k: string]: unknown }, message: string): void {
  const key = `${fields.code ?? ''}|${message}`
  const now = Date.now()
  const last = lastWarned.get(key)
  if (last !== undefined && now - last.at < REPEAT_MS) { last.dropped++; return }
  if (lastWarned.size > 256) lastWarned.clear() // distinct messages (paths) do not pile up
  lastWarned.set(key, { at: now, dropped: 0 })
  current.warn(last !== undefined && last.dropped > 0 ? { ...fields, repeated: last.dropped } : fields, message)
}
