// Data ops: open/create decide the handle's actions once (read, write, truncate for O_TRUNC; create) and the handle
// holds them; read/write/flush/fsync/release (and ops_range.cc) then never ask again. A bypass handle
// does its I/O on the backing fd here; an encrypted one (a decision with bypass: false) sends its data calls to the
// JS io hook (bridge.h) and waits for the answer, unless it is in host placement (the open's answer handed over the
// file's key): then its CryptNode serves them on this thread (crypt_node.h).
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "bridge.h"
#include "creds.h"
#include "killpriv.h"
#include "session.h"

namespace pem::fuse {

namespace {

// O_DIRECT would demand aligned buffers of the backing file; the kernel has handled creation flags; O_NOFOLLOW cannot
// apply to the /proc/self/fd link (it is one by design). O_APPEND stays on a bypass handle's backing fd, where pwrite
// appends at the true end whatever offset the kernel sent (its size can be stale: docs/PEMFS.md "O_APPEND"); an
// encrypted handle's io hook places its appends itself, so its fd goes without.
constexpr int kStrip = O_DIRECT | O_CREAT | O_EXCL | O_NOCTTY | O_NOFOLLOW;

uint32_t Needed(int flags) {
  int acc = flags & O_ACCMODE;
  uint32_t bits = acc == O_RDONLY ? Bit(Action::kRead) : acc == O_WRONLY ? Bit(Action::kWrite)
                                                                           : Bit(Action::kRead) | Bit(Action::kWrite);
  if (flags & O_TRUNC) bits |= Bit(Action::kTruncate);
  return bits;
}

// One io call of handle h (flush, fsync, release, open, key); 0 or errno. *r gets the answer when given.
int Hook(Session* s, const std::shared_ptr<Handle>& h, IoKind kind, int flags, const std::string& path = "",
         IoResult* r = nullptr, uint32_t pool = 0) {
  IoCall c;
  c.kind = kind;
  c.pool = pool;
  c.fh = h->id;
  c.nodeid = h->nodeid;
  c.fd = h->fd;
  c.flags = flags;
  c.uid = h->uid;
  c.gid = h->gid;
  c.pid = h->pid;
  c.path = path;
  IoResult own;
  if (r == nullptr) r = &own;
  int err = s->bridge()->Io(std::move(c), r);
  return err != 0 ? err : r->err;
}

// An encrypted handle's open: served natively when its inode is held with a live key or grant, or when it is a new
// file whose create decision names a pool with a spare key left; else by the JS io hook, whose answer may hand over
// the file's key (host placement) or grant (appliance placement on the native block path) and, for a new file under
// host placement, spares for the pool. 0 or errno.
int OpenEncrypted(Session* s, const std::shared_ptr<Handle>& h, int flags, const std::string& path, uint32_t pool) {
  // Concurrent opens of one inode: a handle still being answered is neither JS's nor native yet.
  struct Opening {
    Handle* h;
    explicit Opening(Handle* x) : h(x) { h->opening = true; }
    ~Opening() { h->opening = false; }
  } opening(h.get());
  struct stat st;
  if (fstat(h->fd, &st) != 0) return errno;
  std::shared_ptr<CryptNode> n = s->crypt().Hold(st.st_dev, st.st_ino, true);
  if (n == nullptr && (flags & O_CREAT) && st.st_size == 0 && !s->JsHooked(h->nodeid, h->id)) {
    IoResult spare;
    if (s->crypt().TakeSpare(pool, &spare.host)) {
      std::string why;
      int err = s->crypt().Acquire(h->fd, spare.host, &n, &why);
      if (err != 0 && err != ESTALE) {
        HostLog(path + ": open refused (" + why + ")");
        return err;
      }
      // ESTALE: a racing create's header landed first; the io hook answers with that file's header below
    }
  }
  for (int attempt = 0; n == nullptr; attempt++) {
    IoResult r;
    int err = Hook(s, h, IoKind::kOpen, flags, path, &r, (flags & O_CREAT) ? pool : 0);
    if (err != 0) return err;
    if (flags & O_CREAT) s->crypt().PutSpares(pool, r.spares);
    std::string why;
    if (!r.host.present) {
      if (s->crypt().Find(st.st_dev, st.st_ino) == nullptr) return 0;  // served by the io hook
      why = "the io hook answered without hostKey for an inode held in host placement";
      err = EIO;
      Hook(s, h, IoKind::kRelease, 0);
    } else if (s->JsHooked(h->nodeid, h->id)) {
      why = "the io hook handed over the key of an inode it serves itself";
      err = EIO;
    } else {
      err = s->crypt().Acquire(h->fd, r.host, &n, &why);
      if (err == ESTALE && attempt == 0) continue;  // a racing create's header landed: the io hook sees it now
      if (err == ESTALE) err = EIO;
    }
    if (err != 0) {
      HostLog(path + ": open refused (" + why + ")");
      return err;
    }
  }
  int err = (flags & O_TRUNC) ? n->Truncate(0) : 0;
  if (err != 0) {
    s->crypt().Release(n);
    return err;
  }
  s->SetHost(h, std::move(n));
  return 0;
}

// Decides `bits` for the node and opens a handle on the backing fd `bfd` (taken). 0 or errno; on failure the
// handle is dropped.
int Finish(fuse_req_t req, Session* s, fuse_ino_t ino, int bfd, int flags, uint32_t bits, bool encrypted,
           const std::string& path, struct fuse_file_info* fi, uint32_t pool = 0) {
  auto h = s->AddHandle(bfd, ino, encrypted, req, bits);
  h->append = (flags & O_APPEND) != 0;
  if (encrypted) {
    int err = OpenEncrypted(s, h, flags, path, pool);
    if (err != 0) {
      s->TakeHandle(h->id);
      close(h->fd);
      return err;
    }
  }
  fi->fh = h->id;
  return 0;
}

int DecideBits(fuse_req_t req, Session* s, fuse_ino_t ino, const std::string& path, uint32_t bits, bool* encrypted) {
  for (unsigned a = 0; a < static_cast<unsigned>(Action::kCount); a++) {
    if ((bits & (1u << a)) == 0) continue;
    Answer d;
    int err = s->Decide(req, ino, path, static_cast<Action>(a), &d);
    if (err != 0) return err;
    if (!d.bypass) *encrypted = true;
  }
  return 0;
}

void Open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi) {
  Session* s = S(req);
  s->ops++;
  mode_t type = 0;
  int fd = s->inodes().Fd(ino, &type);
  std::string path;
  if (fd < 0 || !s->inodes().Path(ino, &path)) {
    fuse_reply_err(req, ESTALE);
    return;
  }
  if (!S_ISREG(type)) {
    fuse_reply_err(req, S_ISDIR(type) ? EISDIR : ENXIO);
    return;
  }
  uint32_t bits = Needed(fi->flags);
  bool encrypted = false;
  int err = DecideBits(req, s, ino, path, bits, &encrypted);
  if (err == 0 && (fi->flags & O_TRUNC)) err = KillSuidgid(req, ino, fd);  // an O_TRUNC without CAP_FSETID (killpriv.h)
  if (err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  int flags = (fi->flags & ~kStrip) | O_CLOEXEC;
  if (encrypted) flags &= ~(O_TRUNC | O_APPEND);  // the io hook truncates and appends (it knows the format)
  int bfd = open(ProcPath(fd).c_str(), flags);
  if (bfd < 0) {
    fuse_reply_err(req, errno);
    return;
  }
  err = Finish(req, s, ino, bfd, fi->flags, bits, encrypted, path, fi);
  if (err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  fuse_reply_open(req, fi);
}

void Create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, struct fuse_file_info* fi) {
  Session* s = S(req);
  s->ops++;
  if (strnlen(name, kNameMax + 1) > kNameMax) {
    fuse_reply_err(req, ENAMETOOLONG);
    return;
  }
  int pfd = s->inodes().Fd(parent);
  if (pfd < 0) {
    fuse_reply_err(req, ESTALE);
    return;
  }
  if (s->reserved().HiddenFrom(req, parent, name)) {  // pemfs's own names (reserved.h)
    fuse_reply_err(req, EACCES);
    return;
  }
  Answer d;
  std::string path;
  int err = s->DecideChild(req, parent, name, Action::kCreate, &d, &path);
  if (err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  bool encrypted = !d.bypass;
  int flags = (fi->flags & ~kStrip & ~O_TRUNC) | O_CLOEXEC;
  if (encrypted) flags &= ~O_APPEND;
  int bfd = -1;
  {
    CallerCreds cc(req);
    if (!cc.ok()) {
      fuse_reply_err(req, cc.err());
      return;
    }
    // O_EXCL | O_NOFOLLOW: a name that appeared meanwhile (or a planted symlink) is never followed or reused here.
    bfd = openat(pfd, name, flags | O_CREAT | O_EXCL | O_NOFOLLOW, mode & 07777);
    if (bfd < 0) err = errno;
  }
  uint32_t bits = Bit(Action::kWrite);  // create answers for the writes; a read through it is decided at first read
  if (err == EEXIST && !(fi->flags & O_EXCL)) {
    // Lost a race with another creator: open the existing file as open() would, with its own decisions.
    struct fuse_entry_param e;
    err = s->LookupEntry(parent, name, &e);
    if (err == 0) {
      bits = Needed(fi->flags);
      encrypted = false;
      err = DecideBits(req, s, e.ino, path, bits, &encrypted);
      if (err == 0 && (fi->flags & O_TRUNC)) err = KillSuidgid(req, e.ino, s->inodes().Fd(e.ino));  // killpriv.h
      if (err == 0) {
        bfd = openat(pfd, name, (encrypted ? flags & ~O_APPEND : flags | (fi->flags & O_APPEND)) | O_NOFOLLOW);
        if (bfd < 0) err = errno;
      }
      if (err == 0) err = Finish(req, s, e.ino, bfd, fi->flags & ~O_CREAT, bits, encrypted, path, fi);
      if (err == 0) {
        fuse_reply_create(req, &e, fi);
        return;
      }
      s->inodes().Forget(e.ino, 1);
    }
    fuse_reply_err(req, err);
    return;
  }
  if (err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  struct fuse_entry_param e;
  err = s->LookupEntry(parent, name, &e);
  if (err == 0) {
    err = Finish(req, s, e.ino, bfd, fi->flags, bits, encrypted, path, fi, d.pool);
    if (err != 0) s->inodes().Forget(e.ino, 1);
  } else {
    close(bfd);
  }
  if (err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  fuse_reply_create(req, &e, fi);
}

// A worker's read buffer: kMaxWrite bytes allocated once and never cleared, so only the pages a read has filled
// count in the daemon's RSS (a zero-filled vector made every worker that ever read hold 1 MiB).
thread_local std::unique_ptr<char[]> t_buf;

char* ReadBuf() {
  if (!t_buf) t_buf.reset(new char[kMaxWrite]);
  return t_buf.get();
}

// A native handle's flush or fsync: through HostCall (a fresh sealer) only when writes are behind, so a handle with
// nothing behind never asks for a key to close.
int HostFlush(Session* s, Handle* h, const std::function<int()>& call) {
  return h->host->Unsettled() ? HostCall(s, h, call, true) : call();
}

void Read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info* fi) {
  Session* s = S(req);
  s->ops++;
  int err = 0;
  auto h = s->Allowed(req, fi, Action::kRead, &err);
  if (h == nullptr) {
    fuse_reply_err(req, err);
    return;
  }
  if (size > kMaxWrite) size = kMaxWrite;
  if (h->host != nullptr) {
    char* buf = ReadBuf();
    size_t got = 0;
    err = HostCall(s, h.get(), [&] { return h->host->Read(reinterpret_cast<uint8_t*>(buf), size, off, &got); });
    s->crypt().reads++;
    s->crypt().bytes_read += got;
    if (err != 0) {
      fuse_reply_err(req, err);
      return;
    }
    fuse_reply_buf(req, buf, got);
    return;
  }
  if (h->encrypted) {
    IoCall c;
    c.kind = IoKind::kRead;
    c.fh = h->id;
    c.nodeid = ino;
    c.fd = h->fd;
    c.offset = off;
    c.size = size;
    IoResult r;
    err = s->bridge()->Io(std::move(c), &r);
    if (err == 0) err = r.err;
    if (err == 0 && r.data.size() > size) err = EIO;
    if (err != 0) {
      fuse_reply_err(req, err);
      return;
    }
    fuse_reply_buf(req, reinterpret_cast<const char*>(r.data.data()), r.data.size());
    return;
  }
  char* buf = ReadBuf();
  size_t got = 0;
  while (got < size) {
    ssize_t n = pread(h->fd, buf + got, size - got, off + static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      if (got == 0) {
        fuse_reply_err(req, errno);
        return;
      }
      break;
    }
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  fuse_reply_buf(req, buf, got);
}

void Write(fuse_req_t req, fuse_ino_t ino, const char* buf, size_t size, off_t off, struct fuse_file_info* fi) {
  Session* s = S(req);
  s->ops++;
  int err = 0;
  auto h = s->Allowed(req, fi, Action::kWrite, &err);
  if (h != nullptr) err = KillSuidgid(req, ino, s->inodes().Fd(ino));  // a writer without CAP_FSETID (killpriv.h)
  if (h == nullptr || err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  if (h->host != nullptr) {
    size_t wrote = 0;
    err = HostCall(s, h.get(), [&] { return h->host->Write(reinterpret_cast<const uint8_t*>(buf), size, off, h->append, h->id, &wrote); }, true);
    s->crypt().writes++;
    s->crypt().bytes_written += wrote;
    if (err != 0) {
      fuse_reply_err(req, err);
      return;
    }
    fuse_reply_write(req, wrote);
    return;
  }
  if (h->encrypted) {
    IoCall c;
    c.kind = IoKind::kWrite;
    c.fh = h->id;
    c.nodeid = ino;
    c.fd = h->fd;
    c.offset = off;
    c.size = size;
    c.data.assign(buf, buf + size);
    IoResult r;
    err = s->bridge()->Io(std::move(c), &r);
    if (err == 0) err = r.err;
    if (err == 0 && (r.value < 0 || static_cast<uint64_t>(r.value) > size)) err = EIO;
    if (err != 0) {
      fuse_reply_err(req, err);
      return;
    }
    fuse_reply_write(req, static_cast<size_t>(r.value));
    return;
  }
  ssize_t n;
  do {
    n = pwrite(h->fd, buf, size, off);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    fuse_reply_err(req, errno);
    return;
  }
  fuse_reply_write(req, static_cast<size_t>(n));
}

void Flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi) {
  Session* s = S(req);
  auto h = s->GetHandle(fi->fh);
  (void)ino;
  if (h != nullptr && h->host != nullptr) {  // its writes behind are sealed and written; their errors are its own
    fuse_reply_err(req, HostFlush(s, h.get(), [&] { return h->host->Flush(h->id); }));
    return;
  }
  fuse_reply_err(req, h != nullptr && h->encrypted ? Hook(s, h, IoKind::kFlush, 0) : 0);
}

void Fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info* fi) {
  Session* s = S(req);
  auto h = s->GetHandle(fi->fh);
  (void)ino;
  if (h == nullptr) {
    fuse_reply_err(req, EBADF);
    return;
  }
  if (h->host != nullptr) {
    fuse_reply_err(req, HostFlush(s, h.get(), [&] { return h->host->Sync(datasync != 0, h->id); }));
    return;
  }
  if (h->encrypted) {
    fuse_reply_err(req, Hook(s, h, IoKind::kFsync, datasync));
    return;
  }
  int r = datasync ? fdatasync(h->fd) : fsync(h->fd);
  fuse_reply_err(req, r == 0 ? 0 : errno);
}

void Release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi) {
  Session* s = S(req);
  auto h = s->TakeHandle(fi->fh);
  (void)ino;
  if (h != nullptr) {
    if (h->host != nullptr) {
      h->host->ForgetHandle(h->id);
      s->crypt().Release(h->host);  // the last handle of the node waits for its writes behind and wipes its key
      h->host = nullptr;
    } else if (h->encrypted) {
      Hook(s, h, IoKind::kRelease, 0);  // the fd outlives the hook's pending writes
    }
    close(h->fd);
    h->fd = -1;
  }
  fuse_reply_err(req, 0);
}

}  // namespace

int FreshHostKey(Session* s, Handle* h) {
  CryptNode* n = h->host.get();
  if (n->KeyLive()) return 0;
  std::lock_guard<std::mutex> lock(n->key_mu);
  if (n->KeyLive()) return 0;  // another worker asked meanwhile
  IoCall c;
  c.kind = IoKind::kKey;
  c.fh = h->id;
  c.nodeid = h->nodeid;
  c.fd = h->fd;
  c.uid = h->uid;
  c.gid = h->gid;
  c.pid = h->pid;
  // What the handle was decided for, kKeyServerLost when the last sealer's server timed out or closed (mark it
  // down), kKeyRemote when the node is on the native block path.
  c.flags = ((h->allowed.load() & Bit(Action::kWrite)) ? O_RDWR : O_RDONLY) | (n->TakeServerLost() ? kKeyServerLost : 0) |
            (n->remote() ? kKeyRemote : 0);
  c.data = n->header();  // the node's header: the key asked for must be this file's (racing creates share one node)
  s->inodes().Path(h->nodeid, &c.path);
  s->crypt().key_calls++;
  IoResult r;
  int err = s->bridge()->Io(std::move(c), &r);
  if (err == 0) err = r.err;
  std::string why;
  std::shared_ptr<BlockSealer> sealer;
  if (err == 0 && r.host.present) sealer = s->crypt().SealerFor(r.host, n->cipher_id(), &why);
  if (err == 0) err = sealer != nullptr ? n->InstallKey(r.host, sealer) : r.host.remote ? EHOSTUNREACH : EIO;
  if (err == 0) (r.host.remote ? s->crypt().grants : s->crypt().keys)++;
  if (err == EACCES) h->revoked = true;
  return err;
}

int HostCall(Session* s, Handle* h, const std::function<int()>& call, bool persist) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(kPersistMs);
  // A sealer lost behind the caller's back (by a write behind) counts as this call's first loss.
  int drops = 0, losses = h->host->SealerLost() ? 1 : 0;
  for (;;) {
    int err = FreshHostKey(s, h);
    if (err == 0) err = call();
    if (err == kKeyDropped) {
      if (++drops < 3) continue;
      return EIO;  // dropped again after each new key: a storm of revocations, never stale key bytes
    }
    const bool lost = IsSealerLost(err) || (losses > 0 && persist && err == EHOSTUNREACH);
    if (!lost) return err;
    losses++;
    if (losses > 1 && (!persist || std::chrono::steady_clock::now() >= until)) return IsSealerLost(err) ? EHOSTUNREACH : err;
    if (losses > 2) std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
}

void AddIoOps(struct fuse_lowlevel_ops* ops) {
  ops->open = Open;
  ops->create = Create;
  ops->read = Read;
  ops->write = Write;
  ops->flush = Flush;
  ops->fsync = Fsync;
  ops->release = Release;
}

}  // namespace pem::fuse
