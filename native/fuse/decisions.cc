// Native decision cache (decisions.h): one bounded map of path and scope entries, cleared whole when full or on a
// policy change.
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

std::string DecisionCache::WhoKey(const Who& w, Action a) {
  std::string k;
  uint64_t fields[5] = {static_cast<uint64_t>(w.pid), w.uid, w.gid, w.exe_dev, w.exe_ino};
  k.append(reinterpret_cast<const char*>(fields), sizeof(fields));
  k.push_back(static_cast<char>(a));
  return k;
}

bool DecisionCache::LiveLocked(const std::string& key, std::chrono::steady_clock::time_point now, Answer* out) {
  auto it = map_.find(key);
  if (it == map_.end()) return false;
  if (it->second.until <= now) {
    map_.erase(it);
    return false;
  }
  *out = it->second.ans;
  return true;
}

bool DecisionCache::Get(const Who& w, Action a, const std::string& path, Answer* out) {
  std::string k = WhoKey(w, a);
  const size_t base = k.size();
  k.reserve(base + 1 + path.size());
  k.append(path);
  auto now = std::chrono::steady_clock::now();
  std::lock_guard<std::mutex> lock(mu_);
  if (LiveLocked(k, now, out)) return true;
  if (scopes_ == 0) return false;
  // Each proper ancestor directory: the prefix before each '/' of path ("" for the leading one).
  for (size_t i = 0; i < path.size() && i <= longest_scope_; i = path.find('/', i + 1)) {
    if (i + 1 >= path.size()) break;  // "/a/" would name "/a" itself, not a path strictly under it
    k.resize(base);
    k.push_back('\0');
    k.append(path, 0, i);
    if (LiveLocked(k, now, out)) return true;
  }
  return false;
}

void DecisionCache::Put(const Who& w, Action a, const std::string& path, const Answer& ans) {
  if (!(ans.ttl_ms > 0)) return;
  auto until = std::chrono::steady_clock::now() +
               std::chrono::microseconds(static_cast<int64_t>(ans.ttl_ms * 1000.0));
  // A scope is taken only when it is a proper ancestor directory of the path asked about (as lib/pem-fs/guard.ts).
  const std::string& s = ans.scope;
  bool wide = ans.scoped && path.size() > s.size() + 1 && path.compare(0, s.size(), s) == 0 && path[s.size()] == '/';
  std::string k = WhoKey(w, a);
  if (wide) {
    k.push_back('\0');
    k.append(s);
  } else {
    k.append(path);
  }
  Entry e{ans, until};
  e.ans.scoped = false;
  e.ans.scope.clear();
  std::lock_guard<std::mutex> lock(mu_);
  if (map_.size() >= kMaxEntries) {
    map_.clear();
    scopes_ = 0;
    longest_scope_ = 0;
  }
  if (wide) {
    scopes_++;
    if (s.size() > longest_scope_) longest_scope_ = s.size();
  }
  map_[std::move(k)] = std::move(e);
}

void DecisionCache::Clear() {
  std::lock_guard<std::mutex> lock(mu_);
  map_.clear();
  scopes_ = 0;
  longest_scope_ = 0;
}

size_t DecisionCache::size() {
  std::lock_guard<std::mutex> lock(mu_);
  return map_.size();
}

}  // namespace pem::fuse
