// Inode table: kernel nodeid -> backing object (an O_PATH fd), keyed by (dev, ino) so every name of a hard-linked
// file is one kernel inode; each node keeps one (parent, name) from which the policy's path is built on demand.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>

namespace pem::fuse {

constexpr uint64_t kRootId = 1;  // FUSE_ROOT_ID
constexpr size_t kNameMax = 255;
constexpr size_t kPathMax = 4095;
// A policy path: up to kPathMax bytes below the root (what a caller can pass relative to the mount) and its leading '/'.
constexpr size_t kPolicyPathMax = kPathMax + 1;

struct Node {
  uint64_t id = 0;
  int fd = -1;            // O_PATH | O_NOFOLLOW of the backing object, held while the kernel knows the node
  dev_t dev = 0;
  ino_t ino = 0;
  mode_t type = 0;        // S_IFMT bits
  uint64_t nlookup = 0;   // the kernel's references (lookup replies minus forgets)
  uint64_t children = 0;  // nodes that name this one as their parent (keeps a parent's name alive)
  uint64_t parent = 0;    // 0 for the root
  std::string name;
  bool unlinked = false;  // its recorded name was removed; the next lookup under another name replaces it
};

class InodeTable {
 public:
  ~InodeTable();
  // Root from an O_PATH fd of the backing directory (taken).
  void InitRoot(int fd, const struct stat& st);
  // A lookup reply: the node of st's (dev, ino) — new, or existing (then `fd` is closed) — gets one more kernel
  // reference. Returns its id.
  uint64_t Learn(int fd, const struct stat& st, uint64_t parent, const char* name);
  // The node's O_PATH fd, -1 when unknown. Valid while the kernel holds the node (it does during its requests).
  int Fd(uint64_t id, mode_t* type = nullptr);
  void Forget(uint64_t id, uint64_t n);
  // "/a/b" of a node ("/" for the root); false when a name on the way is unknown or the path passes kPolicyPathMax.
  bool Path(uint64_t id, std::string* out);
  bool ChildPath(uint64_t parent, const char* name, std::string* out);
  // Name changes made through the mount (dev/ino of the object that had the old name).
  void Renamed(dev_t dev, ino_t ino, uint64_t old_parent, const char* old_name, uint64_t new_parent,
               const char* new_name);
  void Unlinked(dev_t dev, ino_t ino, uint64_t parent, const char* name);
  size_t size();
  void CloseAll();

 private:
  bool PathLocked(uint64_t id, std::string* out);
  void SetParentLocked(Node* n, uint64_t parent, const char* name);
  void MaybeEraseLocked(Node* n);

  std::mutex mu_;
  std::unordered_map<uint64_t, Node*> nodes_;
  std::map<std::pair<dev_t, ino_t>, uint64_t> by_ino_;
  uint64_t next_id_ = kRootId + 1;
};

}  // namespace pem::fuse
