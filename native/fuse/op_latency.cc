// FUSE op latency histograms: the timing wrappers of the op table and the bucket counters (op_latency.h).
#include "op_latency.h"

#include <time.h>

#include "session.h"

namespace pem::fuse {

const char* OpClassName(OpClass c) {
  switch (c) {
    case OpClass::kLookup: return "lookup";
    case OpClass::kGetattr: return "getattr";
    case OpClass::kRead: return "read";
    case OpClass::kWrite: return "write";
    case OpClass::kCreate: return "create";
    case OpClass::kOther: return "other";
  }
  return "other";
}

uint64_t MonotonicNs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

void OpLatency::Record(OpClass c, uint64_t ns) {
  OpHistogram& h = by_class_[static_cast<int>(c)];
  size_t i = 0;
  while (i < kLatencyBoundsNs.size() && ns > kLatencyBoundsNs[i]) i++;
  h.buckets[i].fetch_add(1, std::memory_order_relaxed);
  h.sum_ns.fetch_add(ns, std::memory_order_relaxed);
}

namespace {

template <typename Op>
struct Timed;

// The wrapper of the op in field `Field`: the inner op between two clock reads, recorded under class `C`.
template <typename... Args>
struct Timed<void (*)(fuse_req_t, Args...)> {
  template <void (*fuse_lowlevel_ops::*Field)(fuse_req_t, Args...), OpClass C>
  static void Call(fuse_req_t req, Args... args) {
    OpLatency& l = S(req)->latency;
    uint64_t start = MonotonicNs();
    (l.inner.*Field)(req, args...);
    l.Record(C, MonotonicNs() - start);
  }
};

}  // namespace

#define PEM_TIME_OP(field, cls) \
  if (ops->field != nullptr) ops->field = &Timed<decltype(ops->field)>::Call<&fuse_lowlevel_ops::field, OpClass::cls>

void OpLatency::Wrap(struct fuse_lowlevel_ops* ops) {
  inner = *ops;
  PEM_TIME_OP(lookup, kLookup);
  PEM_TIME_OP(getattr, kGetattr);
  PEM_TIME_OP(read, kRead);
  PEM_TIME_OP(write, kWrite);
  PEM_TIME_OP(write_buf, kWrite);
  PEM_TIME_OP(create, kCreate);
  PEM_TIME_OP(mknod, kCreate);
  PEM_TIME_OP(mkdir, kCreate);
  PEM_TIME_OP(symlink, kCreate);
  PEM_TIME_OP(forget, kOther);
  PEM_TIME_OP(forget_multi, kOther);
  PEM_TIME_OP(setattr, kOther);
  PEM_TIME_OP(readlink, kOther);
  PEM_TIME_OP(unlink, kOther);
  PEM_TIME_OP(rmdir, kOther);
  PEM_TIME_OP(rename, kOther);
  PEM_TIME_OP(link, kOther);
  PEM_TIME_OP(open, kOther);
  PEM_TIME_OP(flush, kOther);
  PEM_TIME_OP(release, kOther);
  PEM_TIME_OP(fsync, kOther);
  PEM_TIME_OP(opendir, kOther);
  PEM_TIME_OP(readdir, kOther);
  PEM_TIME_OP(readdirplus, kOther);
  PEM_TIME_OP(releasedir, kOther);
  PEM_TIME_OP(fsyncdir, kOther);
  PEM_TIME_OP(statfs, kOther);
  PEM_TIME_OP(setxattr, kOther);
  PEM_TIME_OP(getxattr, kOther);
  PEM_TIME_OP(listxattr, kOther);
  PEM_TIME_OP(removexattr, kOther);
  PEM_TIME_OP(access, kOther);
  PEM_TIME_OP(getlk, kOther);
  PEM_TIME_OP(setlk, kOther);
  PEM_TIME_OP(bmap, kOther);
  PEM_TIME_OP(ioctl, kOther);
  PEM_TIME_OP(poll, kOther);
  PEM_TIME_OP(flock, kOther);
  PEM_TIME_OP(fallocate, kOther);
  PEM_TIME_OP(copy_file_range, kOther);
  PEM_TIME_OP(lseek, kOther);
}

#undef PEM_TIME_OP

}  // namespace pem::fuse
