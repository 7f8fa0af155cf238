// Cryptography of the cluster protocol: cluster-message signatures and the encrypted policy set (seal, verify, open).
// Formats: lib/wire/cluster-msg.ts and lib/wire/policy-set.ts. Like sign.ts, checks return false; callers map codes.
import crypto from 'node:crypto'
import { CLUSTER_SIG_BYTES, type RawClusterMsg } from '../wire/cluster-msg'
import { PemError } from '../wire/errors'
import { encodeSetUnsigned, setAadHeader, type RawPolicySet } from '../wire/policy-set'
import { AAD_CTX_POLICY_SET, SIG_CTX_CLUSTER_MSG, SIG_CTX_POLICY_SET } from './contexts'
import type { Identity } from './identity'
import { newAtRestKey, openAtRest, openSealed, sealAtRest, sealTo } from './seal'
import { sign, verify } from './sign'

export const CLUSTER_ID_BYTES = 32
export const DATA_KEY_BYTES = 32

export function sha256 (bytes: Uint8Array): Buffer { return crypto.createHash('sha256').update(bytes).digest() }

function checkClusterId (clusterId: Buffer): void {
  if (!Buffer.isBuffer(clusterId) || clusterId.length !== CLUSTER_ID_BYTES) throw new PemError('PEM_ERR_BAD_ARGUMENT', 'cluster id must be 32 bytes')
}

/** What a cluster message signature covers: cluster id ‖ type ‖ the message bytes before the signature. */
function clusterMsgInput (clusterId: Buffer, unsigned: Buffer): Buffer {
  return Buffer.concat([clusterId, unsigned.subarray(0, 1), unsigned])
}

/** Append the sender's signature to an unsigned message (lib/wire/cluster-msg.ts encodeUnsigned). */
export function signClusterMsg (clusterId: Buffer, unsigned: Buffer, signKey: Buffer): Buffer {
  checkClusterId(clusterId)
  return Buffer.concat([unsigned, sign(SIG_CTX_CLUSTER_MSG, clusterMsgInput(clusterId, unsigned), signKey)])
}

/** True only when the received bytes carry a valid signature by `publicKey` for this cluster. */
export function verifyClusterMsg (clusterId: Buffer, raw: RawClusterMsg, publicKey: Buffer): boolean {
  if (clusterId?.length !== CLUSTER_ID_BYTES || raw.signature.length !== CLUSTER_SIG_BYTES) return false
  return verify(SIG_CTX_CLUSTER_MSG, clusterMsgInput(clusterId, raw.signed), raw.signature, publicKey)
}

export interface SetRecipient { digest: Buffer, publicKey: Buffer }

/**
 * Build a signed encrypted policy set. `recipients[0]` must be the source itself. A fresh data key is drawn for
 * every call, wrapped to each recipient's key, and used once to seal `plaintext`.
 */
export function sealPolicySet (clusterId: Buffer, source: Identity, version: number, origin: Buffer, plaintext: Buffer, recipients: SetRecipient[]): Buffer {
  checkClusterId(clusterId)
  if (recipients.length === 0 || !recipients[0].publicKey.equals(source.publicKey)) throw new PemError('PEM_ERR_BAD_ARGUMENT', 'the source must be the first recipient')
  const contentDigest = sha256(plaintext)
  const dataKey = newAtRestKey()
  const aad = Buffer.concat([Buffer.from(AAD_CTX_POLICY_SET), setAadHeader(version, contentDigest, origin)])
  const sealed = sealAtRest(dataKey, plaintext, aad)
  const wrappedKeys = recipients.map(r => sealTo(r.publicKey, dataKey))
  const unsigned = encodeSetUnsigned({ version, contentDigest, origin, index: recipients.map(r => r.digest), wrappedKeys, sealed })
  return Buffer.concat([unsigned, sign(SIG_CTX_POLICY_SET, Buffer.concat([clusterId, unsigned]), source.signKey)])
}

export function verifyPolicySet (clusterId: Buffer, raw: RawPolicySet, sourceKey: Buffer): boolean {
  if (clusterId?.length !== CLUSTER_ID_BYTES) return false
  return verify(SIG_CTX_POLICY_SET, Buffer.concat([clusterId, raw.signed]), raw.signature, sourceKey)
}

/** Unwrap row `row`'s data key with `identity` and open the configuration; false on any failure (never throws). */
export function openPolicySetRow (identity: Identity, raw: RawPolicySet, row: number): Buffer | false {
  const dataKey = openSealed(identity, raw.wrappedKeys[row])
  if (dataKey === false || dataKey.length !== DATA_KEY_BYTES) return false
  try {
    const plain = openAtRest(dataKey, raw.sealed, Buffer.concat([Buffer.from(AAD_CTX_POLICY_SET), raw.aadHeader]))
    return sha256(plain).equals(raw.contentDigest) ? plain : false
  } catch {
    return false
  }
}
