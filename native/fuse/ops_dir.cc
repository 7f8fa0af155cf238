// Name ops: lookup/forget, readlink, mknod/mkdir/symlink/link/unlink/rmdir/rename (as the caller: creds.h) and
// directory listing. Every backing call is relative to the parent's O_PATH fd with one name: never a path, never
// following a symlink (O_NOFOLLOW, AT_SYMLINK_NOFOLLOW), so nothing leaves the backing root.
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <mutex>

#include "creds.h"
#include "session.h"

namespace pem::fuse {

struct DirHandle {
  DIR* dir = nullptr;
  std::mutex mu;
  off_t offset = 0;  // where dir stands (d_off of the last entry handed out)
};

namespace {

bool BadName(const char* name, int* err) {
  size_t n = strnlen(name, kNameMax + 1);
  if (n > kNameMax) {
    *err = ENAMETOOLONG;
    return true;
  }
  if (n == 0 || strcmp(name, ".") == 0 || strcmp(name, "..") == 0 || strchr(name, '/') != nullptr) {
    *err = EINVAL;
    return true;
  }
  return false;
}

// The fd of `parent` for an operation on parent/name, or -1 once the request was answered with the error (a bad
// name, or a parent the kernel still names but this session no longer holds).
int ParentFd(fuse_req_t req, Session* s, fuse_ino_t parent, const char* name) {
  int err = 0;
  if (BadName(name, &err)) {
    fuse_reply_err(req, err);
    return -1;
  }
  int pfd = s->inodes().Fd(parent);
  if (pfd < 0) fuse_reply_err(req, ESTALE);
  return pfd;
}

void Lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Session* s = S(req);
  s->ops++;
  int err = 0;
  if (BadName(name, &err)) {
    fuse_reply_err(req, err);
    return;
  }
  if (s->reserved().HiddenFrom(req, parent, name)) {  // not there, and no negative entry the kernel would keep for all
    fuse_reply_err(req, ENOENT);
    return;
  }
  Answer a;
  std::string path;
  err = s->DecideChild(req, parent, name, Action::kGetattr, &a, &path);
  if (err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  struct fuse_entry_param e;
  err = s->LookupEntry(parent, name, &e);
  if (err == 0 && !a.bypass) {
    err = s->HookedSize(e.ino, -1, path, &e.attr);
    if (err != 0) s->inodes().Forget(e.ino, 1);
  }
  if (err == ENOENT) {  // a negative entry the kernel may keep
    memset(&e, 0, sizeof(e));
    e.entry_timeout = s->opts().entry_timeout;
    fuse_reply_entry(req, &e);
    return;
  }
  if (err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  fuse_reply_entry(req, &e);
}

void Forget(fuse_req_t req, fuse_ino_t ino, uint64_t n) {
  S(req)->inodes().Forget(ino, n);
  fuse_reply_none(req);
}

void ForgetMulti(fuse_req_t req, size_t count, struct fuse_forget_data* forgets) {
  Session* s = S(req);
  for (size_t i = 0; i < count; i++) s->inodes().Forget(forgets[i].ino, forgets[i].nlookup);
  fuse_reply_none(req);
}

void ReadLink(fuse_req_t req, fuse_ino_t ino) {
  Session* s = S(req);
  s->ops++;
  int fd = NodeFd(req, s, ino);
  if (fd < 0) return;
  int err = s->DecideNode(req, ino, Action::kReadlink);
  if (err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  char buf[kPathMax + 2];
  ssize_t n = readlinkat(fd, "", buf, sizeof(buf));
  if (n < 0) {
    fuse_reply_err(req, errno);
    return;
  }
  if (static_cast<size_t>(n) >= sizeof(buf)) {
    fuse_reply_err(req, ENAMETOOLONG);
    return;
  }
  buf[n] = '\0';
  fuse_reply_readlink(req, buf);
}

// Creates parent/name with `make` as the caller, then replies with the new entry.
template <typename F>
void MakeEntry(fuse_req_t req, fuse_ino_t parent, const char* name, Action action, F make) {
  Session* s = S(req);
  s->ops++;
  int pfd = ParentFd(req, s, parent, name);
  if (pfd < 0) return;
  if (s->reserved().HiddenFrom(req, parent, name)) {
    fuse_reply_err(req, EACCES);
    return;
  }
  Answer a;
  std::string path;
  int err = s->DecideChild(req, parent, name, action, &a, &path);
  if (err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  {
    CallerCreds cc(req);
    if (!cc.ok()) {
      fuse_reply_err(req, cc.err());
      return;
    }
    if (make(pfd) != 0) err = errno;
  }
  if (err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  struct fuse_entry_param e;
  err = s->LookupEntry(parent, name, &e);
  if (err == 0 && !a.bypass) {  // a hard link to an encrypted file: the size applications see, from the io hook
    err = s->HookedSize(e.ino, -1, path, &e.attr);
    if (err != 0) s->inodes().Forget(e.ino, 1);
  }
  if (err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  fuse_reply_entry(req, &e);
}

void MkNod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) {
  MakeEntry(req, parent, name, Action::kCreate, [&](int pfd) { return mknodat(pfd, name, mode, rdev); });
}

void MkDir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  MakeEntry(req, parent, name, Action::kMkdir, [&](int pfd) { return mkdirat(pfd, name, mode & 07777); });
}

void SymLink(fuse_req_t req, const char* link, fuse_ino_t parent, const char* name) {
  if (strnlen(link, kPathMax + 1) > kPathMax) {
    fuse_reply_err(req, ENAMETOOLONG);
    return;
  }
  MakeEntry(req, parent, name, Action::kSymlink, [&](int pfd) { return symlinkat(link, pfd, name); });
}

void Link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char* newname) {
  Session* s = S(req);
  int fd = NodeFd(req, s, ino);
  if (fd < 0) return;
  int err = s->DecideNode(req, ino, Action::kLink);
  if (err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  // linkat(fd, "", ..., AT_EMPTY_PATH) needs CAP_DAC_READ_SEARCH, which the caller's fsuid drops: link through the
  // /proc/self/fd link instead (AT_SYMLINK_FOLLOW follows the magic link to the inode, not any symlink).
  std::string proc = ProcPath(fd);
  MakeEntry(req, newparent, newname, Action::kLink,
            [&](int pfd) { return linkat(AT_FDCWD, proc.c_str(), pfd, newname, AT_SYMLINK_FOLLOW); });
}

// Removes parent/name (unlink or rmdir) as the caller; the node (if known) is marked unlinked.
void Remove(fuse_req_t req, fuse_ino_t parent, const char* name, Action action, int flags) {
  Session* s = S(req);
  s->ops++;
  int pfd = ParentFd(req, s, parent, name);
  if (pfd < 0) return;
  if (s->reserved().HiddenFrom(req, parent, name)) {
    fuse_reply_err(req, ENOENT);
    return;
  }
  int err = s->DecideChild(req, parent, name, action);
  if (err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  struct stat st;
  bool known = fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
  {
    CallerCreds cc(req);
    if (!cc.ok()) {
      fuse_reply_err(req, cc.err());
      return;
    }
    if (unlinkat(pfd, name, flags) != 0) err = errno;
  }
  if (err == 0 && known) s->inodes().Unlinked(st.st_dev, st.st_ino, parent, name);
  fuse_reply_err(req, err);
}

void Unlink(fuse_req_t req, fuse_ino_t parent, const char* name) { Remove(req, parent, name, Action::kDelete, 0); }
void RmDir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Remove(req, parent, name, Action::kRmdir, AT_REMOVEDIR);
}

void Rename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent, const char* newname,
            unsigned int flags) {
  Session* s = S(req);
  s->ops++;
  int err = 0;
  if (BadName(name, &err) || BadName(newname, &err)) {
    fuse_reply_err(req, err);
    return;
  }
  if (s->reserved().HiddenFrom(req, parent, name) || s->reserved().HiddenFrom(req, newparent, newname)) {
    fuse_reply_err(req, IsReservedName(parent, name) ? ENOENT : EACCES);
    return;
  }
  int pfd = s->inodes().Fd(parent);
  int npfd = s->inodes().Fd(newparent);
  if (pfd < 0 || npfd < 0) {
    fuse_reply_err(req, ESTALE);
    return;
  }
  err = s->DecideChild(req, parent, name, Action::kRename);
  if (err == 0) err = s->DecideChild(req, newparent, newname, Action::kRename);
  if (err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  struct stat st, dst;
  bool known = fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
  bool replaced = fstatat(npfd, newname, &dst, AT_SYMLINK_NOFOLLOW) == 0;
  {
    CallerCreds cc(req);
    if (!cc.ok()) {
      fuse_reply_err(req, cc.err());
      return;
    }
    if (renameat2(pfd, name, npfd, newname, flags) != 0) err = errno;
  }
  if (err == 0) {
    if (replaced && (flags & RENAME_EXCHANGE)) {
      s->inodes().Renamed(dst.st_dev, dst.st_ino, newparent, newname, parent, name);
    } else if (replaced) {
      s->inodes().Unlinked(dst.st_dev, dst.st_ino, newparent, newname);
    }
    if (known) s->inodes().Renamed(st.st_dev, st.st_ino, parent, name, newparent, newname);
  }
  fuse_reply_err(req, err);
}

void OpenDir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi) {
  Session* s = S(req);
  s->ops++;
  int fd = NodeFd(req, s, ino);
  if (fd < 0) return;
  int err = s->DecideNode(req, ino, Action::kList);  // held by the handle: readdir never asks again
  if (err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  int dfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) {
    fuse_reply_err(req, errno);
    return;
  }
  DIR* d = fdopendir(dfd);
  if (d == nullptr) {
    err = errno;
    close(dfd);
    fuse_reply_err(req, err);
    return;
  }
  DirHandle* dh = new DirHandle();
  dh->dir = d;
  fi->fh = reinterpret_cast<uint64_t>(dh);
  if (fuse_reply_open(req, fi) != 0) {
    closedir(d);
    delete dh;
  }
}

void ReadDir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info* fi) {
  DirHandle* dh = reinterpret_cast<DirHandle*>(fi->fh);
  if (size > kMaxWrite) size = kMaxWrite;
  std::vector<char> buf(size);
  size_t used = 0;
  int err = 0;
  int hide = -1;  // pemfs's own names are not listed (reserved.h); who is served them is asked at the first one
  {
    std::lock_guard<std::mutex> lock(dh->mu);
    if (off != dh->offset) {
      seekdir(dh->dir, off);
      dh->offset = off;
    }
    for (;;) {
      errno = 0;
      long before = telldir(dh->dir);
      struct dirent* de = readdir(dh->dir);
      if (de == nullptr) {
        if (errno != 0 && used == 0) err = errno;
        break;
      }
      if (IsReservedName(ino, de->d_name)) {
        if (hide < 0) hide = S(req)->reserved().Serves(req) ? 0 : 1;
        if (hide == 1) {
          dh->offset = de->d_off;
          continue;
        }
      }
      struct stat st;
      memset(&st, 0, sizeof(st));
      st.st_ino = de->d_ino;
      st.st_mode = static_cast<mode_t>(de->d_type) << 12;
      size_t n = fuse_add_direntry(req, buf.data() + used, size - used, de->d_name, &st, de->d_off);
      if (n > size - used) {  // does not fit: hand it out next time
        seekdir(dh->dir, before);
        break;
      }
      used += n;
      dh->offset = de->d_off;
    }
  }
  // Only after the lock is gone: once the kernel has its answer it may send RELEASEDIR, which frees dh on another
  // worker thread (test/pem-fs/backing-race.test.ts found this as a crash: the unlock wrote to freed memory).
  if (err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  fuse_reply_buf(req, buf.data(), used);
}

void ReleaseDir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi) {
  DirHandle* dh = reinterpret_cast<DirHandle*>(fi->fh);
  closedir(dh->dir);
  delete dh;
  (void)ino;
  fuse_reply_err(req, 0);
}

void FsyncDir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info* fi) {
  DirHandle* dh = reinterpret_cast<DirHandle*>(fi->fh);
  int fd = dirfd(dh->dir);
  int r = datasync ? fdatasync(fd) : fsync(fd);
  (void)ino;
  fuse_reply_err(req, r == 0 ? 0 : errno);
}

}  // namespace

void AddDirOps(struct fuse_lowlevel_ops* ops) {
  ops->lookup = Lookup;
  ops->forget = Forget;
  ops->forget_multi = ForgetMulti;
  ops->readlink = ReadLink;
  ops->mknod = MkNod;
  ops->mkdir = MkDir;
  ops->symlink = SymLink;
  ops->link = Link;
  ops->unlink = Unlink;
  ops->rmdir = RmDir;
  ops->rename = Rename;
  ops->opendir = OpenDir;
  ops->readdir = ReadDir;
  ops->releasedir = ReleaseDir;
  ops->fsyncdir = FsyncDir;
}

}  // namespace pem::fuse
