// Setuid/setgid removal served here (FUSE_HANDLE_KILLPRIV_V2): the custom I/O hooks and the VFS rule (killpriv.h).
#include "killpriv.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstring>

#include "creds.h"
#include "session.h"

namespace pem::fuse {
namespace {

thread_local bool t_kill = false;

KillPrivInit* InitOf(void* userdata) { return &static_cast<Session*>(userdata)->killpriv_init; }

template <typename T>
bool Arg(const char* buf, size_t n, T* out) {
  if (n < sizeof(fuse_in_header) + sizeof(T)) return false;
  memcpy(out, buf + sizeof(fuse_in_header), sizeof(T));
  return true;
}

// The kill flag of the request in buf, and the INIT request's id and offer (read once, before libfuse parses it).
void Peek(const char* buf, size_t n, KillPrivInit* init) {
  t_kill = false;
  fuse_in_header in;
  if (n < sizeof(in)) return;
  memcpy(&in, buf, sizeof(in));
  switch (in.opcode) {
    case FUSE_WRITE: {
      fuse_write_in w;
      t_kill = Arg(buf, n, &w) && (w.write_flags & FUSE_WRITE_KILL_SUIDGID) != 0;
      break;
    }
    case FUSE_SETATTR: {
      fuse_setattr_in a;
      t_kill = Arg(buf, n, &a) && (a.valid & FATTR_KILL_SUIDGID) != 0;
      break;
    }
    case FUSE_OPEN: {
      fuse_open_in o;
      t_kill = Arg(buf, n, &o) && (o.open_flags & FUSE_OPEN_KILL_SUIDGID) != 0;
      break;
    }
    case FUSE_CREATE: {
      fuse_create_in c;
      t_kill = Arg(buf, n, &c) && (c.open_flags & FUSE_OPEN_KILL_SUIDGID) != 0;
      break;
    }
    case FUSE_INIT: {
      fuse_init_in i;
      if (!Arg(buf, n, &i)) break;
      init->offered = (i.flags & FUSE_HANDLE_KILLPRIV_V2) != 0;
      init->unique = in.unique;
      break;
    }
    default:
      break;
  }
}

ssize_t ReadRequest(int fd, void* buf, size_t len, void* userdata) {
  ssize_t n = read(fd, buf, len);
  if (n > 0) Peek(static_cast<const char*>(buf), static_cast<size_t>(n), InitOf(userdata));
  return n;
}

// Sends a reply; the INIT reply leaves with FUSE_HANDLE_KILLPRIV_V2 added when the kernel offered it.
ssize_t WriteReply(int fd, struct iovec* iov, int count, void* userdata) {
  KillPrivInit* state = InitOf(userdata);
  uint64_t init = state->unique.load(std::memory_order_relaxed);
  fuse_init_out patched;
  if (init != 0 && count >= 2 && iov[0].iov_len >= sizeof(fuse_out_header) &&
      iov[1].iov_len >= offsetof(fuse_init_out, flags) + sizeof(patched.flags) && iov[1].iov_len <= sizeof(patched)) {
    fuse_out_header out;
    memcpy(&out, iov[0].iov_base, sizeof(out));
    if (out.unique == init) {
      state->unique = 0;
      if (out.error == 0 && state->offered) {
        memcpy(&patched, iov[1].iov_base, iov[1].iov_len);
        patched.flags |= FUSE_HANDLE_KILLPRIV_V2;
        iov[1].iov_base = &patched;
      }
    }
  }
  return writev(fd, iov, count);
}

const struct fuse_custom_io kIo = {WriteReply, ReadRequest, nullptr, nullptr};

bool InGroup(fuse_req_t req, gid_t gid) {
  if (fuse_req_ctx(req)->gid == gid) return true;
  gid_t groups[256];
  int n = CallerGroups(req, groups, 256);
  for (int i = 0; i < n && i < 256; i++) {
    if (groups[i] == gid) return true;
  }
  return false;
}

}  // namespace

const struct fuse_custom_io* KillPrivIo() { return &kIo; }

bool KillSuidgidRequested() { return t_kill; }

int KillSuidgid(fuse_req_t req, fuse_ino_t ino, int fd) {
  if (!t_kill) return 0;
  struct stat st;
  int err = StatFd(fd, &st);
  if (err != 0) return err;
  if (!S_ISREG(st.st_mode)) return 0;
  mode_t kill = st.st_mode & S_ISUID;
  if ((st.st_mode & S_ISGID) && ((st.st_mode & S_IXGRP) || !InGroup(req, st.st_gid))) kill |= S_ISGID;
  if (kill == 0) return 0;
  if (chmod(ProcPath(fd).c_str(), st.st_mode & 07777 & ~kill) != 0) return errno;
  static_cast<Session*>(fuse_req_userdata(req))->InvalAttrs(ino);
  return 0;
}

}  // namespace pem::fuse
