// Mount watcher (watcher.h): /bin/sh reading a pipe from the daemon; EOF without "q" means the daemon died.
#include "watcher.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <vector>

extern char** environ;

namespace pem::fuse {

namespace {

// $1 abort file, $2 mount point, $3 "maj:min" (field 3 of /proc/self/mountinfo).
// The shell forks the watcher off and exits at once (StartWatcher reaps it), so the watcher's parent is init and
// no zombie stays with the daemon. The pipe rides on fd 3, copied before the fork (a background job's stdin, and
// anything redirected from it, is /dev/null).
constexpr const char* kScript =
    "exec 3<&0; ( read -r x <&3; [ \"$x\" = q ] && exit 0; "
    "echo 1 > \"$1\" 2>/dev/null; "
    "awk -v d=\"$3\" '$3 == d { f = 1 } END { exit !f }' /proc/self/mountinfo && umount -l \"$2\"; exit 0 ) &";

}  // namespace

int StartWatcher(const std::string& dir, const std::string& devno) {
  size_t colon = devno.find(':');
  if (colon == std::string::npos) return -1;
  std::string abort_path = "/sys/fs/fuse/connections/" + devno.substr(colon + 1) + "/abort";
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return -1;
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&attr);
  posix_spawn_file_actions_adddup2(&fa, p[0], 0);  // stdin: the pipe (dup2 clears O_CLOEXEC)
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addclosefrom_np(&fa, 3);  // never hold /dev/fuse or fusermount3's socket
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  sigset_t none, dflt;  // Node ignores SIGPIPE and may block others: the shell starts with the defaults
  sigemptyset(&none);
  sigemptyset(&dflt);
  for (int sig : {SIGPIPE, SIGHUP, SIGINT, SIGTERM, SIGQUIT, SIGCHLD}) sigaddset(&dflt, sig);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &dflt);
  std::vector<std::string> args = {"pemfs-watch", "-c", kScript, "pemfs-watch", abort_path, dir, devno};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid;
  int r = posix_spawn(&pid, "/bin/sh", &fa, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  close(p[0]);
  if (r != 0) {
    close(p[1]);
    return -1;
  }
  int status;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return p[1];
}

void StopWatcher(int fd) {
  if (fd < 0) return;
  if (write(fd, "q\n", 2) < 0) {
  }
  close(fd);
}

}  // namespace pem::fuse
