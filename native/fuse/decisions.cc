// Native decision cache (decisions.h): a bounded map, cleared whole when full or on a policy change.
#include "decisions.h"

#include <sys/stat.h>

#include <cstdio>
#include <cstring>

namespace pem::fuse {

const char* ActionName(Action a) {
  static constexpr const char* kNames[] = {
      "read", "write", "create", "delete", "rename", "list", "getattr", "chmod", "chown", "truncate",
      "mkdir", "rmdir", "link", "symlink", "readlink", "utimens", "xattr", "statfs"};
  unsigned i = static_cast<unsigned>(a);
  return i < sizeof(kNames) / sizeof(kNames[0]) ? kNames[i] : "?";
}

void FillExe(Who* w) {
  w->exe_dev = 0;
  w->exe_ino = 0;
  if (w->pid <= 0) return;
  char p[48];
  snprintf(p, sizeof(p), "/proc/%d/exe", static_cast<int>(w->pid));
  struct stat st;
  if (stat(p, &st) != 0) return;
  w->exe_dev = st.st_dev;
  w->exe_ino = st.st_ino;
}

std::string DecisionCache::Key(const Who& w, Action a, const std::string& path) {
  std::string k;
  k.reserve(sizeof(Who) + 1 + path.size());
  uint64_t fields[5] = {static_cast<uint64_t>(w.pid), w.uid, w.gid, w.exe_dev, w.exe_ino};
  k.append(reinterpret_cast<const char*>(fields), sizeof(fields));
  k.push_back(static_cast<char>(a));
  k.append(path);
  return k;
}

bool DecisionCache::Get(const Who& w, Action a, const std::string& path, Answer* out) {
  std::string k = Key(w, a, path);
  std::lock_guard<std::mutex> lock(mu_);
  auto it = map_.find(k);
  if (it == map_.end()) return false;
  if (it->second.until <= std::chrono::steady_clock::now()) {
    map_.erase(it);
    return false;
  }
  *out = it->second.ans;
  return true;
}

void DecisionCache::Put(const Who& w, Action a, const std::string& path, const Answer& ans) {
  if (!(ans.ttl_ms > 0)) return;
  auto until = std::chrono::steady_clock::now() +
               std::chrono::microseconds(static_cast<int64_t>(ans.ttl_ms * 1000.0));
  std::string k = Key(w, a, path);
  std::lock_guard<std::mutex> lock(mu_);
  if (map_.size() >= kMaxEntries) map_.clear();
  map_[std::move(k)] = Entry{ans, until};
}

void DecisionCache::Clear() {
  std::lock_guard<std::mutex> lock(mu_);
  map_.clear();
}

size_t DecisionCache::size() {
  std::lock_guard<std::mutex> lock(mu_);
  return map_.size();
}

}  // namespace pem::fuse
