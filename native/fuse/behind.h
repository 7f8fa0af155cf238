// The few threads that do CryptNodes' work behind the callers' backs (appliance placement, docs/PEMFS.md
// "Write-behind and readahead"): sealing and writing the blocks of writes that already returned, and opening the blocks
// a sequential reader will ask for next. Jobs run in the order posted, one per thread at a time; the threads start at
// the first job and are joined when the pool goes.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace pem::fuse {

class BehindPool {
 public:
  explicit BehindPool(size_t threads) : size_(threads) {}
  ~BehindPool();
  BehindPool(const BehindPool&) = delete;
  BehindPool& operator=(const BehindPool&) = delete;
  void Post(std::function<void()> job);
  // What the nodes did behind their callers: writes that returned before being sealed, bytes read from windows
  // opened ahead.
  std::atomic<uint64_t> behind_writes{0}, ahead_bytes{0};
  // Buffers of at least n bytes for windows ahead, kept for reuse (no allocation, page faults and zero-filling per
  // window): a few are kept, and wiped when the pool goes.
  std::vector<uint8_t> TakeBuffer(size_t n);
  void GiveBuffer(std::vector<uint8_t>&& b);

 private:
  void Loop();
  const size_t size_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  std::vector<std::thread> threads_;
  bool stop_ = false;
  std::mutex bufs_mu_;
  std::vector<std::vector<uint8_t>> bufs_;
};

}  // namespace pem::fuse
