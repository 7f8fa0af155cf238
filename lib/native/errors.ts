// Native errors -> PemError: the addon throws Errors carrying a string `code` from lib/wire/errors.ts.
import { PemError, isErrorCode } from '../wire/errors'

/** Converts anything the addon threw into a PemError, keeping its code and extra fields (e.g. `index`). */
export function fromNative (err: unknown): PemError {
  if (err instanceof PemError) return err
  const code = (err as { code?: unknown } | null)?.code
  const message = err instanceof Error ? err.message : String(err)
  const e = new PemError(isErrorCode(code) ? code : 'ENGINE_ERR_OPENSSL', message, { cause: err })
  const index = (err as { index?: unknown } | null)?.index
  if (typeof index === 'number') (e as PemError & { index?: number }).index = index
  return e
}

/** Runs a native call, rethrowing its error as a PemError. */
export function call<T> (fn: () => T): T {
  try {
    return fn()
  } catch (err) {
    throw fromNative(err)
  }
}
