// The caller's credentials on this worker thread for the calls that create or move names (create, mkdir, mknod,
// symlink, link, rename): fsuid, fsgid, supplementary groups and umask, so the backing filesystem gives new entries
// the owner, group (setgid directories), mode and sticky-directory outcome it would give that caller locally.
// Raw syscalls: glibc's setfsuid/setgroups wrappers change every thread of the process; these change only this one.
#pragma once

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>
#include <sys/types.h>

namespace pem::fuse {

// The supplementary groups of req's caller (the Groups: line of /proc/TID/task/TID/status, read once: libfuse's
// fuse_req_getgroups reads the file twice when it is over 1 KiB, as it is here). Up to `max` into out; how many the
// caller has (may exceed max), or -errno (the caller is gone).
int CallerGroups(fuse_req_t req, gid_t* out, int max);

class CallerCreds {
 public:
  // Switches to the caller of req; ok() false (errno in err()) when the switch failed (nothing is switched then).
  // Only what differs from the thread's own credentials is switched: a root caller keeps the daemon's supplementary
  // groups (root passes the backing checks they would serve, and the kernel has checked the caller's own rights on
  // the mount, default_permissions), so its creates cost two umask calls and no read of /proc.
  explicit CallerCreds(fuse_req_t req);
  ~CallerCreds();
  CallerCreds(const CallerCreds&) = delete;
  CallerCreds& operator=(const CallerCreds&) = delete;
  bool ok() const { return err_ == 0; }
  int err() const { return err_; }
  static constexpr int kMaxGroups = 256;

 private:
  void Restore();
  int err_ = 0;
  bool uid_switched_ = false;
  bool gid_switched_ = false;
  bool groups_switched_ = false;
  bool switched_ = false;
  mode_t old_umask_ = 0;
};

}  // namespace pem::fuse
