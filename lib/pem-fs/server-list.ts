// Keeps a mounted host's server list in step with the cluster: when a reply shows a configuration version newer than
// the list's, the host asks one server for the current list (Op.Servers), swaps it into the client (state of known
// servers kept) and saves it in cluster.json, so members added or removed by an admin reach every host.
import type { ClusterClient } from './client'
import { writeCluster, type ClusterFile } from './host-config'

export class ServerListWatcher {
  private listPv: number
  private busy = false
  private readonly timer: NodeJS.Timeout
  refreshes = 0

  constructor (private readonly client: ClusterClient, private readonly configDir: string, private cluster: ClusterFile, everyMs = 1000) {
    this.listPv = cluster.pv ?? 0
    this.timer = setInterval(() => { void this.check() }, everyMs)
    this.timer.unref()
  }

  /** Refresh when the client has seen a newer version than the list was fetched at. Never throws. */
  async check (): Promise<void> {
    if (this.busy || this.client.pv <= this.listPv) return
    this.busy = true
    try { await this.refresh() } finally { this.busy = false }
  }

  private async refresh (): Promise<void> {
    for (const s of this.client.servers.filter(x => x.state === 'up')) {
      try {
        const r = await this.client.serverList(s)
        if (r.servers.length === 0) continue
        this.client.replaceServers(r.servers)
        this.listPv = r.pv
        this.cluster = { ...this.cluster, servers: r.servers, pv: r.pv }
        writeCluster(this.configDir, this.cluster)
        this.refreshes++
        return
      } catch { /* try the next server; the next check tries again */ }
    }
  }

  close (): void { clearInterval(this.timer) }
}
