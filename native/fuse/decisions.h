// Native decision cache: answers of the control plane keyed by (caller pid, uid, gid, executable dev:ino, action,
// path) or, for an answer with a scope, (who, action, scope) holding for every path strictly under that directory;
// each for its ttl; dropped whole by Clear() (a new policy version). docs/PEMFS.md "The native session".
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

namespace pem::fuse {

// The policy's action names (lib/wire/packets.ts ACTIONS): the native code asks only these.
enum class Action : uint8_t {
  kRead, kWrite, kCreate, kDelete, kRename, kList, kGetattr, kChmod, kChown, kTruncate,
  kMkdir, kRmdir, kLink, kSymlink, kReadlink, kUtimens, kXattr, kStatfs, kCount
};
const char* ActionName(Action a);
inline uint32_t Bit(Action a) { return 1u << static_cast<unsigned>(a); }

struct Answer {
  bool ok = false;
  int err = 0;          // errno when !ok (EACCES when JS gave none)
  double ttl_ms = 0;    // 0: not cached
  bool bypass = true;   // false: the handle's data goes through the JS io hook (encrypted)
  uint32_t pool = 0;    // a create under host placement: the spare new-file keys it may take (crypt_node.h); 0 none
  // The policy directory the answer holds for ('' = the guard root): every path strictly under it. Only Put reads
  // it; answers from the cache have none.
  bool scoped = false;
  std::string scope;
};

// Who asks: what keys the cache. The executable is the (dev, ino) of /proc/PID/exe, so a process that execs
// another program does not reuse the old program's answers (JS computes the executable hash from the pid).
struct Who {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  uint64_t exe_dev = 0;
  uint64_t exe_ino = 0;
};
// Fills w->exe_* from /proc/PID/exe (0 when the process is gone or is a kernel thread).
void FillExe(Who* w);

class DecisionCache {
 public:
  static constexpr size_t kMaxEntries = 65536;
  // The answer for `path`: its own, else a scoped one of an ancestor directory (the root '' first, then down, never
  // deeper than the longest scope held).
  bool Get(const Who& w, Action a, const std::string& path, Answer* out);
  // Keeps `ans` for its ttl: under its scope when that is a proper ancestor directory of `path`, else for `path`.
  void Put(const Who& w, Action a, const std::string& path, const Answer& ans);
  void Clear();
  size_t size();

 private:
  // who + action, then the path; a scope's key has a NUL before the scope, which no path holds ('/...').
  static std::string WhoKey(const Who& w, Action a);
  bool LiveLocked(const std::string& key, std::chrono::steady_clock::time_point now, Answer* out);
  struct Entry {
    Answer ans;
    std::chrono::steady_clock::time_point until;
  };
  std::mutex mu_;
  std::unordered_map<std::string, Entry> map_;
  size_t scopes_ = 0;           // scoped entries put since the last clear (0: Get tries no ancestor)
  size_t longest_scope_ = 0;    // bytes of the longest scope put since the last clear
};

}  // namespace pem::fuse
