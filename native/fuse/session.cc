// Session: mount (libfuse3 low-level, allow_other + default_permissions, auto_unmount), the multi-threaded loop
// (clone_fd, one request per thread that read it), decisions (cache, then JS), handles, the notifier thread and a
// stop that never hangs: pending JS waits are cancelled, the mount is detached and, if the loop does not end, the
// connection is aborted through /sys/fs/fuse/connections/N/abort.
#include "session.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "bridge.h"
#include "creds.h"
#include "killpriv.h"
#include "watcher.h"

namespace pem::fuse {

int StatFd(int fd, struct stat* st) {
  return fstatat(fd, "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) == 0 ? 0 : errno;
}

std::string ProcPath(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

namespace {

void OpInit(void* userdata, struct fuse_conn_info* conn) {
  // DONT_MASK: the kernel sends the caller's umask instead of applying it; the worker applies it on the backing
  // filesystem (creds.cc), which then honours a default ACL of the parent as a local filesystem would.
  uint32_t want = FUSE_CAP_DONT_MASK | FUSE_CAP_ASYNC_READ | FUSE_CAP_PARALLEL_DIROPS | FUSE_CAP_POSIX_ACL |
                  FUSE_CAP_ATOMIC_O_TRUNC;
  conn->want |= (want & conn->capable);
  conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;  // writes go to the backing file in order, sizes stay exact
  conn->want &= ~FUSE_CAP_FLOCK_LOCKS;      // flock/fcntl locks stay the kernel's (local to this mount)
  conn->want &= ~FUSE_CAP_POSIX_LOCKS;
  // Requests are read with one read(2) each (killpriv.cc); a splice into a pipe and a read out of it cost two, and
  // the write op copies the data out of the pipe anyway.
  conn->want &= ~FUSE_CAP_SPLICE_READ;
  conn->max_write = kMaxWrite;
  conn->max_readahead = kMaxWrite;
  (void)userdata;
}

void OpDestroy(void* userdata) { (void)userdata; }

// "maj:min" of the FUSE mount at dir in /proc/self/mountinfo (the last one: the newest mount on top).
std::string DevnoOf(const std::string& dir) {
  std::ifstream f("/proc/self/mountinfo");
  std::string line, found;
  while (std::getline(f, line)) {
    std::istringstream in(line);
    std::string id, parent, devno, root, point;
    in >> id >> parent >> devno >> root >> point;
    if (point == dir && line.find(" - fuse") != std::string::npos) found = devno;
  }
  return found;
}

std::string AbortPath(const std::string& devno) {
  size_t colon = devno.find(':');
  if (colon == std::string::npos) return "";
  return "/sys/fs/fuse/connections/" + devno.substr(colon + 1) + "/abort";
}

}  // namespace

Session::~Session() { Stop(); }

int Session::Start(Bridge* bridge, std::string* why) {
  bridge_ = bridge;
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);  // host placement keeps file keys here: no core dumps, no ptrace by the user
  root_fd_ = openat(opts_.backing_fd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (root_fd_ < 0) {
    *why = std::string("backing directory: ") + strerror(errno);
    return errno;
  }
  struct stat st;
  if (StatFd(root_fd_, &st) != 0 || !S_ISDIR(st.st_mode)) {
    *why = "backing fd is not a directory";
    close(root_fd_);
    root_fd_ = -1;
    return ENOTDIR;
  }
  inodes_.InitRoot(dup(root_fd_), st);

  std::string fsname = opts_.fsname.empty() ? "pemfs:" + opts_.dir : opts_.fsname;
  for (char& c : fsname) {
    if (c == ',' || c == '\\') c = '_';
  }
  std::string o = "allow_other,default_permissions,fsname=" + fsname;
  if (opts_.auto_unmount) o += ",auto_unmount";
  std::vector<std::string> argv_s = {"pemfs", "-o", o};
  if (opts_.debug) argv_s.push_back("-d");
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  struct fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());

  struct fuse_lowlevel_ops ops;
  memset(&ops, 0, sizeof(ops));
  ops.init = OpInit;
  ops.destroy = OpDestroy;
  AddAttrOps(&ops);
  AddDirOps(&ops);
  AddIoOps(&ops);
  AddXattrOps(&ops);
  AddRangeOps(&ops);
  latency.Wrap(&ops);
  se_ = fuse_session_new(&args, &ops, sizeof(ops), this);
  fuse_opt_free_args(&args);
  if (se_ == nullptr) {
    *why = "fuse_session_new failed (bad options?)";
    return EINVAL;
  }
  if (fuse_session_mount(se_, opts_.dir.c_str()) != 0) {
    *why = "cannot mount " + opts_.dir + " (is /dev/fuse there, is it already mounted?)";
    fuse_session_destroy(se_);
    se_ = nullptr;
    return EIO;
  }
  mounted_ = true;
  // The same fd, now read and written through the kill-flag hooks (killpriv.h); libfuse keeps it and closes it once.
  if (fuse_session_custom_io(se_, KillPrivIo(), fuse_session_fd(se_)) != 0) {
    *why = "fuse_session_custom_io failed";
    fuse_session_unmount(se_);
    fuse_session_destroy(se_);
    se_ = nullptr;
    mounted_ = false;
    return EIO;
  }
  std::string devno = DevnoOf(opts_.dir);
  conn_abort_ = AbortPath(devno);
  if (opts_.auto_unmount) watcher_fd_ = StartWatcher(opts_.dir, devno);

  notifier_ = std::thread([this] { NotifierLoop(); });
  loop_ = std::thread([this] {
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, nullptr);  // signals stay Node's
    struct fuse_loop_config* cfg = fuse_loop_cfg_create();
    fuse_loop_cfg_set_clone_fd(cfg, 1);
    fuse_loop_cfg_set_max_threads(cfg, kMaxThreads);
    // Workers above kIdleThreads that find nothing to do end (libfuse 3.14 keeps them all by default): a burst of
    // parallel requests does not leave its threads' buffers in the daemon's RSS.
    fuse_loop_cfg_set_idle_threads(cfg, kIdleThreads);
    fuse_session_loop_mt(se_, cfg);
    fuse_loop_cfg_destroy(cfg);
    std::lock_guard<std::mutex> lock(loop_mu_);
    loop_done_ = true;
    loop_cv_.notify_all();
  });
  return 0;
}

void Session::Stop() {
  if (stopped_.exchange(true)) return;
  if (bridge_ != nullptr) bridge_->CancelAll();
  if (se_ != nullptr) {
    fuse_session_exit(se_);
    if (mounted_) fuse_session_unmount(se_);  // closes /dev/fuse, detaches the mount
    if (loop_.joinable()) {
      std::unique_lock<std::mutex> lk(loop_mu_);
      if (!loop_cv_.wait_for(lk, std::chrono::seconds(2), [&] { return loop_done_; }) && !conn_abort_.empty()) {
        // Something still uses the detached mount and the workers wait for requests: end the connection.
        int fd = open(conn_abort_.c_str(), O_WRONLY | O_CLOEXEC);
        if (fd >= 0) {
          if (write(fd, "1", 1) < 0) {
          }
          close(fd);
        }
        loop_cv_.wait_for(lk, std::chrono::seconds(5), [&] { return loop_done_; });
      }
      bool done = loop_done_;
      lk.unlock();
      if (done) loop_.join(); else loop_.detach();  // never hang the caller; the threads end with the connection
    }
    if (loop_done_) {
      fuse_session_destroy(se_);
      se_ = nullptr;
    }
  }
  {
    std::lock_guard<std::mutex> lock(inval_mu_);
    notifier_stop_ = true;
    inval_cv_.notify_all();
  }
  if (notifier_.joinable()) notifier_.join();
  if (se_ == nullptr) {
    std::lock_guard<std::mutex> lock(handles_mu_);
    for (auto& kv : handles_) {
      if (kv.second->fd >= 0) close(kv.second->fd);
      kv.second->fd = -1;
    }
    handles_.clear();
    inodes_.CloseAll();
    crypt_.Clear();
  }
  if (root_fd_ >= 0) close(root_fd_);
  root_fd_ = -1;
  StopWatcher(watcher_fd_);  // after the unmount: a "q", so the watcher does nothing
  watcher_fd_ = -1;
}

void Session::QueueInval(uint64_t nodeid, const std::string& name) {
  std::lock_guard<std::mutex> lock(inval_mu_);
  inval_queue_.emplace_back(nodeid, name);
  inval_cv_.notify_all();
}

void Session::NotifierLoop() {
  for (;;) {
    std::vector<std::pair<uint64_t, std::string>> batch;
    {
      std::unique_lock<std::mutex> lk(inval_mu_);
      inval_cv_.wait(lk, [&] { return notifier_stop_ || !inval_queue_.empty(); });
      if (notifier_stop_) return;
      batch.swap(inval_queue_);
    }
    for (auto& [id, name] : batch) {
      if (stopped_) return;
      if (name.empty()) {
        fuse_lowlevel_notify_inval_inode(se_, id, 0, 0);
      } else {
        fuse_lowlevel_notify_inval_entry(se_, id, name.c_str(), name.size());
      }
    }
  }
}

int Session::Decide(fuse_req_t req, uint64_t nodeid, const std::string& path, Action action, Answer* d) {
  const struct fuse_ctx* ctx = fuse_req_ctx(req);
  Who w;
  w.pid = ctx->pid;
  w.uid = ctx->uid;
  w.gid = ctx->gid;
  FillExe(&w);
  Answer a;
  if (cache_.Get(w, action, path, &a)) {
    cache_hits++;
  } else {
    DecideCall c;
    c.uid = ctx->uid;
    c.gid = ctx->gid;
    c.pid = ctx->pid;
    c.umask = ctx->umask;
    gid_t groups[256];
    int n = CallerGroups(req, groups, 256);
    if (n > 256) n = 256;
    if (n > 0) c.gids.assign(groups, groups + n);
    c.path = path;
    c.action = action;
    c.nodeid = nodeid;
    js_calls++;
    int err = bridge_->Decide(std::move(c), &a);
    if (err != 0) return err;
    cache_.Put(w, action, path, a);
  }
  if (d != nullptr) *d = a;
  return a.ok ? 0 : (a.err != 0 ? a.err : EACCES);
}

int Session::DecideNode(fuse_req_t req, uint64_t nodeid, Action action, Answer* d) {
  std::string path;
  if (!inodes_.Path(nodeid, &path)) return ESTALE;
  return Decide(req, nodeid, path, action, d);
}

int Session::DecideChild(fuse_req_t req, uint64_t parent, const char* name, Action action, Answer* d,
                         std::string* path) {
  if (strnlen(name, kNameMax + 1) > kNameMax) return ENAMETOOLONG;
  std::string p;
  if (!inodes_.ChildPath(parent, name, &p)) return ENAMETOOLONG;
  int err = Decide(req, 0, p, action, d);
  if (path != nullptr) *path = std::move(p);
  return err;
}

std::shared_ptr<Handle> Session::AddHandle(int fd, uint64_t nodeid, bool encrypted, fuse_req_t req,
                                           uint32_t allowed) {
  auto h = std::make_shared<Handle>();
  const struct fuse_ctx* ctx = fuse_req_ctx(req);
  h->fd = fd;
  h->nodeid = nodeid;
  h->encrypted = encrypted;
  h->allowed = allowed;
  h->uid = ctx->uid;
  h->gid = ctx->gid;
  h->pid = ctx->pid;
  std::lock_guard<std::mutex> lock(handles_mu_);
  h->id = next_handle_++;
  handles_[h->id] = h;
  return h;
}

std::shared_ptr<Handle> Session::GetHandle(uint64_t id) {
  std::lock_guard<std::mutex> lock(handles_mu_);
  auto it = handles_.find(id);
  return it == handles_.end() ? nullptr : it->second;
}

std::shared_ptr<Handle> Session::TakeHandle(uint64_t id) {
  std::lock_guard<std::mutex> lock(handles_mu_);
  auto it = handles_.find(id);
  if (it == handles_.end()) return nullptr;
  auto h = it->second;
  handles_.erase(it);
  return h;
}

// Session::Allowed: the handle of fi when `action` is decided for it (deciding it now if its open did not). nullptr: *err says why.
std::shared_ptr<Handle> Session::Allowed(fuse_req_t req, struct fuse_file_info* fi, Action action, int* err) {
  auto h = GetHandle(fi->fh);
  if (h == nullptr) {
    *err = EBADF;
    return nullptr;
  }
  if (h->revoked) {
    *err = EACCES;
    return nullptr;
  }
  if ((h->allowed & Bit(action)) == 0) {
    *err = DecideNode(req, h->nodeid, action);
    if (*err != 0) return nullptr;
    h->allowed |= Bit(action);
  }
  return h;
}

size_t Session::Revoke(uint64_t id) {
  std::lock_guard<std::mutex> lock(handles_mu_);
  size_t n = 0;
  for (auto& kv : handles_) {
    if (id != 0 && kv.first != id) continue;
    kv.second->revoked = true;
    n++;
  }
  return n;
}

std::vector<std::shared_ptr<Handle>> Session::Handles() {
  std::lock_guard<std::mutex> lock(handles_mu_);
  std::vector<std::shared_ptr<Handle>> out;
  for (auto& kv : handles_) out.push_back(kv.second);
  return out;
}

int Session::Entry(uint64_t parent, const char* name, int fd, struct fuse_entry_param* e) {
  struct stat st;
  int err = StatFd(fd, &st);
  if (err != 0) {
    close(fd);
    return err;
  }
  memset(e, 0, sizeof(*e));
  e->ino = inodes_.Learn(fd, st, parent, name);
  e->attr = st;
  e->attr_timeout = opts_.attr_timeout;
  e->entry_timeout = opts_.entry_timeout;
  return 0;
}

void Session::SetHost(const std::shared_ptr<Handle>& h, std::shared_ptr<CryptNode> n) {
  std::lock_guard<std::mutex> lock(handles_mu_);
  h->host = std::move(n);
}

bool Session::JsHooked(uint64_t nodeid, uint64_t except) {
  std::lock_guard<std::mutex> lock(handles_mu_);
  for (auto& kv : handles_) {
    if (kv.first != except && kv.second->nodeid == nodeid && kv.second->encrypted && kv.second->host == nullptr &&
        !kv.second->opening) {
      return true;
    }
  }
  return false;
}

int Session::HookedSize(uint64_t nodeid, int fd, const std::string& path, struct stat* st) {
  if (!S_ISREG(st->st_mode)) return 0;
  if (auto n = crypt_.Find(st->st_dev, st->st_ino)) {  // held in host placement: its own bookkeeping
    st->st_size = static_cast<off_t>(n->PlainBytes());
    return 0;
  }
  int tmp = -1;
  if (fd < 0) {
    int nfd = inodes_.Fd(nodeid);
    if (nfd < 0) return ESTALE;
    tmp = fd = open(ProcPath(nfd).c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return errno;
  }
  uint64_t closed = 0;
  if (!JsHooked(nodeid) && crypt_.ClosedSize(fd, *st, &closed)) {  // no JS state: the header's plainSize
    if (tmp >= 0) close(tmp);
    st->st_size = static_cast<off_t>(closed);
    return 0;
  }
  IoCall c;
  c.kind = IoKind::kSize;
  c.nodeid = nodeid;
  c.fd = fd;
  c.size = static_cast<uint64_t>(st->st_size);
  c.path = path;
  IoResult r;
  int err = bridge_->Io(std::move(c), &r);
  if (tmp >= 0) close(tmp);
  if (err == 0) err = r.err;
  if (err == 0 && r.value < 0) err = EIO;
  if (err == 0) st->st_size = static_cast<off_t>(r.value);
  return err;
}

int Session::LookupEntry(uint64_t parent, const char* name, struct fuse_entry_param* e) {
  int pfd = inodes_.Fd(parent);
  if (pfd < 0) return ESTALE;
  int fd = openat(pfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return errno;
  int err = Entry(parent, name, fd, e);
  // pemfs's own names are never kept by the kernel: every use is looked up again, for the caller (reserved.h).
  if (err == 0 && IsReservedName(parent, name)) e->entry_timeout = 0;
  return err;
}

}  // namespace pem::fuse
