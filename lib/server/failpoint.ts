// Crash failpoints for tests (CHECKLIST 19): when PEM_FAILPOINT names a step, the process kills itself with SIGKILL
// right there, as a power cut would, so a test can restart it and check what survived. Unset: a no-op.
const armed = process.env.PEM_FAILPOINT ?? ''

/** Die here if the environment names this step (e.g. PEM_FAILPOINT=store:before-rename). */
export function failpoint (step: string): void {
  if (armed !== '' && armed === step) process.kill(process.pid, 'SIGKILL')
}
