// The mount's watcher: a small `sh` in its own session that outlives a killed daemon and frees the mount.
// libfuse's auto_unmount (fusermount3) alone loses a race: when the daemon dies its comm socket closes before its
// /dev/fuse fds, fusermount3's probe open() is then aborted with ECONNABORTED instead of ENOTCONN, and it leaves
// the dead mount in place. The watcher aborts the connection itself and detaches the mount, but only while the
// mount table still lists this connection's device number (never a later mount on the same directory).
#pragma once

#include <string>

namespace pem::fuse {

// Starts the watcher for the FUSE mount at dir whose device is devno ("maj:min"). Returns the pipe's write end
// (O_CLOEXEC: no other child holds it), or -1 when the watcher could not start (the mount still works).
int StartWatcher(const std::string& dir, const std::string& devno);
// A clean unmount: the watcher exits without acting. Closes fd.
void StopWatcher(int fd);

}  // namespace pem::fuse
