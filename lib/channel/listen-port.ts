// Picks a free loopback TCP port for a listener that binds later (spd init stores it; spd start binds it).
// The port comes from below the kernel's ephemeral range (ip_local_port_range): a port from inside it can be taken in
// the meantime as the local end of any outgoing connection on the machine, and the later bind then fails EADDRINUSE.
import fs from 'node:fs'
import net from 'node:net'

const LOW = 10000

/** The first port of the kernel's ephemeral range (32768 when it cannot be read). */
function ephemeralLow (): number {
  try {
    const lo = Number(fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0])
    return Number.isInteger(lo) && lo > LOW + 1000 ? lo : 32768
  } catch { return 32768 }
}

async function bindable (port: number): Promise<boolean> {
  return await new Promise(resolve => {
    const s = net.createServer()
    s.once('error', () => resolve(false))
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)))
  })
}

/** A loopback port that is free now and that no outgoing connection will be given: random in [10000, ephemeral low). */
export async function listenPort (): Promise<number> {
  const high = ephemeralLow()
  for (let i = 0; i < 64; i++) {
    const port = LOW + Math.floor(Math.random() * (high - LOW))
    if (await bindable(port)) return port
  }
  throw new Error(`no free loopback port in ${LOW}..${high - 1} after 64 tries`)
}
