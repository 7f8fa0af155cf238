// Per-thread caller credentials (creds.h). The daemon runs as root; after each call the thread is root again.
#include "creds.h"

#include <errno.h>
#include <sched.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace pem::fuse {

namespace {

// Each worker thread gets its own fs_struct once (unshare(CLONE_FS)), so umask() changes only this thread.
thread_local bool t_own_fs = false;

bool OwnFs() {
  if (!t_own_fs && unshare(CLONE_FS) == 0) t_own_fs = true;
  return t_own_fs;
}

long SetGroups(size_t n, const gid_t* g) { return syscall(SYS_setgroups, n, g); }

}  // namespace

CallerCreds::CallerCreds(fuse_req_t req) {
  const struct fuse_ctx* ctx = fuse_req_ctx(req);
  if (!OwnFs()) {
    err_ = EPERM;
    return;
  }
  long saved = syscall(SYS_getgroups, kMaxGroups, saved_groups_);
  if (saved < 0) {
    err_ = errno;
    return;
  }
  n_saved_ = static_cast<int>(saved);
  saved_uid_ = static_cast<uid_t>(syscall(SYS_setfsuid, static_cast<uid_t>(-1)));
  saved_gid_ = static_cast<gid_t>(syscall(SYS_setfsgid, static_cast<gid_t>(-1)));
  gid_t groups[kMaxGroups];
  int n = fuse_req_getgroups(req, kMaxGroups, groups);
  if (n < 0) n = 0;  // the caller is gone (or /proc unreadable): its primary group only
  if (n > kMaxGroups) n = kMaxGroups;
  if (SetGroups(static_cast<size_t>(n), groups) != 0) {
    err_ = errno;
    return;
  }
  syscall(SYS_setfsgid, ctx->gid);
  syscall(SYS_setfsuid, ctx->uid);
  // setfsuid returns the old value, never an error: check by asking (-1 is not a valid id, so nothing changes).
  if (static_cast<uid_t>(syscall(SYS_setfsuid, static_cast<uid_t>(-1))) != ctx->uid ||
      static_cast<gid_t>(syscall(SYS_setfsgid, static_cast<gid_t>(-1))) != ctx->gid) {
    Restore();
    err_ = EPERM;
    return;
  }
  old_umask_ = umask(ctx->umask & 0777);
  switched_ = true;
}

CallerCreds::~CallerCreds() {
  if (!switched_) return;
  umask(old_umask_);
  Restore();
}

void CallerCreds::Restore() {
  syscall(SYS_setfsuid, saved_uid_);
  syscall(SYS_setfsgid, saved_gid_);
  SetGroups(static_cast<size_t>(n_saved_), saved_groups_);
}

}  // namespace pem::fuse
