// Process memory: gives the C heap's free pages back to the kernel now and then (native/memory.cc says why).
import { raw } from './binding'

/** Free C-heap pages back to the kernel now; true when any went back. */
export function trimHeap (): boolean { return raw.trimHeap() }

/** How often the daemons (pemfs mount, spd start) trim. */
export const HEAP_TRIM_MS = 1000

/**
 * Trims the C heap every `everyMs` (an unref'd timer; returns its stop function). Measured on the pemfs daemon: a
 * trim takes well under a millisecond, and without it the heap kept 40 MiB of freed buffers after a burst of I/O.
 */
export function trimHeapEvery (everyMs = HEAP_TRIM_MS): () => void {
  const timer = setInterval(trimHeap, everyMs)
  timer.unref()
  return () => clearInterval(timer)
}
