// Per-thread caller credentials (creds.h). The daemon runs as root; after each call the thread is root again.
#include "creds.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

int CallerGroups(fuse_req_t req, gid_t* out, int max) {
  char path[64];
  pid_t tid = fuse_req_ctx(req)->pid;
  snprintf(path, sizeof(path), "/proc/%d/task/%d/status", static_cast<int>(tid), static_cast<int>(tid));
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  char buf[8192];
  ssize_t got = 0;
  while (got < static_cast<ssize_t>(sizeof(buf)) - 1) {
    ssize_t r = read(fd, buf + got, sizeof(buf) - 1 - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += r;
  }
  close(fd);
  buf[got] = '\0';
  const char* line = strstr(buf, "\nGroups:");
  if (line == nullptr) return -EIO;
  int n = 0;
  for (const char* p = line + 8; *p != '\0' && *p != '\n';) {
    char* end = nullptr;
    unsigned long g = strtoul(p, &end, 10);
    if (end == p) {
      p++;  // the separating blanks
      continue;
    }
    if (n < max) out[n] = static_cast<gid_t>(g);
    n++;
    p = end;
  }
  return n;
}

namespace {

// The worker thread's own credentials, read once: the daemon's fsuid, fsgid and supplementary groups.
struct Home {
  bool known = false;
  bool checked = false;  // a switch on this thread took effect once (setfsuid reports no error: asked back)
  uid_t uid = 0;
  gid_t gid = 0;
  int n = 0;
  gid_t groups[CallerCreds::kMaxGroups];
};
thread_local Home t_home;

}  // namespace

CallerCreds::CallerCreds(fuse_req_t req) {
  const struct fuse_ctx* ctx = fuse_req_ctx(req);
  if (!OwnFs()) {
    err_ = EPERM;
    return;
  }
  Home& home = t_home;
  if (!home.known) {
    long n = syscall(SYS_getgroups, kMaxGroups, home.groups);
    if (n < 0) {
      err_ = errno;
      return;
    }
    home.n = static_cast<int>(n);
    home.uid = static_cast<uid_t>(syscall(SYS_setfsuid, static_cast<uid_t>(-1)));
    home.gid = static_cast<gid_t>(syscall(SYS_setfsgid, static_cast<gid_t>(-1)));
    home.known = true;
  }
  if (ctx->uid != 0) {
    gid_t groups[kMaxGroups];
    int n = CallerGroups(req, groups, kMaxGroups);
    if (n < 0) n = 0;  // the caller is gone (or /proc unreadable): its primary group only
    if (n > kMaxGroups) n = kMaxGroups;
    if (SetGroups(static_cast<size_t>(n), groups) != 0) {
      err_ = errno;
      return;
    }
    groups_switched_ = true;
  }
  if (ctx->gid != home.gid) {
    syscall(SYS_setfsgid, ctx->gid);
    gid_switched_ = true;
  }
  if (ctx->uid != home.uid) {
    syscall(SYS_setfsuid, ctx->uid);
    uid_switched_ = true;
  }
  // setfsuid returns the old value, never an error: check by asking (-1 is not a valid id, so nothing changes), on
  // a thread's first switch (the daemon's capabilities do not change afterwards).
  if ((uid_switched_ || gid_switched_) && !home.checked) {
    if (static_cast<uid_t>(syscall(SYS_setfsuid, static_cast<uid_t>(-1))) != ctx->uid ||
        static_cast<gid_t>(syscall(SYS_setfsgid, static_cast<gid_t>(-1))) != ctx->gid) {
      Restore();
      err_ = EPERM;
      return;
    }
    home.checked = true;
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
  const Home& home = t_home;
  if (uid_switched_) syscall(SYS_setfsuid, home.uid);
  if (gid_switched_) syscall(SYS_setfsgid, home.gid);
  if (groups_switched_) SetGroups(static_cast<size_t>(home.n), home.groups);
}

}  // namespace pem::fuse
