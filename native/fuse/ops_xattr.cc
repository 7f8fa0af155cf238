// Extended attributes, stored on the backing object: user.*, trusted.*, security.* and the POSIX ACLs
// (system.posix_acl_access/default, with FUSE_CAP_POSIX_ACL the kernel enforces them; the kernel lets only
// CAP_SYS_ADMIN reach trusted.*, and lists show trusted.* to root callers only, as ext4 does). pemfs's own names
// (user.pemfs.*, trusted.pemfs.*, security.pemfs.*) are refused: set/remove EPERM, get ENODATA, left out of lists.
// Reads of security.* and the ACLs are not decided: the kernel itself asks for them (file capabilities on every
// write, ACLs on permission checks). user.* and trusted.* reads are decided as 'xattr', and so is every set or remove.
#include <errno.h>
#include <linux/limits.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "bridge.h"
#include "session.h"

namespace pem::fuse {

namespace {

bool Starts(const char* s, const char* prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

bool Private(const char* name) {
  return Starts(name, "user.pemfs.") || Starts(name, "trusted.pemfs.") || Starts(name, "security.pemfs.");
}

bool Allowed(const char* name) {
  if (Private(name)) return false;
  return Starts(name, "user.") || Starts(name, "trusted.") || Starts(name, "security.") || strcmp(name, "system.posix_acl_access") == 0 ||
         strcmp(name, "system.posix_acl_default") == 0;
}

bool Decided(const char* name) { return Starts(name, "user.") || Starts(name, "trusted."); }

void SetXattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size, int flags) {
  Session* s = S(req);
  s->ops++;
  if (strnlen(name, XATTR_NAME_MAX + 1) > XATTR_NAME_MAX || size > kXattrMax) {
    fuse_reply_err(req, size > kXattrMax ? E2BIG : ERANGE);
    return;
  }
  if (!Allowed(name)) {
    fuse_reply_err(req, Private(name) ? EPERM : EOPNOTSUPP);
    return;
  }
  int fd = NodeFd(req, s, ino);
  if (fd < 0) return;
  int err = s->DecideNode(req, ino, Action::kXattr);
  if (err == 0 && setxattr(ProcPath(fd).c_str(), name, value, size, flags) != 0) err = errno;
  fuse_reply_err(req, err);
}

void GetXattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  Session* s = S(req);
  s->ops++;
  if (!Allowed(name)) {
    fuse_reply_err(req, Private(name) ? ENODATA : EOPNOTSUPP);
    return;
  }
  int fd = NodeFd(req, s, ino);
  if (fd < 0) return;
  if (Decided(name)) {
    int err = s->DecideNode(req, ino, Action::kXattr);
    if (err != 0) {
      fuse_reply_err(req, err);
      return;
    }
  }
  if (size > kXattrMax) size = kXattrMax;
  std::string proc = ProcPath(fd);
  if (size == 0) {
    ssize_t n = getxattr(proc.c_str(), name, nullptr, 0);
    if (n < 0) fuse_reply_err(req, errno);
    else fuse_reply_xattr(req, static_cast<size_t>(n));
    return;
  }
  std::vector<char> buf(size);
  ssize_t n = getxattr(proc.c_str(), name, buf.data(), size);
  if (n < 0) fuse_reply_err(req, errno);
  else fuse_reply_buf(req, buf.data(), static_cast<size_t>(n));
}

void ListXattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  Session* s = S(req);
  s->ops++;
  int fd = NodeFd(req, s, ino);
  if (fd < 0) return;
  int err = s->DecideNode(req, ino, Action::kXattr);
  if (err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  std::string proc = ProcPath(fd);
  std::vector<char> all;
  for (int tries = 0; tries < 4; tries++) {  // the list may grow between the two calls
    ssize_t n = listxattr(proc.c_str(), nullptr, 0);
    if (n < 0) {
      fuse_reply_err(req, errno);
      return;
    }
    all.resize(static_cast<size_t>(n));
    n = n == 0 ? 0 : listxattr(proc.c_str(), all.data(), all.size());
    if (n >= 0) {
      all.resize(static_cast<size_t>(n));
      break;
    }
    if (errno != ERANGE) {
      fuse_reply_err(req, errno);
      return;
    }
  }
  std::vector<char> shown;
  bool admin = fuse_req_ctx(req)->uid == 0;  // ext4 lists trusted.* only to CAP_SYS_ADMIN
  for (size_t i = 0; i < all.size();) {
    const char* name = all.data() + i;
    size_t len = strnlen(name, all.size() - i);
    if (Allowed(name) && (admin || !Starts(name, "trusted."))) shown.insert(shown.end(), name, name + len + 1);
    i += len + 1;
  }
  if (size == 0) {
    fuse_reply_xattr(req, shown.size());
    return;
  }
  if (shown.size() > size) {
    fuse_reply_err(req, ERANGE);
    return;
  }
  fuse_reply_buf(req, shown.data(), shown.size());
}

void RemoveXattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
  Session* s = S(req);
  s->ops++;
  if (!Allowed(name)) {
    fuse_reply_err(req, Private(name) ? EPERM : EOPNOTSUPP);
    return;
  }
  int fd = NodeFd(req, s, ino);
  if (fd < 0) return;
  int err = s->DecideNode(req, ino, Action::kXattr);
  if (err == 0 && removexattr(ProcPath(fd).c_str(), name) != 0) err = errno;
  fuse_reply_err(req, err);
}

}  // namespace

void AddXattrOps(struct fuse_lowlevel_ops* ops) {
  ops->setxattr = SetXattr;
  ops->getxattr = GetXattr;
  ops->listxattr = ListXattr;
  ops->removexattr = RemoveXattr;
}

}  // namespace pem::fuse
