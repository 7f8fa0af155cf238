// Attribute ops: getattr, setattr (chmod, chown, truncate, utimens; each decided on its own action), statfs.
// Backing calls go through the node's O_PATH fd (AT_EMPTY_PATH) or its /proc/self/fd link, never a path.
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cstring>

#include "bridge.h"
#include "killpriv.h"
#include "session.h"

namespace pem::fuse {

namespace {

// Replies with the node's attributes under its getattr decision (a hooked file's size comes from the io hook).
void ReplyAttr(fuse_req_t req, Session* s, fuse_ino_t ino, int fd) {
  Answer a;
  std::string path;
  int err = s->inodes().Path(ino, &path) ? s->Decide(req, ino, path, Action::kGetattr, &a) : ESTALE;
  struct stat st;
  if (err == 0) err = StatFd(fd, &st);
  if (err == 0 && !a.bypass) err = s->HookedSize(ino, -1, path, &st);
  if (err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  fuse_reply_attr(req, &st, s->opts().attr_timeout);
}

void GetAttr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi) {
  Session* s = S(req);
  s->ops++;
  if (fi != nullptr) {  // fstat on an open handle: its open was decided
    auto h = s->GetHandle(fi->fh);
    if (h != nullptr && !h->revoked) {
      struct stat st;
      int err = fstat(h->fd, &st) == 0 ? 0 : errno;
      std::string path;
      if (err == 0 && h->encrypted) {
        s->inodes().Path(ino, &path);
        err = s->HookedSize(ino, h->fd, path, &st);
      }
      if (err != 0) {
        fuse_reply_err(req, err);
        return;
      }
      fuse_reply_attr(req, &st, s->opts().attr_timeout);
      return;
    }
  }
  int fd = NodeFd(req, s, ino);
  if (fd < 0) return;
  ReplyAttr(req, s, ino, fd);
}

// Truncation: through the handle when there is one (its write decision), else decided as 'truncate'.
// An encrypted file's truncation goes to the io hook, or to its CryptNode when held in host placement.
int Truncate(fuse_req_t req, Session* s, fuse_ino_t ino, int fd, off_t size, struct fuse_file_info* fi) {
  std::shared_ptr<Handle> h = fi != nullptr ? s->GetHandle(fi->fh) : nullptr;
  std::string path;
  s->inodes().Path(ino, &path);
  if (h != nullptr) {
    if (h->revoked) return EACCES;
    if ((h->allowed & Bit(Action::kWrite)) == 0) {
      int err = s->DecideNode(req, ino, Action::kWrite);
      if (err != 0) return err;
      h->allowed |= Bit(Action::kWrite);
    }
    if (!h->encrypted) return ftruncate(h->fd, size) == 0 ? 0 : errno;
    if (h->host != nullptr) {
      return HostCall(s, h.get(), [&] { return h->host->Truncate(static_cast<uint64_t>(size)); }, true);
    }
    IoCall c;
    c.kind = IoKind::kTruncate;
    c.fh = h->id;
    c.nodeid = ino;
    c.fd = h->fd;
    c.size = static_cast<uint64_t>(size);
    c.path = path;
    IoResult r;
    int err = s->bridge()->Io(std::move(c), &r);
    return err != 0 ? err : r.err;
  }
  Answer a;
  int err = s->Decide(req, ino, path, Action::kTruncate, &a);
  if (err != 0) return err;
  struct stat st;
  std::shared_ptr<CryptNode> held;
  if (!a.bypass && StatFd(fd, &st) == 0) held = s->crypt().Hold(st.st_dev, st.st_ino, false);
  if (held != nullptr) {  // held in host placement: truncated natively, the key asked for this caller if stale
    Handle by_path;
    const struct fuse_ctx* ctx = fuse_req_ctx(req);
    by_path.nodeid = ino;
    by_path.fd = fd;
    by_path.uid = ctx->uid;
    by_path.gid = ctx->gid;
    by_path.pid = ctx->pid;
    by_path.host = held;
    err = HostCall(s, &by_path, [&] { return held->Truncate(static_cast<uint64_t>(size)); }, true);
    s->crypt().Release(held);
    return err;
  }
  int wfd = open(ProcPath(fd).c_str(), O_WRONLY | O_CLOEXEC | O_NONBLOCK);
  if (wfd < 0) return errno;
  if (a.bypass) {
    err = ftruncate(wfd, size) == 0 ? 0 : errno;
  } else {
    IoCall c;
    c.kind = IoKind::kTruncate;
    c.nodeid = ino;
    c.fd = wfd;
    c.size = static_cast<uint64_t>(size);
    const struct fuse_ctx* ctx = fuse_req_ctx(req);
    c.uid = ctx->uid;
    c.gid = ctx->gid;
    c.pid = ctx->pid;
    c.path = path;
    IoResult r;
    err = s->bridge()->Io(std::move(c), &r);
    if (err == 0) err = r.err;
    if (err == 0 && r.host.present) {  // served natively (one engine per inode): a node for this truncation
      std::shared_ptr<CryptNode> n;
      std::string why = "the inode is served by the io hook";
      err = s->JsHooked(ino) ? EIO : s->crypt().Acquire(wfd, r.host, &n, &why);
      if (err == 0) {
        err = n->Truncate(static_cast<uint64_t>(size));
        s->crypt().Release(n);
      } else {
        HostLog(path + ": truncate refused (" + why + ")");
      }
    }
  }
  close(wfd);
  return err;
}

void SetAttr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, struct fuse_file_info* fi) {
  Session* s = S(req);
  s->ops++;
  mode_t type = 0;
  int fd = s->inodes().Fd(ino, &type);
  if (fd < 0) {
    fuse_reply_err(req, ESTALE);
    return;
  }
  int err = 0;
  if (to_set & FUSE_SET_ATTR_MODE) {
    err = s->DecideNode(req, ino, Action::kChmod);
    if (err == 0 && S_ISLNK(type)) err = EOPNOTSUPP;
    if (err == 0 && chmod(ProcPath(fd).c_str(), attr->st_mode & 07777) != 0) err = errno;
  }
  if (err == 0 && (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID))) {
    err = s->DecideNode(req, ino, Action::kChown);
    uid_t uid = (to_set & FUSE_SET_ATTR_UID) ? attr->st_uid : static_cast<uid_t>(-1);
    gid_t gid = (to_set & FUSE_SET_ATTR_GID) ? attr->st_gid : static_cast<gid_t>(-1);
    if (err == 0 && fchownat(fd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) err = errno;
  }
  if (err == 0 && (to_set & FUSE_SET_ATTR_SIZE)) {
    if (!S_ISREG(type)) err = S_ISDIR(type) ? EISDIR : EINVAL;
    if (err == 0) err = Truncate(req, s, ino, fd, attr->st_size, fi);
    if (err == 0) err = KillSuidgid(req, ino, fd);  // a truncate by a caller without CAP_FSETID (killpriv.h)
  }
  if (err == 0 && (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME))) {
    err = s->DecideNode(req, ino, Action::kUtimens);
    struct timespec ts[2];
    ts[0].tv_sec = 0;
    ts[0].tv_nsec = UTIME_OMIT;
    ts[1] = ts[0];
    if (to_set & FUSE_SET_ATTR_ATIME_NOW) ts[0].tv_nsec = UTIME_NOW;
    else if (to_set & FUSE_SET_ATTR_ATIME) ts[0] = attr->st_atim;
    if (to_set & FUSE_SET_ATTR_MTIME_NOW) ts[1].tv_nsec = UTIME_NOW;
    else if (to_set & FUSE_SET_ATTR_MTIME) ts[1] = attr->st_mtim;
    if (err == 0) {
      // The /proc/self/fd link of a symlink node lands on the symlink itself: AT_SYMLINK_NOFOLLOW is not needed.
      if (utimensat(AT_FDCWD, ProcPath(fd).c_str(), ts, 0) != 0) err = errno;
    }
  }
  if (err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  ReplyAttr(req, s, ino, fd);
}

void StatFs(fuse_req_t req, fuse_ino_t ino) {
  Session* s = S(req);
  s->ops++;
  int err = s->DecideNode(req, ino, Action::kStatfs);
  if (err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  struct statvfs v;
  if (fstatvfs(s->root_fd(), &v) != 0) {
    fuse_reply_err(req, errno);
    return;
  }
  v.f_namemax = kNameMax;
  fuse_reply_statfs(req, &v);
}

}  // namespace

void AddAttrOps(struct fuse_lowlevel_ops* ops) {
  ops->getattr = GetAttr;
  ops->setattr = SetAttr;
  ops->statfs = StatFs;
}

}  // namespace pem::fuse
