// pemfs's own names inside a guard point, hidden from the mount's users (docs/PEMFS.md "pemfs's own names"): a
// conversion's temporary copies and journals (`.pemfs-convert.*`, any directory) and the embedded store file
// (`.pemfs-embedded`, `.pemfs-embedded.tmp`, the root). They are served only to the processes registered here (a
// running conversion, registered by the daemon over its convert socket); to anyone else they are not listed, not
// found, and cannot be created, linked, renamed or removed.
#pragma once

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>
#include <sys/types.h>

#include <mutex>
#include <vector>

namespace pem::fuse {

// Whether parent/name is one of pemfs's own names.
bool IsReservedName(fuse_ino_t parent, const char* name);

class ReservedAccess {
 public:
  // The processes (thread group ids) that are served the reserved names; replaces the previous set.
  void SetPids(std::vector<pid_t> pids);
  // Whether the caller of `req` (a thread: the kernel sends its tid) belongs to one of them.
  bool Serves(fuse_req_t req);
  // parent/name is reserved and the caller of `req` is not served it.
  bool HiddenFrom(fuse_req_t req, fuse_ino_t parent, const char* name) {
    return IsReservedName(parent, name) && !Serves(req);
  }

 private:
  std::mutex mu_;
  std::vector<pid_t> pids_;
};

}  // namespace pem::fuse
