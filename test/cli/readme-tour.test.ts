// The README's quick tour, run as it stands: the test takes the shell block under "Quick tour by hand" and runs every
// command after its build line (the suite is built already) with `set -e`, as root, in namespaces of its own — a
// network namespace (its fixed loopback ports collide with nothing), a mount namespace with tmpfs over /tmp and /srv
// (its paths touch nothing of the machine's) and a PID namespace (whatever it leaves running ends with it). HOME and
// PEMFS_CONFIG_DIR point into that /tmp, so the admin's and the host's configuration are the tour's own.
import test from 'ava'
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { ROOT } from '../../scripts/procs'

const BUILD = 'npm ci && npm run build'

/** The commands of the README's quick tour, without its build line. */
function tour (): string {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8')
  const block = /## Quick tour by hand\n[\s\S]*?```sh\n([\s\S]*?)```/.exec(readme)?.[1]
  if (block === undefined) throw new Error('README.md has no sh block under "Quick tour by hand"')
  const lines = block.split('\n')
  if (lines[0] !== BUILD) throw new Error(`the tour's first line is not '${BUILD}': ${lines[0]}`)
  return lines.slice(1).join('\n')
}

const PRELUDE = [
  'set -euo pipefail',
  // The checkout may live under /tmp (CI clones there): keep it reachable through the tmpfs laid over /tmp.
  'mkdir -p /run/pem-tour-root', `mount --bind '${ROOT}' /run/pem-tour-root`,
  'mount -t tmpfs tmpfs /tmp',
  `mkdir -p '${ROOT}'`, `mount --bind /run/pem-tour-root '${ROOT}'`,
  'mount -t tmpfs tmpfs /srv',
  'ip link set lo up',
  'mkdir -p /tmp/home',
  'export HOME=/tmp/home PEMFS_CONFIG_DIR=/tmp/pemfs-config',
  "trap 'tail -n 15 /tmp/spd-*.log >&2 || true' EXIT", // the members' logs for a failing run's message
  'set -x'
].join('\n')

test('the README quick tour runs as written', async t => {
  t.timeout(240000)
  const script = tour()
  t.regex(script, /pemfs\.js mount \/srv\/data/, 'the tour is the one with a mount')
  fs.mkdirSync('/srv', { recursive: true }) // the mount point of the namespace's tmpfs
  const r = await new Promise<{ code: number | null, stdout: string, stderr: string }>(resolve => {
    const child = spawn('unshare', ['--mount', '--net', '--pid', '--fork', '--mount-proc', 'bash', '-c', `${PRELUDE}\n${script}`], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (c: Buffer) => { stdout += c.toString('utf8') })
    child.stderr.on('data', (c: Buffer) => { stderr += c.toString('utf8') })
    const timer = setTimeout(() => child.kill('SIGKILL'), 220000)
    child.on('close', code => { clearTimeout(timer); resolve({ code, stdout, stderr }) })
  })
  const tail = `${r.stdout.slice(-3000)}\n--- stderr ---\n${r.stderr.slice(-5000)}`
  t.is(r.code, 0, tail)
  t.regex(r.stderr, /\+ kill %1 %2\n/, `the last command ran: ${tail}`)
  t.regex(r.stdout, /mounted\s+\/srv\/data/, tail)
  t.regex(r.stdout, /unmounted\s+\/srv\/other/, tail)
})
