// Process memory of the daemons: glibc's malloc tuned at start, and the C heap's free pages given back to the kernel
// now and then (native/memory.cc).
import { raw } from './binding'

/** Free C-heap pages back to the kernel now; true when any went back. */
export function trimHeap (): boolean { return raw.trimHeap() }

/** How often the daemons (pemfs mount, spd start) trim. */
export const HEAP_TRIM_MS = 1000

/**
 * glibc malloc settings of the daemons (measured on the encrypted mount with the soak's cycle, docs/PEMFS.md):
 * - two arenas instead of one per thread up to 8 per core: the libuv pool (16 threads in pemfs) and the FUSE threads
 *   each kept freed memory in arenas of their own (100 s, twice each, alternating: RSS peak 111 / 112 MiB → 106 /
 *   104, cycles done 66 / 64 → 71 / 71);
 * - blocks of 1 MiB and more always mmap'd, so they go back to the kernel when freed: glibc otherwise raises its mmap
 *   threshold to the largest block freed so far, and the 1–2 MiB buffers of data frames then stay in the heap
 *   between trims (180 s: peak 137 MiB → 105 and 108; fio rates within the noise of an alternating A/B).
 * Set from inside the process, first thing in a daemon command, so they hold however it is launched; arenas that
 * threads took before that stay (the cap stops new ones).
 */
export const HEAP_TUNING = { arenas: 2, mmapThresholdBytes: 1024 * 1024 } as const

let tuned = false

/** Whether this process's malloc runs with HEAP_TUNING (`pemfs status` reports it). */
export function heapTuned (): boolean { return tuned }

/**
 * For a daemon: applies HEAP_TUNING now and trims the C heap every `everyMs` (an unref'd timer; returns its stop
 * function). Measured on the pemfs daemon: a trim takes well under a millisecond, and without it the heap kept
 * 40 MiB of freed buffers after a burst of I/O.
 */
export function manageHeap (everyMs = HEAP_TRIM_MS): () => void {
  tuned = raw.tuneHeap(HEAP_TUNING.arenas, HEAP_TUNING.mmapThresholdBytes)
  const timer = setInterval(trimHeap, everyMs)
  timer.unref()
  return () => clearInterval(timer)
}
