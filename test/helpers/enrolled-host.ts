// One spd on loopback with a policy applied and one host enrolled through `pemfs enroll`, and that host's
// ClusterClient: the setup of the spd tests that speak the host protocol (spd, preauth-flood, spd-frame-limits).
import path from 'node:path'
import { ClusterClient } from '../../lib/pem-fs/client'
import { hostIdentity, readCluster } from '../../lib/pem-fs/host-config'
import { cli, initSpd, loginSpctl, startSpd, stopAll, stopSpd, writeFile, type RunResult, type Spd } from '../../scripts/procs'

export interface EnrolledHost {
  spd: Spd
  spctl: (args: string[]) => Promise<RunResult>
  /** The host's config dir (identity, cluster list). */
  hostDir: string
  client: ClusterClient
}

/** Starts spd `name` (init options `extra`), applies `policy` and enrolls host `host`; files go under `work`. */
export async function spdWithEnrolledHost (work: string, name: string, extra: Record<string, unknown>, policy: string, host: string): Promise<EnrolledHost> {
  const spd = await initSpd(name, extra)
  await startSpd(spd)
  const spctl = await loginSpctl(spd)
  const applied = await spctl(['policy', 'apply', writeFile(work, 'policy.yaml', policy)])
  if (applied.code !== 0) throw new Error(applied.stderr)
  const token = JSON.parse((await spctl(['--json', 'host', 'add', host])).stdout).token as string
  const hostDir = path.join(work, 'host')
  const enrolled = await cli('pemfs', ['enroll', '--cluster', spd.listen, '--token', token, '--config-dir', hostDir, '--name', host])
  if (enrolled.code !== 0) throw new Error(enrolled.stderr)
  return { spd, spctl, hostDir, client: new ClusterClient(hostIdentity(hostDir), readCluster(hostDir).servers) }
}

/** test.after.always of those tests: the client closed, spd stopped, every process of the test gone. */
export async function stopEnrolledHost (e: EnrolledHost | undefined): Promise<void> {
  e?.client.close()
  if (e !== undefined) await stopSpd(e.spd)
  stopAll()
}
