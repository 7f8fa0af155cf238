// Child process for the data benchmark's floor: a Channel server whose handler echoes every request body
// (lib/channel/echo.ts). Prints {id, port} as one JSON line once it listens; runs until killed.
import { useEcho } from '../../lib/channel/echo'
import { listen } from '../../lib/channel/tls'
import { generateIdentity } from '../../lib/crypto/identity'

const identity = generateIdentity()
listen({ host: '127.0.0.1', port: 0, identity, authorize: () => 'session', onChannel: useEcho })
  .then(s => process.stdout.write(JSON.stringify({ id: identity.id, port: s.address().port }) + '\n'))
  .catch((err: Error) => { process.stderr.write(`echo child: ${err.message}\n`); process.exit(1) })
