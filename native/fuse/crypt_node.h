// Native encrypted files (issue 18; docs/PEMFS.md "Host placement", docs/CHANNEL.md §8): served by the FUSE worker
// threads, with blocks sealed by a BlockSealer: the per-file key the control plane hands over (host placement) or
// spd over the block channel (appliance placement, block_client.h). One CryptNode per backing inode (dev:ino) shared by its host-mode
// handles: the header, the key in a locked non-dumpable slot, the backing size, and a read/write lock (reads
// share, writes and truncations are exclusive). I/O is synchronous on the calling worker: pread/pwritev on the
// node's own fd and one AEAD call per block (OpenSSL EVP, from the node binary), in exactly the on-disk format of
// lib/wire/FORMAT.md §4 (crypt_format.h), truncations through the redo record of §4.8.
#pragma once

#include <openssl/evp.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "behind.h"
#include "block_client.h"
#include "block_sealer.h"
#include "crypt_format.h"

namespace pem::fuse {

constexpr size_t kHostKeyBytes = 32;
constexpr double kHostKeyMaxTtlMs = 24 * 3600 * 1000.0;
// What Read, Write and Truncate return when the node's key was dropped after the caller checked it (never an errno:
// the caller asks for the key again and retries, HostCall in ops_io.cc).
constexpr int kKeyDropped = -1;

// The io hook's `hostKey` answer (open, key): the file's key (host placement) or, with `remote`, the spd server and
// grant that seal its blocks (appliance placement). The destructor wipes the key bytes.
struct HostKey {
  bool present = false;
  bool remote = false;
  RemoteSpec spec;  // remote only
  uint8_t key[kHostKeyBytes] = {};
  std::vector<uint8_t> header;
  double ttl_ms = 0;
  ~HostKey();
};

// Memory outside the heap for one key: a 32-byte slot of an mlock'ed page (never swapped), MADV_DONTDUMP (never in
// a core dump), MADV_WIPEONFORK (zeros in a forked child); wiped with OPENSSL_cleanse when cleared or freed.
class KeySlot {
 public:
  KeySlot();
  ~KeySlot();
  KeySlot(const KeySlot&) = delete;
  KeySlot& operator=(const KeySlot&) = delete;
  bool ok() const { return slot_ != nullptr; }
  void Set(const uint8_t* key);
  void Wipe();
  const uint8_t* bytes() const { return slot_; }

 private:
  uint8_t* slot_ = nullptr;
};

// Write-behind (appliance placement, docs/PEMFS.md "Write-behind and readahead"): plaintext of sequential writes
// waiting to be sealed at spd and written, at most this much per node (a writer past it waits), in requests of up to
// kMaxBlocksPerRequest blocks, on at most kBehindLanes pool threads per node.
constexpr size_t kBehindMaxBytes = 8u << 20;
constexpr size_t kBehindLanes = 2;
// Readahead (the same section): a sequential reader finds the next kAheadWindows windows of kAheadBytes requested.
constexpr size_t kAheadBytes = 1u << 20;
constexpr size_t kAheadWindows = 2;

class CryptNode : public std::enable_shared_from_this<CryptNode> {
 public:
  CryptNode(int fd, const FileHeader& h, const std::vector<uint8_t>& header, uint64_t size, BehindPool* pool);
  ~CryptNode();

  // Plaintext bytes [off, off + len) into out; *got may be short at the end of the file. 0 or EIO (damage: never
  // unauthenticated bytes), or the errno of the backing file.
  int Read(uint8_t* out, size_t len, uint64_t off, size_t* got);
  // `len` bytes at `off` (append: at the end of the file as it is under the lock) for handle `fh`. 0 or errno. On the
  // block path a sequential write whose blocks need no old bytes may return before they are sealed (write-behind):
  // a failure then goes to the next Flush or Sync of fh.
  int Write(const uint8_t* data, size_t len, uint64_t off, bool append, uint64_t fh, size_t* wrote);
  // Every write behind is sealed and on disk (those whose sealer was lost are sealed here with the node's current
  // one: its loss is returned like a Read's, for HostCall); then the first error a background write of fh met, once.
  int Flush(uint64_t fh);
  // Flush, then fsync or fdatasync.
  int Sync(bool datasync, uint64_t fh);
  // Writes are behind (Flush has work to do, and may need a live sealer).
  bool Unsettled();
  // The handle went: its background errors are forgotten.
  void ForgetHandle(uint64_t fh);
  // The plaintext size becomes `plain` (crash-safe, FORMAT.md §4.8). 0 or errno.
  int Truncate(uint64_t plain);
  uint64_t PlainBytes() const;

  bool KeyLive() const;
  // Installs a new sealer for this file (k's header must be the node's). 0 or EIO.
  int InstallKey(const HostKey& k, std::shared_ptr<BlockSealer> sealer);
  // True once after the sealer was lost to a server that timed out or closed (the `key` question says so).
  bool TakeServerLost() { return server_lost_.exchange(false); }
  // The last sealer was lost (its server or grant went) and no new one is installed yet.
  bool SealerLost() const { return sealer_lost_.load(); }
  // The last sealer installed was a grant at spd's block service (appliance placement), not a key.
  bool remote() const { return remote_.load(); }
  uint8_t cipher_id() const { return h_.cipher; }
  const std::vector<uint8_t>& header() const { return header_; }
  // Holds a key or grant (live or past its ttl but not yet dropped).
  bool KeyHeld() const { return key_expiry_ms_.load() != 0; }
  // Drops the sealer now (revoked, or its ttl ran out; a LocalSealer's key is wiped), under the write lock: no I/O
  // uses it meanwhile, and Read, Write and Truncate answer kKeyDropped until a new one is installed (expired_only:
  // only one past its ttl, checked under the lock). True if one was dropped.
  bool DropKey(bool expired_only);
  // The last handle went: the key is wiped and the fd closed (under the write lock, so no I/O is in flight).
  void Close();

  std::mutex key_mu;  // one `key` question at a time per node

 private:
  struct OpenJob {
    uint64_t block;
    const uint8_t* rec;
    size_t rec_len;
    uint32_t plain_len;
    uint8_t* out;
  };
  struct SealIn {
    uint64_t block;
    const uint8_t* plain;
    uint32_t len;
  };
  using Records = std::vector<std::tuple<uint64_t, const uint8_t*, size_t>>;  // file offset, record, length
  // One write's blocks behind it: consecutive from `first`, every one full but perhaps the last (the file's last).
  struct Behind {
    uint64_t fh;
    uint64_t first;
    std::vector<uint32_t> lens;
    std::unique_ptr<uint8_t[]> plain;  // block i at i * block_bytes (not zero-filled: every byte is written)
    size_t bytes = 0;                  // lens.size() blocks
    std::shared_ptr<BlockSealer> sealer;
    ~Behind();
  };
  using BehindRun = std::vector<std::unique_ptr<Behind>>;
  // A window of plaintext opened ahead of a sequential reader.
  struct Ahead {
    uint64_t from, to, gen;
    bool done = false;
    int err = 0;
    std::vector<uint8_t> plain;  // kAheadBytes from the pool's buffers, to - from of them used
    BehindPool* pool;
    ~Ahead();
  };
  int ReadLocked(uint8_t* out, size_t len, uint64_t off, size_t* got);
  void ReadAheadLocked(uint64_t off, uint64_t end, uint64_t plain);
  void OpenAhead(Ahead* a);
  void DropAhead();
  int WriteLocked(const uint8_t* data, size_t len, uint64_t at, bool append, uint64_t fh, size_t* wrote);
  void QueueLocked(std::unique_ptr<Behind> b);
  void RunBehind();
  int SealRun(const BehindRun& run, BlockSealer* sealer);
  void SettledRun(BehindRun* run, int err);
  int SettleLocked();
  int RunSealer(bool seal, BlockJob* jobs, size_t n, BlockSealer* sealer = nullptr);
  int OpenBlockLocked(uint64_t block, uint8_t* out, uint32_t* plain_len);
  int OpenRecordsLocked(const OpenJob* jobs, size_t n);
  int SealBatchLocked(const SealIn* in, size_t n, uint8_t* recs, size_t stride, Records* out,
                      BlockSealer* sealer = nullptr);
  int SealLocked(uint64_t block, const uint8_t* plain, uint32_t len, uint8_t* rec, size_t* rec_len);
  int EnsureHeaderLocked();
  int WriteRecordsLocked(const std::vector<std::tuple<uint64_t, const uint8_t*, size_t>>& recs);
  uint64_t RecordOffset(uint64_t block, uint32_t plain_len, size_t rec_len) const;

  mutable std::shared_mutex rw_;
  int fd_;
  FileHeader h_;
  std::vector<uint8_t> header_;
  std::shared_ptr<BlockSealer> sealer_;
  std::atomic<int64_t> key_expiry_ms_{0};  // steady clock
  std::atomic<bool> server_lost_{false};
  std::atomic<bool> sealer_lost_{false};
  std::atomic<bool> remote_{false};
  std::atomic<uint64_t> size_;             // backing bytes (counting the writes behind)
  BehindPool* pool_;
  std::atomic<bool> seal_ok_{false};       // the sealer installed has sealed (a write may go behind)
  uint64_t write_end_ = 0;                 // under rw_: where the last write ended (plaintext offset)
  std::mutex bmu_;                         // the rest: write-behind
  std::condition_variable bcv_;
  std::deque<std::unique_ptr<Behind>> queued_, lost_;  // lost_: their sealer was lost, sealed again by SettleLocked
  size_t behind_bytes_ = 0, lanes_ = 0, redoing_ = 0;
  bool resize_ = false;                    // a background write failed: size_ is read back from the file
  std::map<uint64_t, int> behind_err_;     // handle -> first background error
  std::mutex amu_;                         // the rest: readahead
  std::condition_variable acv_;
  std::deque<std::shared_ptr<Ahead>> ahead_;
  uint64_t gen_ = 0, read_end_ = 0, ahead_from_ = 0, ahead_to_ = 0;
};

class CryptNodes {
 public:
  ~CryptNodes() { Clear(); }
  BlockLinks links;  // declared first: destroyed after every node's sealer
  BehindPool behind{2};  // destroyed before links: its jobs use sealers
  // The sealer `k` names for a file of cipher `cipher`: a LocalSealer of its key, or a RemoteSealer on the block
  // channel to its server. nullptr + why.
  std::shared_ptr<BlockSealer> SealerFor(const HostKey& k, uint8_t cipher, std::string* why);
  // The node of the file open on `handle_fd`, loaded with `k` (its header checked against the file, a truncation
  // a crash interrupted finished) or, when already held, given `k` as its new key; one more reference. 0 or errno
  // (ESTALE: the file got another header than k's since k was made, by a racing create: ask again).
  int Acquire(int handle_fd, const HostKey& k, std::shared_ptr<CryptNode>* out, std::string* why);
  // The node of dev:ino with one more reference when it is held (and, if live_key, its key is live), else nullptr.
  std::shared_ptr<CryptNode> Hold(dev_t dev, ino_t ino, bool live_key);
  // The node of dev:ino without a reference (for its size), or nullptr.
  std::shared_ptr<CryptNode> Find(dev_t dev, ino_t ino);
  void Release(const std::shared_ptr<CryptNode>& n);
  // The size applications see of a CLOSED file under an encrypted guard point: its header's plainSize (headers
  // cached by dev:ino:ctime:size). False when the io hook must answer: no header that decodes (plaintext from
  // before the guard point, damage) or a redo record at the end (loading it finishes the truncation).
  bool ClosedSize(int fd, const struct stat& st, uint64_t* size);
  // Wipes every key and closes every node (the session ended), spares too.
  void Clear();
  // Wipes the keys of every node (expired_only: of those whose ttl ran out); the nodes stay, and their next I/O asks
  // for a key again (a fresh decision); spares go too (expired_only: those past their lease). Returns how many keys
  // of nodes were wiped.
  size_t DropKeys(bool expired_only);

  // Spare keys of new files: the io hook hands them over with a new file's key (its answer's `spares`, each a new
  // header and its key), and the next creates whose decision names the same pool take one each without asking it
  // (docs/PEMFS.md "Host placement"). Each waits in a locked slot (KeySlot); one with less than kSpareMinMs of its
  // lease left is dropped, and ClearSpares (a new policy version) drops them all. At most kMaxSpares are held.
  static constexpr size_t kMaxSpares = 256;
  static constexpr double kSpareMinMs = 1000;
  void PutSpares(uint32_t pool, const std::vector<HostKey>& ks);
  bool TakeSpare(uint32_t pool, HostKey* out);
  void ClearSpares();
  void PruneSpares();  // drops the spares past kSpareMinMs of their lease (the expiry sweep)
  size_t spares();

  size_t nodes();
  size_t keys_held();
  std::atomic<uint64_t> keys{0}, grants{0}, key_calls{0}, keys_dropped{0}, reads{0}, writes{0}, spare_takes{0};  // grants: remote sealers installed
  std::atomic<uint64_t> bytes_read{0}, bytes_written{0};  // through natively served handles

 private:
  struct Seen {
    bool encrypted = false;
    bool redo = false;
    FileHeader h;
  };
  std::mutex mu_;
  std::map<std::pair<dev_t, ino_t>, std::pair<std::shared_ptr<CryptNode>, int>> nodes_;  // node, references
  std::mutex seen_mu_;
  std::map<std::tuple<dev_t, ino_t, int64_t, int64_t, int64_t>, Seen> seen_;
  struct Spare {
    std::unique_ptr<KeySlot> key;
    std::vector<uint8_t> header;
    std::chrono::steady_clock::time_point until;
  };
  std::mutex spares_mu_;
  std::unordered_map<uint32_t, std::vector<Spare>> spares_;
  size_t spare_count_ = 0;
};

// Opens a log line on stderr (host placement events: a finished truncation, a refused open).
void HostLog(const std::string& what);

}  // namespace pem::fuse
