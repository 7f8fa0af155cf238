// Inode table (inodes.h): lookup counts, forget, hard links as one node, paths rebuilt from (parent, name).
#include "inodes.h"

#include <unistd.h>

#include <cstring>
#include <vector>

namespace pem::fuse {

InodeTable::~InodeTable() { CloseAll(); }

void InodeTable::CloseAll() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& kv : nodes_) {
    if (kv.second->fd >= 0) close(kv.second->fd);
    delete kv.second;
  }
  nodes_.clear();
  by_ino_.clear();
}

void InodeTable::InitRoot(int fd, const struct stat& st) {
  std::lock_guard<std::mutex> lock(mu_);
  Node* n = new Node();
  n->id = kRootId;
  n->fd = fd;
  n->dev = st.st_dev;
  n->ino = st.st_ino;
  n->type = st.st_mode & S_IFMT;
  n->nlookup = 1;  // never forgotten
  nodes_[kRootId] = n;
  by_ino_[{n->dev, n->ino}] = kRootId;
}

void InodeTable::SetParentLocked(Node* n, uint64_t parent, const char* name) {
  uint64_t old = n->parent;
  auto it = nodes_.find(parent);
  if (it == nodes_.end()) return;  // keep the old name: the new parent is not known (cannot happen for lookups)
  it->second->children++;
  n->parent = parent;
  n->name = name;
  n->unlinked = false;
  if (old != 0) {
    auto po = nodes_.find(old);
    if (po != nodes_.end()) {
      po->second->children--;
      MaybeEraseLocked(po->second);
    }
  }
}

uint64_t InodeTable::Learn(int fd, const struct stat& st, uint64_t parent, const char* name) {
  std::lock_guard<std::mutex> lock(mu_);
  auto found = by_ino_.find({st.st_dev, st.st_ino});
  if (found != by_ino_.end()) {
    Node* n = nodes_[found->second];
    close(fd);
    n->nlookup++;
    if (n->unlinked || n->parent == 0) {
      if (n->id != kRootId) SetParentLocked(n, parent, name);
    }
    return n->id;
  }
  Node* n = new Node();
  n->id = next_id_++;
  n->fd = fd;
  n->dev = st.st_dev;
  n->ino = st.st_ino;
  n->type = st.st_mode & S_IFMT;
  n->nlookup = 1;
  nodes_[n->id] = n;
  by_ino_[{n->dev, n->ino}] = n->id;
  SetParentLocked(n, parent, name);
  return n->id;
}

int InodeTable::Fd(uint64_t id, mode_t* type) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = nodes_.find(id);
  if (it == nodes_.end()) return -1;
  if (type != nullptr) *type = it->second->type;
  return it->second->fd;
}

void InodeTable::MaybeEraseLocked(Node* n) {
  // Erasing a node may drop its parent's last reference: walk up iteratively.
  while (n != nullptr && n->id != kRootId && n->nlookup == 0 && n->children == 0) {
    uint64_t parent = n->parent;
    by_ino_.erase({n->dev, n->ino});
    nodes_.erase(n->id);
    if (n->fd >= 0) close(n->fd);
    delete n;
    n = nullptr;
    auto it = nodes_.find(parent);
    if (it != nodes_.end()) {
      it->second->children--;
      n = it->second;
    }
  }
}

void InodeTable::Forget(uint64_t id, uint64_t count) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = nodes_.find(id);
  if (it == nodes_.end() || id == kRootId) return;
  Node* n = it->second;
  n->nlookup = count >= n->nlookup ? 0 : n->nlookup - count;
  MaybeEraseLocked(n);
}

bool InodeTable::PathLocked(uint64_t id, std::string* out) {
  std::vector<const std::string*> names;
  size_t len = 0;
  uint64_t cur = id;
  while (cur != kRootId) {
    auto it = nodes_.find(cur);
    if (it == nodes_.end() || it->second->parent == 0) return false;
    names.push_back(&it->second->name);
    len += it->second->name.size() + 1;
    if (len > kPolicyPathMax || names.size() > kPathMax / 2) return false;
    cur = it->second->parent;
  }
  out->clear();
  if (names.empty()) {
    *out = "/";
    return true;
  }
  out->reserve(len);
  for (auto r = names.rbegin(); r != names.rend(); ++r) {
    out->push_back('/');
    out->append(**r);
  }
  return true;
}

bool InodeTable::Path(uint64_t id, std::string* out) {
  std::lock_guard<std::mutex> lock(mu_);
  return PathLocked(id, out);
}

bool InodeTable::ChildPath(uint64_t parent, const char* name, std::string* out) {
  size_t nl = strnlen(name, kNameMax + 1);
  if (nl > kNameMax) return false;
  std::lock_guard<std::mutex> lock(mu_);
  if (!PathLocked(parent, out)) return false;
  if ((out->size() > 1 ? out->size() : 0) + 1 + nl > kPolicyPathMax) return false;
  if (out->size() > 1) out->push_back('/');
  out->append(name, nl);
  return true;
}

void InodeTable::Renamed(dev_t dev, ino_t ino, uint64_t old_parent, const char* old_name, uint64_t new_parent,
                         const char* new_name) {
  std::lock_guard<std::mutex> lock(mu_);
  auto found = by_ino_.find({dev, ino});
  if (found == by_ino_.end()) return;
  Node* n = nodes_[found->second];
  if (n->parent == old_parent && n->name == old_name) SetParentLocked(n, new_parent, new_name);
}

void InodeTable::Unlinked(dev_t dev, ino_t ino, uint64_t parent, const char* name) {
  std::lock_guard<std::mutex> lock(mu_);
  auto found = by_ino_.find({dev, ino});
  if (found == by_ino_.end()) return;
  Node* n = nodes_[found->second];
  if (n->parent == parent && n->name == name) n->unlinked = true;
}

size_t InodeTable::size() {
  std::lock_guard<std::mutex> lock(mu_);
  return nodes_.size();
}

}  // namespace pem::fuse
