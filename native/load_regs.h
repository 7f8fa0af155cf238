// Load registers: CPU (/proc/stat), NIC (/sys/class/net/IF), crypto busy time, written into a caller's Float64Array.
// JS API (see lib/native/load-regs.ts): readRegs(out), setNicInterface(name), cryptoBusyAdd(ns), REG_* indices.
#pragma once

#include <napi.h>

#include <cstdint>
#include <string>

namespace pem::regs {

// Register indices. ONLY APPEND: lib/native reads them from the exports, never hard-codes them.
enum Reg : int {
  kRegCpuBusyJiffies = 0,   // aggregate "cpu" line: user+nice+system+irq+softirq+steal
  kRegCpuTotalJiffies = 1,  // busy + idle + iowait
  kRegNicRxBytes = 2,       // /sys/class/net/IF/statistics/rx_bytes
  kRegNicTxBytes = 3,       // /sys/class/net/IF/statistics/tx_bytes
  kRegNicSpeedMbps = 4,     // /sys/class/net/IF/speed, -1 when unknown (loopback, virtual, link down)
  kRegCryptoBusyNs = 5,     // cumulative busy ns of all crypto batches in this process
  kRegCryptoThreads = 6,    // how many crypto batches can run at once (the engine pool's threads: the cores)
  kRegMonoNs = 7,           // CLOCK_MONOTONIC in ns at the time of the read
  kRegCount = 8
};

// Per-env state (lives in the addon's instance data): the chosen interface and its open sysfs/proc files.
// The files stay open and are re-read with pread(fd, 0), so a poll allocates nothing.
struct State {
  std::string nic = "lo";
  int stat_fd = -1;
  int rx_fd = -1;
  int tx_fd = -1;
  int speed_fd = -1;
  double crypto_threads = 1;
  State();
  ~State();
  State(const State&) = delete;
  State& operator=(const State&) = delete;
};

// The one process-wide mutable: busy ns added by every crypto batch on any thread (atomic, lock-free).
void CryptoBusyAdd(uint64_t ns);
uint64_t CryptoBusyNs();
// Threads of the engine pool (job_pool.h): CPUs in our affinity mask (at most 64).
int CryptoThreads();
// CLOCK_MONOTONIC in ns.
uint64_t MonoNs();

void Init(Napi::Env env, Napi::Object exports);

}  // namespace pem::regs
