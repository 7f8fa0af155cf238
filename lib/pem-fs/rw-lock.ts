// A fair read/write lock for one encrypted file: reads share it, writes and truncations hold it alone, and waiters
// are served in arrival order (a stream of readers cannot starve a writer).
interface Waiter { write: boolean, go: () => void }

export class RwLock {
  private readers = 0
  private writer = false
  private readonly queue: Waiter[] = []

  async shared<T>(fn: () => Promise<T>): Promise<T> {
    await this.acquire(false)
    try { return await fn() } finally { this.readers--; this.drain() }
  }

  async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    await this.acquire(true)
    try { return await fn() } finally { this.writer = false; this.drain() }
  }

  private async acquire (write: boolean): Promise<void> {
    if (this.queue.length === 0 && !this.writer && (!write || this.readers === 0)) {
      if (write) this.writer = true; else this.readers++
      return
    }
    await new Promise<void>(go => this.queue.push({ write, go }))
  }

  private drain (): void {
    while (this.queue.length > 0 && !this.writer) {
      const next = this.queue[0]
      if (next.write) {
        if (this.readers > 0) return
        this.writer = true
      } else this.readers++
      this.queue.shift()
      next.go()
    }
  }
}
