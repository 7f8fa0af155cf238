// Native FUSE session (libfuse3 low-level): the types every native/fuse/*.cc shares. Interface: docs/PEMFS.md
// "The native session". Worker threads serve requests; the JS thread is reached only through Bridge (bridge.cc).
#pragma once

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "crypt_node.h"
#include "decisions.h"
#include "inodes.h"
#include "killpriv.h"
#include "op_latency.h"
#include "reserved.h"

namespace pem::fuse {

constexpr uint32_t kMaxWrite = 1u << 20;     // max_write and max_readahead: 1 MiB (kernel max_pages 256)
constexpr int kMaxThreads = 64;              // blocking ops (a decision waiting for JS) must not starve the loop
constexpr int kIdleThreads = 8;              // idle workers kept; more end once idle (session.cc)
constexpr size_t kXattrMax = 65536;          // XATTR_SIZE_MAX

struct MountOptions {
  std::string dir;
  int backing_fd = -1;          // the caller's fd of the backing directory (dup'ed; the caller keeps its own)
  double entry_timeout = 1.0;   // seconds the kernel keeps a name (and a negative name)
  double attr_timeout = 1.0;    // seconds the kernel keeps attributes
  int decide_timeout_ms = 5000; // a JS answer later than this fails the operation with ETIMEDOUT
  bool auto_unmount = true;     // fusermount3 watches /dev/fuse and unmounts when this process dies
  bool debug = false;
  std::string fsname;           // what mount tables show as the source; empty: "pemfs:" + dir
};

// An open file. The decisions of its open are held here; reads and writes never ask again until revoked.
struct Handle {
  uint64_t id = 0;
  int fd = -1;                  // backing file
  uint64_t nodeid = 0;
  bool encrypted = false;       // data calls go to the JS io hook (bridge.cc), or to `host`
  std::shared_ptr<CryptNode> host;  // host placement: served natively (crypt_node.h); Session::SetHost, at open
  bool append = false;          // opened O_APPEND (a host-mode write goes to the end of the file)
  std::atomic<uint32_t> allowed{0};  // bit per Action decided for this handle
  std::atomic<bool> revoked{false};
  std::atomic<bool> opening{false};  // its open is being answered: not yet JS-hooked nor native (Session::JsHooked)
  uid_t uid = 0;
  gid_t gid = 0;
  pid_t pid = 0;
};

struct DirHandle;

class Bridge;

class Session {
 public:
  explicit Session(const MountOptions& o) : opts_(o) {}
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Mounts and starts the loop thread. 0 or an errno; *why gets a message.
  int Start(Bridge* bridge, std::string* why);
  // Idempotent; safe on the JS thread while workers wait for JS (their waits are cancelled first).
  void Stop();
  bool stopped() const { return stopped_.load(); }
  // After Stop: whether the loop threads ended (false: they were left to end with the connection; keep `this`).
  bool finished() const { return se_ == nullptr; }

  const MountOptions& opts() const { return opts_; }
  InodeTable& inodes() { return inodes_; }
  DecisionCache& cache() { return cache_; }
  CryptNodes& crypt() { return crypt_; }
  Bridge* bridge() { return bridge_; }
  ReservedAccess& reserved() { return reserved_; }
  int root_fd() const { return root_fd_; }

  // Decides `action` on `path` for the caller of `req` (cache, then JS). 0 = allowed; *d gets the answer.
  int Decide(fuse_req_t req, uint64_t nodeid, const std::string& path, Action action, Answer* d);
  // Decides on a node's own path / a child's path. ENOENT/ESTALE when the path is unknown.
  int DecideNode(fuse_req_t req, uint64_t nodeid, Action action, Answer* d = nullptr);
  int DecideChild(fuse_req_t req, uint64_t parent, const char* name, Action action, Answer* d = nullptr,
                  std::string* path = nullptr);

  std::shared_ptr<Handle> AddHandle(int fd, uint64_t nodeid, bool encrypted, fuse_req_t req, uint32_t allowed);
  std::shared_ptr<Handle> GetHandle(uint64_t id);
  std::shared_ptr<Handle> TakeHandle(uint64_t id);
  // The handle of fi with `action` decided (now, if its open did not); nullptr with *err (EBADF, EACCES, ...).
  std::shared_ptr<Handle> Allowed(fuse_req_t req, struct fuse_file_info* fi, Action action, int* err);
  // Marks handles revoked (id 0: all). Returns how many.
  size_t Revoke(uint64_t id);
  std::vector<std::shared_ptr<Handle>> Handles();

  // Kernel cache invalidation on the notifier thread (never on the JS thread: the kernel may wait for a request
  // that waits for JS). name empty: the inode's attributes and data; otherwise the entry parent/name.
  void QueueInval(uint64_t nodeid, const std::string& name);
  // Drops the kernel's cached attributes of nodeid now, from a worker serving a request on it: an attributes-only
  // invalidation takes no inode lock, so it cannot wait for the request being served.
  void InvalAttrs(uint64_t nodeid) { fuse_lowlevel_notify_inval_inode(se_, nodeid, -1, 0); }

  KillPrivInit killpriv_init;  // the /dev/fuse hooks' view of INIT (killpriv.h)

  // A hooked file's size as applications see it (the io hook's 'size'): st->st_size is replaced. `fd` is an open
  // fd of the file, or -1 (a temporary one is opened from the node). 0 or errno.
  // Natively when it can (a node held in host placement; a closed file: header plainSize), else the io hook.
  int HookedSize(uint64_t nodeid, int fd, const std::string& path, struct stat* st);
  // Gives an opening handle its host-mode node (under the handle table's lock: JsHooked reads it).
  void SetHost(const std::shared_ptr<Handle>& h, std::shared_ptr<CryptNode> n);
  // Whether node `nodeid` has handles (other than `except`) open whose data calls go to the JS io hook.
  bool JsHooked(uint64_t nodeid, uint64_t except = 0);

  // fills e from a freshly opened O_PATH fd of parent/name (takes the fd). 0 or errno.
  int Entry(uint64_t parent, const char* name, int fd, struct fuse_entry_param* e);
  // lookup of parent/name into e; 0 or errno.
  int LookupEntry(uint64_t parent, const char* name, struct fuse_entry_param* e);

  std::atomic<uint64_t> ops{0}, js_calls{0}, cache_hits{0}, timeouts{0};
  OpLatency latency;  // per op class, of every request served (JsStats reads it)

 private:
  void NotifierLoop();

  MountOptions opts_;
  InodeTable inodes_;
  DecisionCache cache_;
  CryptNodes crypt_;
  ReservedAccess reserved_;
  Bridge* bridge_ = nullptr;
  struct fuse_session* se_ = nullptr;
  int root_fd_ = -1;
  std::thread loop_;
  std::mutex loop_mu_;
  std::condition_variable loop_cv_;
  bool loop_done_ = false;
  std::atomic<bool> stopped_{false};
  bool mounted_ = false;
  std::string conn_abort_;  // /sys/fs/fuse/connections/N/abort, found after the mount
  int watcher_fd_ = -1;     // watcher.h: its pipe; closing it without "q" (the daemon died) frees the mount

  std::mutex handles_mu_;
  std::unordered_map<uint64_t, std::shared_ptr<Handle>> handles_;
  uint64_t next_handle_ = 1;

  std::thread notifier_;
  std::mutex inval_mu_;
  std::condition_variable inval_cv_;
  std::vector<std::pair<uint64_t, std::string>> inval_queue_;
  bool notifier_stop_ = false;
};

// The session of a request (fuse_req_userdata).
inline Session* S(fuse_req_t req) { return static_cast<Session*>(fuse_req_userdata(req)); }

// The backing fd of node `ino`, or -1 once the request was answered ESTALE (a node the session no longer holds).
inline int NodeFd(fuse_req_t req, Session* s, fuse_ino_t ino) {
  int fd = s->inodes().Fd(ino);
  if (fd < 0) fuse_reply_err(req, ESTALE);
  return fd;
}

// A host-mode handle's key, asked again of JS (io kind 'key') once its ttl has passed; EACCES revokes the handle.
// 0 or errno (ops_io.cc).
int FreshHostKey(Session* s, Handle* h);
// The `key` io call's flags beside the handle's access (O_ACCMODE): its node's block channel server was lost; its
// node holds a grant at spd's block service (appliance placement), not a key (the answer must keep the placement).
constexpr int kKeyServerLost = 4;
constexpr int kKeyRemote = 8;
// `call` (a CryptNode Read, Write or Truncate of h's node) with a fresh key. A key dropped (revoked, expired) between
// the check and the I/O (kKeyDropped) is asked again and `call` retried (EIO after three drops). A lost sealer (its
// spd timed out or closed, its grant gone) is replaced through the io hook and `call` retried once; lost again:
// EHOSTUNREACH. With `persist` (writes and truncations, which must not be lost to a server that stalls or restarts
// for a few seconds) it keeps trying for kPersistMs, as the JS path's write-behind does (WRITE_BEHIND_PERSIST_MS).
constexpr int kPersistMs = 10000;
int HostCall(Session* s, Handle* h, const std::function<int()>& call, bool persist = false);

// Op tables filled by ops_*.cc (session.cc assembles them).
void AddAttrOps(struct fuse_lowlevel_ops* ops);
void AddDirOps(struct fuse_lowlevel_ops* ops);
void AddIoOps(struct fuse_lowlevel_ops* ops);
void AddXattrOps(struct fuse_lowlevel_ops* ops);
void AddRangeOps(struct fuse_lowlevel_ops* ops);

// stat of an O_PATH fd (AT_EMPTY_PATH, never following a symlink).
int StatFd(int fd, struct stat* st);
// "/proc/self/fd/N": reaches the inode of one of our O_PATH fds (the backing object itself, not a path).
std::string ProcPath(int fd);

}  // namespace pem::fuse
