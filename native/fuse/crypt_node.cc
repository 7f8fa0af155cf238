// CryptNode and CryptNodes (crypt_node.h): the native data plane of encrypted files, and LocalSealer (host placement). The read, write and truncate
// rules are those of lib/pem-fs/crypt-file.ts (partial blocks patched, an old short last block grown to full before
// a write past it, holes left as holes, appends at the true end, the redo record for a cut inside a block).
#include "crypt_node.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "../crypto_engine.h"

namespace pem::fuse {

namespace {

constexpr size_t kPage = 4096;
constexpr size_t kSeenMax = 10000;  // headers of closed files kept for getattr

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

const EVP_CIPHER* CipherOf(uint8_t id) {
  static EVP_CIPHER* aes = EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
  static EVP_CIPHER* chacha = EVP_CIPHER_fetch(nullptr, "ChaCha20-Poly1305", nullptr);
  return id == kCipherAesGcm ? aes : id == kCipherChaCha ? chacha : nullptr;
}

// One cipher context per worker thread, reset after every block (no key schedule stays behind).
struct ThreadCtx {
  EVP_CIPHER_CTX* ctx = nullptr;
  ~ThreadCtx() { EVP_CIPHER_CTX_free(ctx); }
  EVP_CIPHER_CTX* Get() {
    if (ctx == nullptr) ctx = EVP_CIPHER_CTX_new();
    return ctx;
  }
};
thread_local ThreadCtx t_ctx;
// Per-worker scratch, bounded by one request (kMaxWrite) plus the blocks around it.
thread_local std::vector<uint8_t> t_slots, t_old, t_plain, t_recs, t_comp, t_aad, t_part;
thread_local std::vector<BlockJob> t_jobs;

uint8_t* Room(std::vector<uint8_t>* v, size_t n) {
  if (v->size() < n) v->resize(n);
  return v->data();
}

int PreadFull(int fd, uint8_t* buf, size_t n, uint64_t at, size_t* got) {
  *got = 0;
  while (*got < n) {
    ssize_t r = pread(fd, buf + *got, n - *got, static_cast<off_t>(at + *got));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return errno;
    if (r == 0) break;
    *got += static_cast<size_t>(r);
  }
  return 0;
}

int PwriteFull(int fd, const uint8_t* buf, size_t n, uint64_t at) {
  size_t done = 0;
  while (done < n) {
    ssize_t r = pwrite(fd, buf + done, n - done, static_cast<off_t>(at + done));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return errno;
    done += static_cast<size_t>(r);
  }
  return 0;
}

// AEAD over one block: seal `len` bytes of `in` into nonce|ct|tag at rec, or open rec (nonce|ct|tag) into out.
bool Aead(const EVP_CIPHER* cipher, const uint8_t* key, bool seal, const uint8_t* aad, const uint8_t* in, size_t len,
          uint8_t* out) {
  EVP_CIPHER_CTX* c = t_ctx.Get();
  if (c == nullptr) return false;
  int outl = 0;
  bool ok;
  if (seal) {
    uint8_t* nonce = out;
    ok = RAND_bytes(nonce, kNonceBytes) == 1 && EVP_CipherInit_ex2(c, cipher, key, nonce, 1, nullptr) == 1 &&
         EVP_EncryptUpdate(c, nullptr, &outl, aad, static_cast<int>(kAadBytes)) == 1 &&
         (len == 0 || EVP_EncryptUpdate(c, out + kNonceBytes, &outl, in, static_cast<int>(len)) == 1) &&
         EVP_EncryptFinal_ex(c, out + kNonceBytes + len, &outl) == 1 &&
         EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, kTagBytes, out + kNonceBytes + len) == 1;
  } else {
    uint8_t tag[kTagBytes];
    memcpy(tag, in + kNonceBytes + len, kTagBytes);
    ok = EVP_CipherInit_ex2(c, cipher, key, in, 0, nullptr) == 1 &&
         EVP_DecryptUpdate(c, nullptr, &outl, aad, static_cast<int>(kAadBytes)) == 1 &&
         (len == 0 || EVP_DecryptUpdate(c, out, &outl, in + kNonceBytes, static_cast<int>(len)) == 1) &&
         EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, kTagBytes, tag) == 1 &&
         EVP_DecryptFinal_ex(c, out + len, &outl) == 1;
    if (!ok && len > 0) OPENSSL_cleanse(out, len);  // never hand out unauthenticated plaintext
  }
  ERR_clear_error();
  EVP_CIPHER_CTX_reset(c);
  return ok;
}

// Host placement: the file's key in a KeySlot, one AEAD call per block on the calling worker.
class LocalSealer : public BlockSealer {
 public:
  LocalSealer(const EVP_CIPHER* cipher, const uint8_t* key) : cipher_(cipher) {
    if (page_.ok()) page_.Set(key);
  }
  bool ok() const { return page_.ok() && cipher_ != nullptr; }
  int Run(bool seal, BlockJob* jobs, size_t n) override {
    for (size_t i = 0; i < n; i++) {
      if (!Aead(cipher_, page_.bytes(), seal, jobs[i].aad, jobs[i].in, jobs[i].len, jobs[i].out)) return EIO;
    }
    return 0;
  }

 private:
  const EVP_CIPHER* cipher_;
  KeySlot page_;
};

}  // namespace

void HostLog(const std::string& what) {
  char ts[32];
  time_t now = time(nullptr);
  struct tm tm;
  gmtime_r(&now, &tm);
  strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
  fprintf(stderr, "%s pemfs host placement: %s\n", ts, what.c_str());
}

HostKey::~HostKey() { OPENSSL_cleanse(key, sizeof(key)); }

namespace {

// The slots KeySlot hands out: pages outside the heap, each mlock'ed, MADV_DONTDUMP and MADV_WIPEONFORK, cut into
// kPage / kHostKeyBytes slots. Pages are mapped as needed and kept (a key per open file or spare: few pages); a freed
// slot is wiped before it goes back. One map and three calls per 128 keys, not per key: no munmap, so no TLB
// shootdown across the worker threads each time a file closes.
class SlotPages {
 public:
  uint8_t* Take() {
    std::lock_guard<std::mutex> lock(mu_);
    if (free_.empty()) {
      void* p = mmap(nullptr, kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p == MAP_FAILED) return nullptr;
      madvise(p, kPage, MADV_DONTDUMP);
      madvise(p, kPage, MADV_WIPEONFORK);  // a child forked to exec something never sees them
      if (mlock(p, kPage) != 0) {
        static std::atomic<bool> warned{false};
        if (!warned.exchange(true)) HostLog("mlock of a key page failed (RLIMIT_MEMLOCK?): keys may be swapped");
      }
      for (size_t off = kPage; off >= kHostKeyBytes; off -= kHostKeyBytes) {
        free_.push_back(static_cast<uint8_t*>(p) + off - kHostKeyBytes);
      }
    }
    uint8_t* s = free_.back();
    free_.pop_back();
    return s;
  }
  void Give(uint8_t* s) {
    OPENSSL_cleanse(s, kHostKeyBytes);
    std::lock_guard<std::mutex> lock(mu_);
    free_.push_back(s);
  }

 private:
  std::mutex mu_;
  std::vector<uint8_t*> free_;
};

SlotPages& Slots() {
  static SlotPages* pages = new SlotPages();  // never destroyed: slots may be given back during exit
  return *pages;
}

}  // namespace

KeySlot::KeySlot() : slot_(Slots().Take()) {}

KeySlot::~KeySlot() {
  if (slot_ != nullptr) Slots().Give(slot_);
}

void KeySlot::Set(const uint8_t* key) { memcpy(slot_, key, kHostKeyBytes); }
void KeySlot::Wipe() { OPENSSL_cleanse(slot_, kHostKeyBytes); }

CryptNode::CryptNode(int fd, const FileHeader& h, const std::vector<uint8_t>& header, uint64_t size, BehindPool* pool)
    : fd_(fd), h_(h), header_(header), size_(size), pool_(pool) {}

CryptNode::~CryptNode() { Close(); }

CryptNode::Behind::~Behind() {
  if (plain != nullptr) OPENSSL_cleanse(plain.get(), bytes);
}

void CryptNode::Close() {
  std::unique_lock<std::shared_mutex> lk(rw_);
  {
    std::unique_lock<std::mutex> bl(bmu_);
    bcv_.wait(bl, [&] { return queued_.empty() && lanes_ == 0 && redoing_ == 0; });
    // Lost after the last flush (no handle is left to be told): one more try with the sealer there is.
    if (!lost_.empty()) {
      BehindRun run(std::make_move_iterator(lost_.begin()), std::make_move_iterator(lost_.end()));
      lost_.clear();
      bl.unlock();
      if (fd_ >= 0 && (sealer_ == nullptr || SealRun(run, sealer_.get()) != 0)) {
        HostLog("inode fd " + std::to_string(fd_) + ": writes behind could not be sealed after the last flush; lost");
      }
    }
  }
  DropAhead();
  sealer_.reset();  // a LocalSealer's page is wiped as it goes
  key_expiry_ms_ = 0;
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
}

bool CryptNode::KeyLive() const { return NowMs() < key_expiry_ms_.load(); }

int CryptNode::InstallKey(const HostKey& k, std::shared_ptr<BlockSealer> sealer) {
  if (!k.present || k.header != header_ || sealer == nullptr) return EIO;
  std::unique_lock<std::shared_mutex> lk(rw_);
  sealer_ = std::move(sealer);
  seal_ok_ = false;
  sealer_lost_ = false;
  remote_ = k.remote;
  key_expiry_ms_ = NowMs() + static_cast<int64_t>(k.ttl_ms);
  return 0;
}

// A lost sealer makes the key "expired": the next call asks the io hook for another one.
int CryptNode::RunSealer(bool seal, BlockJob* jobs, size_t n, BlockSealer* sealer) {
  if (sealer == nullptr) sealer = sealer_.get();
  int err = sealer == nullptr ? EKEYEXPIRED : sealer->Run(seal, jobs, n);
  if (err == 0 && seal && sealer == sealer_.get()) seal_ok_ = true;
  // A read grant (another handle's) cannot seal: this caller asks for its own (the `key` call names its access).
  if (err == EACCES && seal) err = EKEYEXPIRED;
  if (IsSealerLost(err)) {
    seal_ok_ = false;
    sealer_lost_ = true;
    key_expiry_ms_ = 0;
    if (err != EKEYEXPIRED) server_lost_ = true;
  }
  return err;
}

bool CryptNode::DropKey(bool expired_only) {
  auto keep = [&] { return !KeyHeld() || (expired_only && KeyLive()); };
  if (keep()) return false;  // the sweep's common case: no lock taken, no I/O waited for
  std::unique_lock<std::shared_mutex> lk(rw_);
  if (keep()) return false;
  DropAhead();
  sealer_.reset();  // a LocalSealer's slot is wiped as it goes
  key_expiry_ms_ = 0;
  return true;
}

uint64_t CryptNode::PlainBytes() const { return PlainSize(h_, size_.load()); }

uint64_t CryptNode::RecordOffset(uint64_t block, uint32_t plain_len, size_t rec_len) const {
  // A full block's record ends at the slot end (a compressed one leaves a hole in front); a short (last) one
  // starts at the slot start (§4.2).
  return plain_len < h_.block_bytes ? SlotOffset(h_, block) : SlotOffset(h_, block) + h_.slot_bytes - rec_len;
}

// Opens records (each checked by ParseSlot) into their `out` (plain_len bytes each) in one sealer batch: a payload
// shorter than its plaintext is compressed with the header's codec. On failure no plaintext is left in any out.
int CryptNode::OpenRecordsLocked(const OpenJob* o, size_t n) {
  if (n == 0) return 0;
  size_t packed_bytes = 0;
  for (size_t i = 0; i < n; i++) {
    const size_t payload = o[i].rec_len - kRecordOverhead;
    if (payload == o[i].plain_len) continue;
    if (h_.compression == kCompressionNone) return EIO;
    packed_bytes += payload;
  }
  uint8_t* aads = Room(&t_aad, n * kAadBytes);
  uint8_t* packed = Room(&t_comp, packed_bytes);
  if (t_jobs.size() < n) t_jobs.resize(n);
  size_t at = 0;
  for (size_t i = 0; i < n; i++) {
    const uint32_t payload = static_cast<uint32_t>(o[i].rec_len - kRecordOverhead);
    WriteAad(h_, o[i].block, o[i].plain_len, aads + i * kAadBytes);
    uint8_t* dst = payload == o[i].plain_len ? o[i].out : packed + at;
    if (payload != o[i].plain_len) at += payload;
    t_jobs[i] = {aads + i * kAadBytes, o[i].rec, payload, dst};
  }
  int err = RunSealer(false, t_jobs.data(), n);
  for (size_t i = 0; err == 0 && i < n; i++) {
    const BlockJob& j = t_jobs[i];
    if (j.out != o[i].out &&
        engine::DecompressBlock(h_.compression, j.out, j.len, o[i].out, o[i].plain_len) != o[i].plain_len) {
      err = EIO;
    }
  }
  if (packed_bytes > 0) OPENSSL_cleanse(packed, packed_bytes);
  if (err != 0) {
    for (size_t i = 0; i < n; i++) OPENSSL_cleanse(o[i].out, o[i].plain_len);
  }
  return err;
}

// Block `block`'s plaintext into out (block_bytes of room); a hole is block_bytes of zeros.
int CryptNode::OpenBlockLocked(uint64_t block, uint8_t* out, uint32_t* plain_len) {
  const uint64_t from = SlotOffset(h_, block), size = size_.load();
  if (from >= size) return EIO;
  const size_t n = static_cast<size_t>(std::min<uint64_t>(h_.slot_bytes, size - from));
  uint8_t* slot = Room(&t_slots, n);
  size_t got = 0;
  int err = PreadFull(fd_, slot, n, from, &got);
  if (err == 0 && got != n) err = EIO;
  if (err != 0) return err;
  const uint8_t* rec;
  size_t rec_len;
  uint32_t plain;
  std::string why;
  err = ParseSlot(h_, block, slot, n, &rec, &rec_len, &plain, &why);
  if (err != 0) return err;
  if (rec == nullptr) {
    memset(out, 0, h_.block_bytes);
    *plain_len = h_.block_bytes;
    return 0;
  }
  const OpenJob job = {block, rec, rec_len, plain, out};
  if ((err = OpenRecordsLocked(&job, 1)) != 0) return err;
  *plain_len = plain;
  return 0;
}

CryptNode::Ahead::~Ahead() { pool->GiveBuffer(std::move(plain)); }

int CryptNode::Read(uint8_t* out, size_t len, uint64_t off, size_t* got) {
  *got = 0;
  const bool ahead = pool_ != nullptr && remote_;
  if (ahead) {  // a window being opened for this offset: wait for it (outside rw_, which its job takes)
    std::unique_lock<std::mutex> al(amu_);
    for (const auto& a : ahead_) {
      if (a->from <= off && off < a->to && !a->done) {
        acv_.wait_for(al, std::chrono::milliseconds(2 * kBlockCallTimeoutMs), [&] { return a->done; });
        break;
      }
    }
  }
  std::shared_lock<std::shared_mutex> lk(rw_);
  if (fd_ < 0) return EBADF;
  if (!KeyHeld()) return kKeyDropped;
  int err = SettleLocked();  // the bytes behind are on disk before any is read
  if (err != 0) return err;
  if (!ahead) return ReadLocked(out, len, off, got);
  // Whatever the windows opened ahead hold of [off, off + len), then the rest read here; the next windows after it.
  const uint64_t plain = PlainSize(h_, size_.load()), end = std::min<uint64_t>(plain, off + len);
  uint64_t at = off;
  {
    std::lock_guard<std::mutex> al(amu_);
    for (const auto& a : ahead_) {
      if (at >= end) break;
      if (!(a->done && a->err == 0 && a->from <= at && at < a->to)) continue;
      const uint64_t n = std::min(end, a->to) - at;
      memcpy(out + (at - off), a->plain.data() + (at - a->from), n);
      at += n;
    }
  }
  pool_->ahead_bytes += at - off;
  if (at < end) {
    size_t more = 0;
    err = ReadLocked(out + (at - off), end - at, at, &more);
    if (err != 0) return err;
    at += more;
  }
  *got = at - off;
  ReadAheadLocked(off, at, plain);
  return 0;
}

// After a read of [off, end): a sequential reader gets the next windows opened on pool threads (kAheadWindows of
// kAheadBytes, one request each). Reads of one stream arrive a little out of order (the kernel has several in flight
// on several workers): a read counts as sequential when it starts within a window of where the stream got to. A read
// elsewhere plans nothing; the windows go once passed, or at a write.
void CryptNode::ReadAheadLocked(uint64_t off, uint64_t end, uint64_t plain) {
  std::lock_guard<std::mutex> al(amu_);
  const uint64_t reach = std::max(read_end_, ahead_to_);
  const bool sequential = off <= reach && off + kAheadBytes >= read_end_;
  read_end_ = sequential ? std::max(read_end_, end) : end;
  if (!sequential) {
    if (off + kAheadBytes < ahead_from_ || off > ahead_to_ + kAheadBytes) {
      ahead_.clear();
      ahead_from_ = ahead_to_ = 0;
    }
    return;
  }
  while (!ahead_.empty() && ahead_.front()->to <= off) ahead_.pop_front();  // passed
  if (ahead_.empty() || ahead_to_ < read_end_) {
    ahead_.clear();
    ahead_to_ = read_end_;
  }
  ahead_from_ = ahead_.empty() ? read_end_ : ahead_.front()->from;
  while (ahead_.size() < kAheadWindows && ahead_to_ < plain) {
    auto a = std::make_shared<Ahead>();
    a->from = ahead_to_;
    a->to = std::min<uint64_t>(plain, a->from + kAheadBytes);
    a->gen = gen_;
    a->pool = pool_;
    a->plain = pool_->TakeBuffer(kAheadBytes);
    ahead_to_ = a->to;
    ahead_.push_back(a);
    pool_->Post([self = shared_from_this(), a] { self->OpenAhead(a.get()); });
  }
}

// A pool job: opens window a under the shared lock, unless the file changed since it was planned, a writer holds the
// lock or writes are behind (a writer may be waiting for this pool's lanes: never waited for here). Either way a
// reader waiting for it is woken.
void CryptNode::OpenAhead(Ahead* a) {
  int err = EAGAIN;
  std::shared_lock<std::shared_mutex> lk(rw_, std::try_to_lock);
  if (lk.owns_lock()) {
    bool current;
    {
      std::lock_guard<std::mutex> al(amu_);
      current = a->gen == gen_;
    }
    if (current && fd_ >= 0 && KeyLive() && !Unsettled()) {
      size_t got = 0;  // into a->plain: no reader looks at it before `done`
      err = ReadLocked(a->plain.data(), a->to - a->from, a->from, &got);
      if (err == 0 && got != a->to - a->from) err = EIO;
    }
  }
  std::lock_guard<std::mutex> al(amu_);
  a->err = err;
  a->done = true;
  acv_.notify_all();
}

// The windows opened ahead no longer hold the file's bytes (a write, a truncation, a dropped key).
void CryptNode::DropAhead() {
  std::lock_guard<std::mutex> al(amu_);
  gen_++;
  ahead_.clear();
  ahead_from_ = ahead_to_ = 0;
}

int CryptNode::ReadLocked(uint8_t* out, size_t len, uint64_t off, size_t* got) {
  int err = 0;
  *got = 0;
  const uint64_t size = size_.load(), plain = PlainSize(h_, size), B = h_.block_bytes, S = h_.slot_bytes;
  const uint64_t end = std::min<uint64_t>(plain, off + len);
  if (end <= off) return 0;
  const uint64_t first = off / B, last = (end - 1) / B;
  const uint64_t from = SlotOffset(h_, first), to = std::min<uint64_t>(SlotOffset(h_, last + 1), size);
  uint8_t* slots = Room(&t_slots, to - from);
  size_t n = 0;
  err = PreadFull(fd_, slots, to - from, from, &n);
  if (err == 0 && n != to - from) err = EIO;  // the backing file ended early: PEM_ERR_TRUNCATED
  if (err != 0) return err;
  // Every record of the range in one sealer batch: whole blocks straight into the reply, partly read ones through
  // scratch (one block each), then copied.
  struct Part {
    uint64_t b, s, e;
    uint32_t plain_len;
    bool whole;
  };
  std::vector<OpenJob> jobs;
  std::vector<Part> parts;
  jobs.reserve(last - first + 1);
  parts.reserve(last - first + 1);
  size_t partial = 0;
  for (uint64_t b = first; b <= last; b++) {
    const size_t at = (b - first) * S;
    const uint8_t* rec;
    size_t rec_len;
    uint32_t plain_len;
    std::string why;
    err = ParseSlot(h_, b, slots + at, std::min<uint64_t>(S, n - at), &rec, &rec_len, &plain_len, &why);
    if (err != 0) return err;
    const uint64_t s = std::max<uint64_t>(off, b * B), e = std::min<uint64_t>(end, (b + 1) * B);
    if (rec == nullptr) {
      memset(out + (s - off), 0, e - s);
      continue;
    }
    const bool whole = s == b * B && e - s == plain_len;
    if (!whole) partial++;
    jobs.push_back({b, rec, rec_len, plain_len, whole ? out + (s - off) : nullptr});
    parts.push_back({b, s, e, plain_len, whole});
  }
  uint8_t* scratch = Room(&t_plain, partial * B);
  for (size_t i = 0, k = 0; i < jobs.size(); i++) {
    if (!parts[i].whole) jobs[i].out = scratch + k++ * B;
  }
  if ((err = OpenRecordsLocked(jobs.data(), jobs.size())) != 0) return err;
  for (size_t i = 0; i < jobs.size(); i++) {
    const Part& p = parts[i];
    if (p.whole) continue;
    uint8_t* dst = out + (p.s - off);
    const uint64_t have = std::min<uint64_t>(p.e, p.b * B + p.plain_len);
    if (have > p.s) memcpy(dst, jobs[i].out + (p.s - p.b * B), have - p.s);
    if (have < p.e) memset(dst + (have > p.s ? have - p.s : 0), 0, p.e - std::max(have, p.s));
  }
  if (partial > 0) OPENSSL_cleanse(scratch, partial * B);
  *got = end - off;
  return 0;
}

// Seals blocks in one sealer batch, block i's record (nonce | ciphertext | tag | trailer) at recs + i * stride
// (room for its len + kRecordOverhead), and lists each record with its file offset in *out. With compression a full
// block is compressed first and stored raw when that does not shrink it (§4.5).
int CryptNode::SealBatchLocked(const SealIn* in, size_t n, uint8_t* recs, size_t stride, Records* out,
                               BlockSealer* sealer) {
  if (n == 0) return 0;
  const bool packs = h_.compression != kCompressionNone;
  uint8_t* aads = Room(&t_aad, n * kAadBytes);
  uint8_t* packed = packs ? Room(&t_comp, n * h_.block_bytes) : nullptr;
  if (t_jobs.size() < n) t_jobs.resize(n);
  for (size_t i = 0; i < n; i++) {
    WriteAad(h_, in[i].block, in[i].len, aads + i * kAadBytes);
    const uint8_t* payload = in[i].plain;
    uint32_t payload_len = in[i].len;
    if (packs && in[i].len == h_.block_bytes) {
      uint8_t* p = packed + i * h_.block_bytes;
      size_t c = engine::CompressBlock(h_.compression, in[i].plain, in[i].len, p, in[i].len - 1);
      if (c > 0) payload = p, payload_len = static_cast<uint32_t>(c);
    }
    t_jobs[i] = {aads + i * kAadBytes, payload, payload_len, recs + i * stride};
  }
  int err = RunSealer(true, t_jobs.data(), n, sealer);
  if (packs) OPENSSL_cleanse(packed, n * h_.block_bytes);
  if (err != 0) return err;
  for (size_t i = 0; i < n; i++) {
    uint8_t* rec = recs + i * stride;
    WriteTrailer(h_, rec, t_jobs[i].len, in[i].len);
    const size_t rec_len = t_jobs[i].len + kRecordOverhead;
    out->emplace_back(RecordOffset(in[i].block, in[i].len, rec_len), rec, rec_len);
  }
  return 0;
}

// One block (a truncation's): SealBatchLocked of one.
int CryptNode::SealLocked(uint64_t block, const uint8_t* plain, uint32_t len, uint8_t* rec, size_t* rec_len) {
  const SealIn in = {block, plain, len};
  Records out;
  int err = SealBatchLocked(&in, 1, rec, 0, &out);
  if (err == 0) *rec_len = std::get<2>(out[0]);
  return err;
}

// An empty file gets its header at the first write (as CryptFile.ensureHeader does).
int CryptNode::EnsureHeaderLocked() {
  if (size_.load() >= h_.header_bytes) return 0;
  int err = PwriteFull(fd_, header_.data(), header_.size(), 0);
  if (err == 0 && ftruncate(fd_, static_cast<off_t>(header_.size())) != 0) err = errno;
  if (err == 0) size_ = header_.size();
  return err;
}

// Records (block-ordered, each at its file offset) that follow each other on disk go out in one pwritev.
int CryptNode::WriteRecordsLocked(const Records& recs) {
  for (size_t i = 0; i < recs.size();) {
    const uint64_t at = std::get<0>(recs[i]);
    uint64_t end = at;
    std::vector<struct iovec> iov;
    size_t j = i;
    while (j < recs.size() && std::get<0>(recs[j]) == end && iov.size() < IOV_MAX) {
      iov.push_back({const_cast<uint8_t*>(std::get<1>(recs[j])), std::get<2>(recs[j])});
      end += std::get<2>(recs[j]);
      j++;
    }
    uint64_t pos = at;
    size_t k = 0;
    while (k < iov.size()) {
      ssize_t r = pwritev(fd_, iov.data() + k, static_cast<int>(iov.size() - k), static_cast<off_t>(pos));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) return errno;
      pos += static_cast<uint64_t>(r);
      size_t skip = static_cast<size_t>(r);
      while (k < iov.size() && skip >= iov[k].iov_len) skip -= iov[k++].iov_len;
      if (skip > 0) {
        iov[k].iov_base = static_cast<uint8_t*>(iov[k].iov_base) + skip;
        iov[k].iov_len -= skip;
      }
    }
    i = j;
  }
  return 0;
}

int CryptNode::Write(const uint8_t* data, size_t len, uint64_t at, bool append, uint64_t fh, size_t* wrote) {
  std::unique_lock<std::shared_mutex> lk(rw_);
  *wrote = 0;
  if (fd_ < 0) return EBADF;
  if (!KeyHeld()) return kKeyDropped;
  if (len == 0) return 0;
  return WriteLocked(data, len, at, append, fh, wrote);
}

int CryptNode::WriteLocked(const uint8_t* data, size_t len, uint64_t at, bool append, uint64_t fh, size_t* wrote) {
  DropAhead();
  int err = EnsureHeaderLocked();
  if (err != 0) return err;
  const uint64_t B = h_.block_bytes, S = h_.slot_bytes;
  const uint64_t old_plain = PlainSize(h_, size_.load());
  const uint64_t pos = append ? old_plain : at, end = pos + len, new_plain = std::max(old_plain, end);
  const uint64_t first = pos / B, last = (end - 1) / B, old_blocks = (old_plain + B - 1) / B;
  // Only the file's last block may be short: an old short last block before this write grows to a full block.
  const bool grow = old_plain % B != 0 && old_blocks - 1 < first;
  const uint64_t grown = old_blocks - 1;
  // Old plaintext needed: the grown block, the first block when the write starts inside it, the last when old
  // bytes follow the write inside it.
  uint64_t need[3];
  size_t needs = 0;
  if (grow) need[needs++] = grown;
  if (pos > first * B && first < old_blocks) need[needs++] = first;
  if (end < std::min(old_plain, (last + 1) * B) && (needs == 0 || need[needs - 1] != last)) need[needs++] = last;
  // Behind the writer: a sequential write on the block path whose blocks need no old bytes (so none is in flight),
  // once the sealer installed has sealed. Any other write first waits for those behind.
  const bool behind = pool_ != nullptr && remote_ && seal_ok_ && needs == 0 && !grow && pos == write_end_;
  if (!behind && Unsettled()) {
    const uint64_t before = size_.load();
    if ((err = SettleLocked()) != 0) return err;
    if (size_.load() != before) return WriteLocked(data, len, at, append, fh, wrote);  // a write behind failed
  }
  uint8_t* old = Room(&t_old, needs * B);
  uint32_t old_len[3] = {0, 0, 0};
  for (size_t i = 0; i < needs; i++) {
    err = OpenBlockLocked(need[i], old + i * B, &old_len[i]);
    if (err != 0) return err;
  }
  auto old_of = [&](uint64_t b, uint32_t* n) -> const uint8_t* {
    for (size_t i = 0; i < needs; i++) {
      if (need[i] == b) return *n = old_len[i], old + i * B;
    }
    return *n = 0, nullptr;
  };
  const size_t count = static_cast<size_t>(last - first + 1) + (grow ? 1 : 0);
  uint8_t* recs = Room(&t_recs, count * S);
  uint8_t* parts = Room(&t_part, 3 * B);  // at most three blocks are patched: the grown one, the first, the last
  size_t patched = 0;
  std::vector<SealIn> in;
  in.reserve(count);
  // The new plaintext of block b (blen bytes): its old bytes (or zeros) with [s, e) of the file from data.
  auto add = [&](uint64_t b, uint32_t blen, uint64_t s, uint64_t e) {
    if (s == b * B && e - s == blen) {
      in.push_back({b, data + (s - pos), blen});
      return;
    }
    uint8_t* part = parts + patched++ * B;
    uint32_t have = 0;
    const uint8_t* o = old_of(b, &have);
    const uint32_t keep = std::min(have, blen);
    if (keep > 0) memcpy(part, o, keep);
    memset(part + keep, 0, blen - keep);
    if (e > s) memcpy(part + (s - b * B), data + (s - pos), e - s);
    in.push_back({b, part, blen});
  };
  if (grow) add(grown, static_cast<uint32_t>(B), 0, 0);
  for (uint64_t b = first; b <= last; b++) {
    const uint32_t blen = static_cast<uint32_t>(std::min<uint64_t>(B, new_plain - b * B));
    add(b, blen, std::max(pos, b * B), std::min(end, b * B + blen));
  }
  if (behind) {
    auto q = std::make_unique<Behind>();
    q->fh = fh, q->first = first, q->sealer = sealer_;
    q->lens.resize(in.size());
    q->bytes = in.size() * B;
    q->plain.reset(new uint8_t[q->bytes]);
    for (size_t i = 0; i < in.size(); i++) {
      q->lens[i] = in[i].len;
      memcpy(q->plain.get() + i * B, in[i].plain, in[i].len);
      if (in[i].len < B) memset(q->plain.get() + i * B + in[i].len, 0, B - in[i].len);
    }
    OPENSSL_cleanse(parts, patched * B);
    QueueLocked(std::move(q));
    pool_->behind_writes++;
    if (new_plain > old_plain) size_ = CipherSize(h_, new_plain);
    write_end_ = end;
    *wrote = len;
    return 0;
  }
  Records out;
  out.reserve(count);
  err = SealBatchLocked(in.data(), in.size(), recs, S, &out);
  OPENSSL_cleanse(parts, patched * B);
  if (needs > 0) OPENSSL_cleanse(old, needs * B);
  if (err == 0) err = WriteRecordsLocked(out);
  if (err != 0) {
    struct stat st;
    if (fstat(fd_, &st) == 0) size_ = static_cast<uint64_t>(st.st_size);  // a partial write: what is on disk
    return err;
  }
  if (new_plain > old_plain) size_ = CipherSize(h_, new_plain);
  write_end_ = end;
  *wrote = len;
  return 0;
}

void CryptNode::QueueLocked(std::unique_ptr<Behind> b) {
  std::unique_lock<std::mutex> bl(bmu_);
  bcv_.wait(bl, [&] { return behind_bytes_ < kBehindMaxBytes; });
  behind_bytes_ += b->bytes;
  queued_.push_back(std::move(b));
  if (lanes_ < kBehindLanes) {
    lanes_++;
    pool_->Post([self = shared_from_this()] { self->RunBehind(); });
  }
}

// A pool lane: takes the queued writes in order, those that follow each other (same sealer) merged into one request,
// seals and writes them, until none is left.
void CryptNode::RunBehind() {
  std::unique_lock<std::mutex> bl(bmu_);
  while (!queued_.empty()) {
    BehindRun run;
    size_t blocks = 0;
    do {
      blocks += queued_.front()->lens.size();
      run.push_back(std::move(queued_.front()));
      queued_.pop_front();
    } while (!queued_.empty() && queued_.front()->sealer == run.back()->sealer &&
             queued_.front()->first == run.back()->first + run.back()->lens.size() &&
             run.back()->lens.back() == h_.block_bytes &&
             blocks + queued_.front()->lens.size() <= blockch::kMaxBlocksPerRequest);
    bl.unlock();
    const int err = SealRun(run, run.front()->sealer.get());
    bl.lock();
    SettledRun(&run, err);
    bcv_.notify_all();
  }
  lanes_--;
  bcv_.notify_all();
}

// Seals the blocks of `run` with `sealer` (one batch) and writes their records. 0 or errno.
int CryptNode::SealRun(const BehindRun& run, BlockSealer* sealer) {
  const uint64_t B = h_.block_bytes, S = h_.slot_bytes;
  std::vector<SealIn> in;
  for (const auto& b : run) {
    for (size_t i = 0; i < b->lens.size(); i++) in.push_back({b->first + i, b->plain.get() + i * B, b->lens[i]});
  }
  Records out;
  out.reserve(in.size());
  int err = SealBatchLocked(in.data(), in.size(), Room(&t_recs, in.size() * S), S, &out, sealer);
  return err != 0 ? err : WriteRecordsLocked(out);
}

// Under bmu_: a run is done. Lost (its sealer's server went or its grant did): kept for SettleLocked. Otherwise its
// bytes are no longer behind, and a failure is owed to each handle that wrote them.
void CryptNode::SettledRun(BehindRun* run, int err) {
  for (auto& b : *run) {
    behind_bytes_ -= b->bytes;
    if (IsSealerLost(err)) {
      lost_.push_back(std::move(b));
    } else if (err != 0) {
      behind_err_.emplace(b->fh, err);
      resize_ = true;
    }
  }
  run->clear();
}

bool CryptNode::Unsettled() {
  std::lock_guard<std::mutex> bl(bmu_);
  return !queued_.empty() || lanes_ > 0 || redoing_ > 0 || !lost_.empty();
}

// Under rw_ (shared or exclusive: no write is queued meanwhile): waits for the lanes, then seals the lost writes
// with the node's sealer on this thread. 0, or the errno of a sealer lost again (they stay lost).
int CryptNode::SettleLocked() {
  std::unique_lock<std::mutex> bl(bmu_);
  for (;;) {
    bcv_.wait(bl, [&] { return queued_.empty() && lanes_ == 0 && redoing_ == 0; });
    if (lost_.empty()) break;
    BehindRun run(std::make_move_iterator(lost_.begin()), std::make_move_iterator(lost_.end()));
    lost_.clear();
    for (const auto& b : run) behind_bytes_ += b->bytes;
    redoing_++;
    bl.unlock();
    const int err = SealRun(run, sealer_.get());
    bl.lock();
    redoing_--;
    SettledRun(&run, err);
    bcv_.notify_all();
    if (IsSealerLost(err)) return err;
  }
  if (resize_) {  // what is on disk now
    struct stat st;
    if (fstat(fd_, &st) == 0) size_ = static_cast<uint64_t>(st.st_size);
    resize_ = false;
  }
  return 0;
}

int CryptNode::Flush(uint64_t fh) {
  std::shared_lock<std::shared_mutex> lk(rw_);
  if (fd_ < 0) return EBADF;
  int err = SettleLocked();
  if (err != 0) return err;
  std::lock_guard<std::mutex> bl(bmu_);
  auto it = behind_err_.find(fh);
  if (it == behind_err_.end()) return 0;
  err = it->second;
  behind_err_.erase(it);
  return err;
}

void CryptNode::ForgetHandle(uint64_t fh) {
  std::lock_guard<std::mutex> bl(bmu_);
  behind_err_.erase(fh);
}

// crypt-file.ts truncate + resize: at most one record on disk is replaced (block k, where the kept bytes end inside);
// that goes through the redo record (written past both ends and synced, then the records in place and synced, then
// the cut), everything else is one step.
int CryptNode::Truncate(uint64_t plain) {
  std::unique_lock<std::shared_mutex> lk(rw_);
  if (fd_ < 0) return EBADF;
  if (!KeyHeld()) return kKeyDropped;
  int err = SettleLocked();
  if (err != 0) return err;
  DropAhead();
  write_end_ = plain;
  const uint64_t old_size = size_.load();
  if (old_size == 0 && plain == 0) return 0;
  err = EnsureHeaderLocked();
  if (err != 0) return err;
  const uint64_t B = h_.block_bytes, cur = size_.load();
  const uint64_t old_plain = PlainSize(h_, cur);
  if (plain == old_plain) return 0;
  const uint64_t keep = std::min(plain, old_plain), k = keep / B, k_new = plain / B;
  const uint64_t target = CipherSize(h_, plain);
  Redo redo;
  redo.target = target;
  uint8_t* part = Room(&t_plain, B);
  if (keep % B != 0) {
    uint32_t have = 0;
    err = OpenBlockLocked(k, part, &have);
    if (err != 0) return err;
    const uint32_t blen = static_cast<uint32_t>(std::min<uint64_t>(B, plain - k * B));
    if (blen > have) memset(part + have, 0, blen - have);
    std::vector<uint8_t> rec(blen + kRecordOverhead);
    size_t rec_len = 0;
    err = SealLocked(k, part, blen, rec.data(), &rec_len);
    if (err != 0) return err;
    rec.resize(rec_len);
    redo.writes.emplace_back(RecordOffset(k, blen, rec_len), std::move(rec));
  }
  if (plain > old_plain && plain % B != 0 && (keep % B == 0 || k_new > k)) {
    const uint32_t blen = static_cast<uint32_t>(plain % B);
    memset(part, 0, blen);
    std::vector<uint8_t> rec(blen + kRecordOverhead);
    size_t rec_len = 0;
    err = SealLocked(k_new, part, blen, rec.data(), &rec_len);
    if (err != 0) return err;
    rec.resize(rec_len);
    redo.writes.emplace_back(RecordOffset(k_new, blen, rec_len), std::move(rec));
  }
  OPENSSL_cleanse(part, B);
  const bool in_place = keep % B != 0;
  if (in_place) {
    std::vector<uint8_t> r = EncodeRedo(redo);
    err = PwriteFull(fd_, r.data(), r.size(), std::max(cur, target));
    if (err == 0 && fdatasync(fd_) != 0) err = errno;
    if (err != 0) return err;
  }
  for (const auto& w : redo.writes) {
    err = PwriteFull(fd_, w.second.data(), w.second.size(), w.first);
    if (err != 0) return err;
  }
  if (in_place && fdatasync(fd_) != 0) return errno;
  if (ftruncate(fd_, static_cast<off_t>(target)) != 0) return errno;
  size_ = target;
  return 0;
}

int CryptNode::Sync(bool datasync, uint64_t fh) {
  int err = Flush(fh);
  if (err != 0) return err;
  std::shared_lock<std::shared_mutex> lk(rw_);
  if (fd_ < 0) return EBADF;
  return (datasync ? fdatasync(fd_) : fsync(fd_)) == 0 ? 0 : errno;
}

// ---- CryptNodes ----

int CryptNodes::Acquire(int handle_fd, const HostKey& k, std::shared_ptr<CryptNode>* out, std::string* why) {
  struct stat st;
  if (fstat(handle_fd, &st) != 0) return errno;
  FileHeader h;
  if (!k.present || !DecodeHeader(k.header.data(), k.header.size(), &h, why) || k.header.size() != h.header_bytes) {
    if (why->empty()) *why = "the answer's header does not decode";
    return EIO;
  }
  std::shared_ptr<BlockSealer> sealer = SealerFor(k, h.cipher, why);
  if (sealer == nullptr) return k.remote ? EHOSTUNREACH : EIO;
  std::lock_guard<std::mutex> lock(mu_);
  auto key = std::make_pair(st.st_dev, st.st_ino);
  auto it = nodes_.find(key);
  if (it != nodes_.end()) {
    // Two creates of one new name at once each got a header of their own; the first one's holds (the file has no
    // header on disk yet, or has that one): the later opener shares the node and its live sealer.
    const bool other_header = k.header != it->second.first->header();
    int err = other_header && it->second.first->KeyLive() ? 0 : it->second.first->InstallKey(k, sealer);
    if (err != 0) {
      *why = "the answer's header is not the file's";
      return err;
    }
    it->second.second++;
    (k.remote ? grants : keys)++;
    *out = it->second.first;
    return 0;
  }
  std::string proc = "/proc/self/fd/" + std::to_string(handle_fd);
  int fd = open(proc.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) fd = open(proc.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  auto fail = [&](int err, const std::string& w) {
    close(fd);
    *why = w;
    return err;
  };
  if (fstat(fd, &st) != 0) return fail(errno, "fstat");
  uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size > 0) {
    uint8_t head[kHeaderMaxBytes];
    size_t got = 0;
    int err = PreadFull(fd, head, std::min<uint64_t>(size, sizeof(head)), 0, &got);
    if (err != 0) return fail(err, "reading the header");
    if (got < k.header.size() || memcmp(head, k.header.data(), k.header.size()) != 0) {
      FileHeader now;
      std::string ignored;
      // Another create of this name wrote its header since the answer was made: ESTALE, the opener asks again.
      if (HasFileMagic(head, got) && DecodeHeader(head, got, &now, &ignored)) return fail(ESTALE, "the file got another header");
      return fail(EIO, "the file's header is not the answer's (or the file is not encrypted)");
    }
    Redo redo;
    if (ReadRedo(fd, h, size, &redo)) {  // a truncation a crash interrupted: finish it (FORMAT.md §4.8)
      for (const auto& w : redo.writes) {
        if ((err = PwriteFull(fd, w.second.data(), w.second.size(), w.first)) != 0) return fail(err, "redo");
      }
      if (fdatasync(fd) != 0 || ftruncate(fd, static_cast<off_t>(redo.target)) != 0) return fail(errno, "redo");
      size = redo.target;
      HostLog("inode " + std::to_string(st.st_ino) + ": finished a truncation a crash interrupted (" +
              std::to_string(size) + " bytes underneath)");
    }
  }
  auto n = std::make_shared<CryptNode>(fd, h, k.header, size, &behind);
  if (n->InstallKey(k, sealer) != 0) return *why = "the answer's header is not the file's", EIO;
  nodes_[key] = {n, 1};
  (k.remote ? grants : keys)++;
  *out = n;
  return 0;
}

std::shared_ptr<BlockSealer> CryptNodes::SealerFor(const HostKey& k, uint8_t cipher, std::string* why) {
  if (!k.present) return *why = "no key", nullptr;
  if (k.remote) return links.Sealer(k.spec, why);
  if (CipherOf(cipher) == nullptr) return *why = "the cipher is not available from OpenSSL", nullptr;
  auto local = std::make_shared<LocalSealer>(CipherOf(cipher), k.key);
  if (!local->ok()) return *why = "no key slot (mmap failed)", nullptr;
  return local;
}

std::shared_ptr<CryptNode> CryptNodes::Hold(dev_t dev, ino_t ino, bool live_key) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = nodes_.find({dev, ino});
  if (it == nodes_.end() || (live_key && !it->second.first->KeyLive())) return nullptr;
  it->second.second++;
  return it->second.first;
}

std::shared_ptr<CryptNode> CryptNodes::Find(dev_t dev, ino_t ino) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = nodes_.find({dev, ino});
  return it == nodes_.end() ? nullptr : it->second.first;
}

void CryptNodes::Release(const std::shared_ptr<CryptNode>& n) {
  std::shared_ptr<CryptNode> gone;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = nodes_.begin(); it != nodes_.end(); ++it) {
      if (it->second.first != n) continue;
      if (--it->second.second == 0) {
        gone = it->second.first;
        nodes_.erase(it);
      }
      break;
    }
  }
  if (gone != nullptr) gone->Close();
}

void CryptNodes::Clear() {
  ClearSpares();
  std::map<std::pair<dev_t, ino_t>, std::pair<std::shared_ptr<CryptNode>, int>> all;
  {
    std::lock_guard<std::mutex> lock(mu_);
    all.swap(nodes_);
  }
  for (auto& kv : all) kv.second.first->Close();
  links.Clear();
}

void CryptNodes::PutSpares(uint32_t pool, const std::vector<HostKey>& ks) {
  if (pool == 0 || ks.empty()) return;
  auto now = std::chrono::steady_clock::now();
  std::lock_guard<std::mutex> lock(spares_mu_);
  if (spare_count_ + ks.size() > kMaxSpares) {  // many pools at once: start over rather than keep stale ones
    spares_.clear();
    spare_count_ = 0;
  }
  std::vector<Spare>& list = spares_[pool];
  for (const HostKey& k : ks) {
    if (!k.present || k.remote || k.ttl_ms < kSpareMinMs || spare_count_ >= kMaxSpares) continue;
    auto page = std::make_unique<KeySlot>();
    if (!page->ok()) continue;
    page->Set(k.key);
    list.push_back({std::move(page), k.header, now + std::chrono::milliseconds(static_cast<int64_t>(k.ttl_ms))});
    spare_count_++;
  }
}

bool CryptNodes::TakeSpare(uint32_t pool, HostKey* out) {
  if (pool == 0) return false;
  std::lock_guard<std::mutex> lock(spares_mu_);
  auto it = spares_.find(pool);
  if (it == spares_.end()) return false;
  auto now = std::chrono::steady_clock::now();
  while (!it->second.empty()) {
    Spare s = std::move(it->second.back());
    it->second.pop_back();
    spare_count_--;
    double left = std::chrono::duration<double, std::milli>(s.until - now).count();
    if (left < kSpareMinMs) continue;  // its page is wiped as it goes
    memcpy(out->key, s.key->bytes(), kHostKeyBytes);
    out->header = std::move(s.header);
    out->ttl_ms = left;
    out->present = true;
    spare_takes++;
    return true;
  }
  return false;
}

void CryptNodes::PruneSpares() {
  auto now = std::chrono::steady_clock::now();
  std::lock_guard<std::mutex> lock(spares_mu_);
  for (auto& kv : spares_) {
    auto& list = kv.second;
    size_t before = list.size();
    list.erase(std::remove_if(list.begin(), list.end(), [&](const Spare& sp) {
      return std::chrono::duration<double, std::milli>(sp.until - now).count() < kSpareMinMs;
    }), list.end());
    spare_count_ -= before - list.size();
  }
}

void CryptNodes::ClearSpares() {
  std::lock_guard<std::mutex> lock(spares_mu_);
  spares_.clear();
  spare_count_ = 0;
}

size_t CryptNodes::spares() {
  std::lock_guard<std::mutex> lock(spares_mu_);
  return spare_count_;
}

size_t CryptNodes::DropKeys(bool expired_only) {
  std::vector<std::shared_ptr<CryptNode>> all;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& kv : nodes_) all.push_back(kv.second.first);
  }
  size_t n = 0;
  for (auto& node : all) n += node->DropKey(expired_only) ? 1 : 0;
  keys_dropped += n;
  if (expired_only) PruneSpares();
  else ClearSpares();  // a revocation: the next new files' keys go too
  return n;
}

size_t CryptNodes::keys_held() {
  std::lock_guard<std::mutex> lock(mu_);
  size_t n = 0;
  for (auto& kv : nodes_) n += kv.second.first->KeyHeld() ? 1 : 0;
  return n;
}

size_t CryptNodes::nodes() {
  std::lock_guard<std::mutex> lock(mu_);
  return nodes_.size();
}

bool CryptNodes::ClosedSize(int fd, const struct stat& st, uint64_t* size) {
  *size = static_cast<uint64_t>(st.st_size);
  if (st.st_size == 0) return true;
  auto key = std::make_tuple(st.st_dev, st.st_ino, static_cast<int64_t>(st.st_ctim.tv_sec),
                             static_cast<int64_t>(st.st_ctim.tv_nsec), static_cast<int64_t>(st.st_size));
  Seen seen;
  bool found = false;
  {
    std::lock_guard<std::mutex> lock(seen_mu_);
    auto it = seen_.find(key);
    if (it != seen_.end()) seen = it->second, found = true;
  }
  if (!found) {
    uint8_t head[kHeaderMaxBytes];
    size_t got = 0;
    std::string why;
    if (PreadFull(fd, head, std::min<uint64_t>(*size, sizeof(head)), 0, &got) != 0) return false;
    seen.encrypted = HasFileMagic(head, got) && DecodeHeader(head, got, &seen.h, &why);
    seen.redo = seen.encrypted && EndsInRedo(fd, *size);
    std::lock_guard<std::mutex> lock(seen_mu_);
    if (seen_.size() >= kSeenMax) seen_.erase(seen_.begin());
    seen_[key] = seen;
  }
  if (seen.redo || !seen.encrypted) return false;
  *size = PlainSize(seen.h, *size);
  return true;
}

}  // namespace pem::fuse
