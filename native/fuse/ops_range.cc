// Range ops of an open handle, on its backing fd with the handle's decisions: fallocate, lseek (SEEK_DATA/SEEK_HOLE)
// and copy_file_range. Hooked (encrypted) handles get EOPNOTSUPP: their holes and bytes are not the backing file's.
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "session.h"

namespace pem::fuse {

namespace {

void Fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length, struct fuse_file_info* fi) {
  Session* s = S(req);
  s->ops++;
  int err = 0;
  auto h = s->Allowed(req, fi, Action::kWrite, &err);
  (void)ino;
  if (h == nullptr) {
    fuse_reply_err(req, err);
    return;
  }
  if (h->encrypted) {
    fuse_reply_err(req, EOPNOTSUPP);
    return;
  }
  fuse_reply_err(req, fallocate(h->fd, mode, offset, length) == 0 ? 0 : errno);
}

void Lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, struct fuse_file_info* fi) {
  Session* s = S(req);
  auto h = s->GetHandle(fi->fh);
  (void)ino;
  if (h == nullptr || h->encrypted) {  // an encrypted file's holes are not the backing file's
    fuse_reply_err(req, h == nullptr ? EBADF : EOPNOTSUPP);
    return;
  }
  off_t r = lseek(h->fd, off, whence);
  if (r < 0) {
    fuse_reply_err(req, errno);
    return;
  }
  fuse_reply_lseek(req, r);
}

void CopyFileRange(fuse_req_t req, fuse_ino_t ino_in, off_t off_in, struct fuse_file_info* fi_in,
                   fuse_ino_t ino_out, off_t off_out, struct fuse_file_info* fi_out, size_t len, int flags) {
  Session* s = S(req);
  s->ops++;
  int err = 0;
  auto in = s->Allowed(req, fi_in, Action::kRead, &err);
  auto out = in != nullptr ? s->Allowed(req, fi_out, Action::kWrite, &err) : nullptr;
  (void)ino_in;
  (void)ino_out;
  if (in == nullptr || out == nullptr) {
    fuse_reply_err(req, err);
    return;
  }
  if (in->encrypted || out->encrypted) {  // the caller falls back to read + write, which the hook serves
    fuse_reply_err(req, EOPNOTSUPP);
    return;
  }
  ssize_t n = copy_file_range(in->fd, &off_in, out->fd, &off_out, len, static_cast<unsigned>(flags));
  if (n < 0) {
    fuse_reply_err(req, errno);
    return;
  }
  fuse_reply_write(req, static_cast<size_t>(n));
}

}  // namespace

void AddRangeOps(struct fuse_lowlevel_ops* ops) {
  ops->fallocate = Fallocate;
  ops->lseek = Lseek;
  ops->copy_file_range = CopyFileRange;
}

}  // namespace pem::fuse
