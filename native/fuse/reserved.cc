// pemfs's own names and who is served them (reserved.h).
#include "reserved.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

namespace pem::fuse {

namespace {
constexpr char kConvertPrefix[] = ".pemfs-convert.";
}

bool IsReservedName(fuse_ino_t parent, const char* name) {
  if (strncmp(name, kConvertPrefix, sizeof(kConvertPrefix) - 1) == 0) return true;
  return parent == FUSE_ROOT_ID && (strcmp(name, ".pemfs-embedded") == 0 || strcmp(name, ".pemfs-embedded.tmp") == 0);
}

void ReservedAccess::SetPids(std::vector<pid_t> pids) {
  std::lock_guard<std::mutex> lock(mu_);
  pids_ = std::move(pids);
}

bool ReservedAccess::Serves(fuse_req_t req) {
  pid_t tid = fuse_req_ctx(req)->pid;
  std::lock_guard<std::mutex> lock(mu_);
  for (pid_t pid : pids_) {
    if (pid == tid) return true;
    char task[64];
    snprintf(task, sizeof(task), "/proc/%d/task/%d", static_cast<int>(pid), static_cast<int>(tid));
    if (access(task, F_OK) == 0) return true;  // one of the process's threads
  }
  return false;
}

}  // namespace pem::fuse
