// Setuid/setgid removal served here (FUSE_HANDLE_KILLPRIV_V2), so the kernel stops asking for security.capability
// before every write. libfuse 3.14 neither offers that INIT flag nor passes on the kill flags the kernel then sends,
// so the session's custom I/O (fuse_session_custom_io) reads each request's kill flag into this thread before
// libfuse parses it, and adds the flag to the INIT reply when the kernel offered it.
//
// What the kernel expects of us once the flag is agreed (linux/fuse.h): a write, a truncate or an open with O_TRUNC
// by a caller without CAP_FSETID (the kernel marks those requests) clears S_ISUID, and S_ISGID when the file is
// group-executable or the caller is not in its group, as the VFS would. security.capability needs nothing of ours:
// the backing filesystem drops it on our own write, truncate and chown of the backing file.
#pragma once

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>

#include <atomic>
#include <cstdint>

namespace pem::fuse {

// One session's INIT exchange as the hooks saw it (the session's userdata is the Session that holds it).
struct KillPrivInit {
  std::atomic<uint64_t> unique{0};    // the INIT request's id while its reply is due (0: none)
  std::atomic<bool> offered{false};   // the kernel's INIT named FUSE_HANDLE_KILLPRIV_V2
};

// The read/writev hooks; install on a mounted session before its loop starts (same fd as fuse_session_fd).
const struct fuse_custom_io* KillPrivIo();

// Whether the request this thread is serving carries the kernel's kill flag (write, setattr, open, create). A
// request is served on the thread that read it, so this holds from the op's first line to its reply.
bool KillSuidgidRequested();

// Clears the bits the VFS rule says req's write or truncate kills on node ino (its O_PATH fd is `fd`), and drops the
// kernel's cached mode of it; a no-op when the request carries no kill flag or the file has none of the bits. 0 or
// errno.
int KillSuidgid(fuse_req_t req, fuse_ino_t ino, int fd);

}  // namespace pem::fuse
