// BlockLinks, BlockLink and RemoteSealer (block_client.h): the block channel's client on pemfs's worker threads.
#include "block_client.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/crypto.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <thread>
#include <unordered_map>

namespace pem::fuse {

using namespace blockch;

RemoteSpec::~RemoteSpec() {
  OPENSSL_cleanse(keys, sizeof(keys));
  OPENSSL_cleanse(grant, sizeof(grant));
}

class BlockLink {
 public:
  BlockLink(BlockLinks* owner, std::string server, std::shared_ptr<std::atomic<uint64_t>> sent)
      : owner_(owner), server_(std::move(server)), sent_(std::move(sent)) {}
  ~BlockLink() {
    Fail();
    if (fd_ >= 0) close(fd_);
  }
  int Connect(const RemoteSpec& r, std::string* why);
  int Call(uint8_t op, const uint8_t* grant, BlockJob* jobs, size_t n);
  bool alive() const { return !dead_; }
  void Fail() {
    if (!dead_.exchange(true) && fd_ >= 0) shutdown(fd_, SHUT_RDWR);
  }
  ServerSeen Seen() const {
    ServerSeen s;
    uint32_t b = load_bits_;
    memcpy(&s.load, &b, 4);
    s.server = server_, s.weight = weight_, s.pv = pv_, s.alive = alive(), s.requests = *sent_;
    return s;
  }

 private:
  struct Waiter {
    std::condition_variable cv;
    bool done = false;
    int err = 0;
    uint8_t op = 0;
    BlockJob* jobs = nullptr;
    size_t n = 0;
  };
  bool ReadOne(int wait_ms);
  void Deliver(const uint8_t* body, size_t n);

  BlockLinks* owner_;
  std::string server_;
  std::shared_ptr<std::atomic<uint64_t>> sent_;
  int fd_ = -1;
  std::atomic<bool> dead_{false};
  std::mutex send_mu_;
  RecordCipher out_, in_;
  std::vector<uint8_t> sbuf_;  // under send_mu_
  std::mutex mu_;
  std::unordered_map<uint32_t, Waiter*> pending_;
  uint32_t next_id_ = 1;
  // No reader thread: a caller waiting for its reply reads the socket while no other does (the reader), and hands
  // other callers' replies over; at depth 1 the reply wakes the caller itself, with no thread in between.
  bool reading_ = false;        // under mu_
  std::vector<uint8_t> rbuf_;   // the reader's
  std::atomic<uint32_t> load_bits_{0};
  std::atomic<uint16_t> weight_{0};
  std::atomic<uint64_t> pv_{0};
};

int BlockLink::Connect(const RemoteSpec& r, std::string* why) {
  struct addrinfo hints = {}, *ai = nullptr;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  int rc = getaddrinfo(r.host.c_str(), std::to_string(r.port).c_str(), &hints, &ai);
  if (rc != 0) return *why = gai_strerror(rc), ENOTCONN;
  int err = ENOTCONN;
  for (struct addrinfo* a = ai; a != nullptr; a = a->ai_next) {
    int fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    struct timeval tv = {kBlockCallTimeoutMs / 1000, 0};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
      fd_ = fd;
      err = 0;
      break;
    }
    err = errno;
    close(fd);
  }
  freeaddrinfo(ai);
  if (fd_ < 0) return *why = std::string("connect: ") + strerror(err), ENOTCONN;
  int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (!out_.Init(r.keys, true) || !in_.Init(r.keys + kDirKeyBytes, false)) return *why = "record cipher", ENOTCONN;
  if ((err = WriteFull(fd_, r.token, kTokenBytes)) != 0) return *why = strerror(err), ENOTCONN;
  return 0;
}

int StatusErrno(uint8_t status) {
  switch (status) {
    case kOk: return 0;
    case kGrantUnknown:
    case kGrantExpired:
    case kGrantHost: return EKEYEXPIRED;
    case kGrantOps: return EACCES;
    default: return EIO;
  }
}

int BlockLink::Call(uint8_t op, const uint8_t* grant, BlockJob* jobs, size_t n) {
  size_t in_bytes = 0;
  for (size_t i = 0; i < n; i++) in_bytes += op == kSeal ? jobs[i].len : jobs[i].len + kBlockOverhead;
  const size_t body = kRequestHeadBytes + n * kBlockMetaBytes + in_bytes;
  Waiter w;
  w.op = op, w.jobs = jobs, w.n = n;
  (*sent_)++;
  uint32_t id;
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (dead_) return ENOTCONN;
    do id = next_id_++;
    while (id == 0 || pending_.count(id) != 0);
    pending_[id] = &w;
  }
  int err = 0;
  {
    std::lock_guard<std::mutex> lk(send_mu_);
    if (sbuf_.size() < kRecordHeadBytes + body + kRecordTagBytes) sbuf_.resize(kRecordHeadBytes + body + kRecordTagBytes);
    uint8_t* p = sbuf_.data() + kRecordHeadBytes;
    p[0] = op, p[1] = 0;
    Put16(p + 2, static_cast<uint16_t>(n));
    Put32(p + 4, id);
    memcpy(p + 8, grant, kGrantBytes);
    uint8_t* meta = p + kRequestHeadBytes;
    uint8_t* data = meta + n * kBlockMetaBytes;
    for (size_t i = 0; i < n; i++) {
      Put32(meta + i * kBlockMetaBytes, jobs[i].len);
      memcpy(meta + i * kBlockMetaBytes + 4, jobs[i].aad, kAadBytes);
      const size_t len = op == kSeal ? jobs[i].len : jobs[i].len + kBlockOverhead;
      memcpy(data, jobs[i].in, len);
      data += len;
    }
    if (!out_.Seal(sbuf_.data(), p, body)) {
      err = EIO;
      OPENSSL_cleanse(p, body);  // still plaintext (once sealed it is ciphertext: nothing to wipe)
    }
    if (err == 0) err = WriteFull(fd_, sbuf_.data(), kRecordHeadBytes + body + kRecordTagBytes) == 0 ? 0 : ENOTCONN;
  }
  std::unique_lock<std::mutex> lk(mu_);
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(kBlockCallTimeoutMs);
  while (err == 0 && !w.done) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= until) {
      err = ETIMEDOUT;
      break;
    }
    if (reading_) {  // another caller reads: wait to be handed the reply, or the turn
      w.cv.wait_until(lk, until);
      continue;
    }
    if (dead_) {  // failed while nobody read (a timeout, Clear)
      err = ENOTCONN;
      break;
    }
    reading_ = true;
    lk.unlock();
    const int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(until - now).count()) + 1;
    ReadOne(left);
    lk.lock();
    reading_ = false;
    if (w.done && !pending_.empty()) pending_.begin()->second->cv.notify_one();  // the next waiter takes the turn
  }
  if (!w.done) {
    pending_.erase(id);
    for (auto& kv : pending_) kv.second->cv.notify_one();  // the link fails: nobody waits for a turn that never comes
    lk.unlock();
    Fail();  // a server that does not answer in time is treated as gone (one timeout at most)
    return err;
  }
  return w.err;
}

void BlockLink::Deliver(const uint8_t* body, size_t n) {
  const uint8_t op = body[0], status = body[1];
  const uint16_t count = Get16(body + 2);
  const uint32_t id = Get32(body + 4);
  load_bits_ = Get32(body + 8);
  weight_ = Get16(body + 12);
  pv_ = Get64(body + 16);
  std::lock_guard<std::mutex> lk(mu_);
  auto it = pending_.find(id);
  if (it == pending_.end()) return;  // timed out meanwhile
  Waiter* w = it->second;
  pending_.erase(it);
  w->err = StatusErrno(status);
  if (w->err == 0 && (op != w->op || count != w->n)) w->err = EIO;
  if (w->err == 0) {
    const uint8_t* data = body + kReplyHeadBytes;
    size_t need = 0;
    for (size_t i = 0; i < w->n; i++) need += op == kSeal ? w->jobs[i].len + kBlockOverhead : w->jobs[i].len;
    if (need != n - kReplyHeadBytes) {
      w->err = EIO;
    } else {
      for (size_t i = 0; i < w->n; i++) {
        const size_t len = op == kSeal ? w->jobs[i].len + kBlockOverhead : w->jobs[i].len;
        memcpy(w->jobs[i].out, data, len);
        data += len;
      }
    }
  }
  w->done = true;
  w->cv.notify_one();
}

// One record from the socket into rbuf_, opened, handed to its waiter. False: the connection is gone (or its
// records are not authentic): the link fails and every waiter with it.
bool BlockLink::ReadOne(int wait_ms) {
  struct pollfd p = {fd_, POLLIN, 0};
  int r = poll(&p, 1, wait_ms);
  if (r == 0) return true;  // nothing yet: the caller checks its deadline
  uint8_t head[kRecordHeadBytes];
  bool ok = r > 0 && ReadFull(fd_, head, kRecordHeadBytes) == 0;
  const uint32_t len = ok ? Get32(head) : 0;
  ok = ok && len >= kRecordTagBytes + kReplyHeadBytes && len <= kMaxRecordBytes;
  if (ok && rbuf_.size() < len) rbuf_.resize(len);
  ok = ok && ReadFull(fd_, rbuf_.data(), len) == 0 && in_.Open(head, rbuf_.data(), len - kRecordTagBytes);
  if (ok) {
    Deliver(rbuf_.data(), len - kRecordTagBytes);
    OPENSSL_cleanse(rbuf_.data(), len - kRecordTagBytes);
    return true;
  }
  if (!dead_) owner_->lost++;
  Fail();
  std::lock_guard<std::mutex> lk(mu_);
  for (auto& kv : pending_) {
    kv.second->err = ENOTCONN;
    kv.second->done = true;
    kv.second->cv.notify_one();
  }
  pending_.clear();
  return false;
}

namespace {

class RemoteSealer : public BlockSealer {
 public:
  RemoteSealer(std::shared_ptr<BlockLink> link, const uint8_t* grant, BlockLinks* owner)
      : link_(std::move(link)), owner_(owner) {
    memcpy(grant_, grant, kGrantBytes);
  }
  ~RemoteSealer() override { OPENSSL_cleanse(grant_, sizeof(grant_)); }
  int Run(bool seal, BlockJob* jobs, size_t n) override {
    for (size_t i = 0; i < n;) {  // requests of at most kMaxBlocksPerRequest blocks and kMaxDataPerRequest bytes
      size_t j = i, bytes = 0;
      while (j < n && j - i < kMaxBlocksPerRequest && (j == i || bytes + jobs[j].len + kBlockOverhead <= kMaxDataPerRequest)) {
        bytes += jobs[j++].len + kBlockOverhead;
      }
      owner_->requests++;
      owner_->blocks += j - i;
      int err = link_->Call(seal ? kSeal : kOpen, grant_, jobs + i, j - i);
      if (err != 0) return err;
      i = j;
    }
    return 0;
  }

 private:
  std::shared_ptr<BlockLink> link_;
  BlockLinks* owner_;
  uint8_t grant_[kGrantBytes];
};

}  // namespace

std::shared_ptr<BlockSealer> BlockLinks::Sealer(const RemoteSpec& r, std::string* why) {
  std::lock_guard<std::mutex> lk(mu_);
  auto& link = links_[r.server];
  if (link == nullptr || !link->alive()) {
    auto& sent = sent_[r.server];
    if (sent == nullptr) sent = std::make_shared<std::atomic<uint64_t>>(0);
    auto fresh = std::make_shared<BlockLink>(this, r.server, sent);
    if (fresh->Connect(r, why) != 0) return nullptr;
    link = fresh;
    connects++;
  }
  return std::make_shared<RemoteSealer>(link, r.grant, this);
}

void BlockLinks::Clear() {
  std::map<std::string, std::shared_ptr<BlockLink>> all;
  {
    std::lock_guard<std::mutex> lk(mu_);
    all.swap(links_);
  }
  for (auto& kv : all) kv.second->Fail();
}

std::vector<ServerSeen> BlockLinks::Seen() {
  std::lock_guard<std::mutex> lk(mu_);
  std::vector<ServerSeen> out;
  for (auto& kv : links_) {
    if (kv.second != nullptr) out.push_back(kv.second->Seen());
  }
  return out;
}

}  // namespace pem::fuse
