// The bridge between FUSE worker threads and the JS control plane: two thread-safe functions ('decide this', and
// the io hook of encrypted handles) and the completion call that answers them. A worker blocks on its own condition
// variable until the answer or the deadline (ETIMEDOUT), so a silent control plane never hangs the mount.
#pragma once

#include <napi.h>
#include <sys/types.h>

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "crypt_node.h"
#include "decisions.h"

namespace pem::fuse {

constexpr size_t kMaxIoBytes = 1u << 20;  // an io answer's data: at most one max_write

// What the io hook is asked to do for an encrypted handle. ONLY APPEND (the names reach JS).
enum class IoKind : uint8_t { kOpen, kRead, kWrite, kFlush, kFsync, kRelease, kTruncate, kSize, kKey };
const char* IoKindName(IoKind k);

struct DecideCall {
  uid_t uid = 0;
  gid_t gid = 0;
  pid_t pid = 0;
  mode_t umask = 0;
  std::vector<gid_t> gids;
  std::string path;
  Action action = Action::kGetattr;
  uint64_t nodeid = 0;
};

struct IoCall {
  IoKind kind = IoKind::kRead;
  uint64_t fh = 0;
  uint64_t nodeid = 0;
  int fd = -1;
  int64_t offset = 0;
  uint64_t size = 0;
  int flags = 0;
  uid_t uid = 0;  // the caller: the handle's opener (open, truncate by path: the request's)
  gid_t gid = 0;
  pid_t pid = 0;
  uint32_t pool = 0;          // open of a new file: the create decision's pool of spare keys (Answer::pool)
  std::string path;
  std::vector<uint8_t> data;  // write: the bytes to write; key: the file's header
};

struct IoResult {
  int err = 0;
  int64_t value = 0;          // write: bytes written
  std::vector<uint8_t> data;  // read: the bytes read (at most the size asked)
  HostKey host;               // open, key: the file's key for host placement (crypt_node.h)
  std::vector<HostKey> spares;  // open of a new file: keys of the pool's next new files (CryptNodes::PutSpares)
};

class Bridge {
 public:
  Bridge(Napi::Env env, Napi::Function decide, Napi::Function io, int timeout_ms);
  // Worker threads. 0, or ETIMEDOUT (deadline), EIO (stopped, JS threw or answered badly).
  int Decide(DecideCall&& call, Answer* out);
  int Io(IoCall&& call, IoResult* out);
  // JS thread: the completion call. False when `id` is unknown (timed out, cancelled) or the answer is malformed
  // (*why says how; the waiting worker then gets EIO).
  bool Complete(Napi::Env env, uint64_t id, Napi::Value answer, std::string* why);
  // Wakes every waiting worker with EIO and refuses new calls. Any thread.
  void CancelAll();
  // JS thread: releases the thread-safe functions (after CancelAll).
  void Release();
  uint64_t timeouts() const { return timeouts_; }

 private:
  struct Pending {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    bool is_io = false;
    Answer answer;
    IoResult io;
    int err = 0;
  };
  struct Job {
    Bridge* bridge = nullptr;
    uint64_t id = 0;
    bool is_io = false;
    DecideCall decide;
    IoCall io;
  };
  int Wait(uint64_t id, const std::shared_ptr<Pending>& p);
  std::shared_ptr<Pending> Enqueue(Job* job);
  void Fail(uint64_t id, int err);
  static void CallDecide(Napi::Env env, Napi::Function fn, Job* job);
  static void CallIo(Napi::Env env, Napi::Function fn, Job* job);
  static void Deliver(Napi::Env env, Napi::Function fn, Job* job, Napi::Object req);

  Napi::ThreadSafeFunction decide_tsfn_;
  Napi::ThreadSafeFunction io_tsfn_;
  int timeout_ms_;
  std::mutex mu_;
  std::unordered_map<uint64_t, std::shared_ptr<Pending>> pending_;
  uint64_t next_id_ = 1;
  bool cancelled_ = false;
  bool released_ = false;
  uint64_t timeouts_ = 0;
};

}  // namespace pem::fuse
