// Child process of the decisions RPC benchmark: serves the baselines in their own process, as spd is in its own.
// A bare msgpack echo over TLS 1.3 (lib/channel/echo.ts listenBareEcho) and a Channel answering Ping with a fixed
// reply (useEcho). Prints one JSON line {id, bare, channel} (ports) and runs until stdin closes or SIGTERM.
import { generateIdentity } from '../../lib/crypto/identity'
import { listen } from '../../lib/channel/tls'
import { listenBareEcho, useEcho } from '../../lib/channel/echo'

async function main (): Promise<void> {
  const identity = generateIdentity()
  const bare = await listenBareEcho(identity)
  const channel = await listen({ identity, authorize: () => 'session', onChannel: useEcho })
  const stop = (): void => { void Promise.all([bare.close(), channel.close()]).then(() => process.exit(0)) }
  process.stdin.on('end', stop).resume()
  process.once('SIGTERM', stop)
  process.stdout.write(JSON.stringify({ id: identity.id, bare: bare.address().port, channel: channel.address().port }) + '\n')
}

main().catch(err => { process.stderr.write(`echo-server: ${(err as Error).stack ?? String(err)}\n`); process.exit(1) })
