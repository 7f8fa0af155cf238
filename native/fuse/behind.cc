// BehindPool (behind.h).
#include "behind.h"

#include <openssl/crypto.h>

namespace pem::fuse {

BehindPool::~BehindPool() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
  for (auto& b : bufs_) OPENSSL_cleanse(b.data(), b.size());
}

constexpr size_t kKeptBuffers = 16;

std::vector<uint8_t> BehindPool::TakeBuffer(size_t n) {
  std::vector<uint8_t> b;
  {
    std::lock_guard<std::mutex> lk(bufs_mu_);
    for (size_t i = 0; i < bufs_.size(); i++) {
      if (bufs_[i].size() < n) continue;
      b.swap(bufs_[i]);
      bufs_.erase(bufs_.begin() + static_cast<std::ptrdiff_t>(i));
      return b;
    }
  }
  b.resize(n);
  return b;
}

void BehindPool::GiveBuffer(std::vector<uint8_t>&& b) {
  if (b.empty()) return;
  {
    std::lock_guard<std::mutex> lk(bufs_mu_);
    if (bufs_.size() < kKeptBuffers) {
      bufs_.push_back(std::move(b));
      return;
    }
  }
  OPENSSL_cleanse(b.data(), b.size());
}

void BehindPool::Post(std::function<void()> job) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    jobs_.push_back(std::move(job));
    if (threads_.size() < size_) threads_.emplace_back([this] { Loop(); });
  }
  cv_.notify_one();
}

void BehindPool::Loop() {
  std::unique_lock<std::mutex> lk(mu_);
  for (;;) {
    cv_.wait(lk, [&] { return stop_ || !jobs_.empty(); });
    if (jobs_.empty()) return;  // stopping, nothing left
    std::function<void()> job = std::move(jobs_.front());
    jobs_.pop_front();
    lk.unlock();
    job();
    job = nullptr;  // what it held goes before the next wait
    lk.lock();
  }
}

}  // namespace pem::fuse
