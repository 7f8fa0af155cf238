// The default policy of the standalone mode: every guard point encrypted under one key `default`, every user permitted.
import { stringify } from 'yaml'

export interface DefaultPolicyOptions {
  guards: string[] // host directories to guard
  compression?: 'none' | 'zstd' | 'lz4' | 'zlib'
  hide?: string[] // paths (from the guard point's root) denied to everyone: the embedded store file
  placement?: 'host' | 'appliance' // where the data is sealed (docs/POLICY.md); default: the policy's default, appliance
}

/**
 * YAML text of the default policy. Every user of the enrolled hosts is permitted every action on every guard point,
 * and the data is encrypted under key `default`. (In the standalone mode the only enrolled host is the local one.)
 */
export function defaultPolicy (opts: DefaultPolicyOptions): string {
  const guards: Record<string, unknown> = {}
  for (const g of opts.guards) guards[g] = { description: 'guarded by the standalone default policy' }
  const doc = {
    format: 1,
    description: 'standalone default: encrypt everything under key default, permit every user',
    keys: [{ name: 'default', description: 'data key of every guard point' }],
    guards,
    rules: [...(opts.hide !== undefined && opts.hide.length > 0
      ? [{ id: 'embedded-store-file', description: 'the embedded store file is pemfs\'s own, not the applications\'', actions: 'all', resources: { files: opts.hide }, effect: 'deny' }]
      : []), {
      id: 'convert-as-root',
      description: 'root may start pemfs encrypt, rekey and decrypt (an admin-level action: `all` does not cover it)',
      actions: ['convert'],
      users: { uids: [0] },
      effect: 'permit'
    }, {
      id: 'default-encrypt',
      description: 'every user, every action, data sealed under key default',
      actions: 'all',
      effect: 'apply_key(default)',
      compression: opts.compression ?? 'none',
      ...(opts.placement !== undefined ? { placement: opts.placement } : {})
    }]
  }
  return '# pemfs policy (docs/POLICY.md)\n' + stringify(doc)
}
