// Latency histograms of the FUSE operations the session serves, per op class: fixed buckets of lock-free counters,
// filled by wrappers put around the op table (two CLOCK_MONOTONIC reads per request), read by JsStats.
#pragma once

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>

#include <array>
#include <atomic>
#include <cstdint>

namespace pem::fuse {

enum class OpClass : int { kLookup, kGetattr, kRead, kWrite, kCreate, kOther };
constexpr int kOpClasses = 6;
const char* OpClassName(OpClass c);

// Upper bounds of the buckets in ns (10 µs to 2.5 s); one more bucket counts what is above the last (+Inf).
constexpr std::array<uint64_t, 18> kLatencyBoundsNs = {
    10000,    25000,    50000,     100000,    250000,    500000,     1000000,    2500000,    5000000,
    10000000, 25000000, 50000000,  100000000, 250000000, 500000000, 1000000000, 2500000000, 5000000000};

struct OpHistogram {
  std::array<std::atomic<uint64_t>, kLatencyBoundsNs.size() + 1> buckets{};  // per bucket, not cumulative
  std::atomic<uint64_t> sum_ns{0};
};

class OpLatency {
 public:
  // Replaces every op of `ops` but init and destroy by a timing wrapper that calls the op it replaced (kept here).
  // The session that `ops` serves must be fuse_req_userdata's and hold this OpLatency as `latency`.
  void Wrap(struct fuse_lowlevel_ops* ops);
  void Record(OpClass c, uint64_t ns);
  const OpHistogram& Of(OpClass c) const { return by_class_[static_cast<int>(c)]; }

  struct fuse_lowlevel_ops inner{};  // the ops as filled by ops_*.cc

 private:
  std::array<OpHistogram, kOpClasses> by_class_{};
};

uint64_t MonotonicNs();

}  // namespace pem::fuse
