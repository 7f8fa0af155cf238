// spd's native block service (issue 17, docs/CHANNEL.md §8): its own threads accept block-channel connections from
// pemfs hosts, check each request against the grants the JS control plane installed (host, file id, key version,
// cipher, seal allowed, expiry; the per-file key is copied in from the engine's Key handle and never leaves this
// process) and seal/open the batch with OpenSSL EVP on the connection's thread. No JS per block: the control plane
// installs connection tokens and grants, pushes load and weight (they ride in every reply) and reads counters.
// JS: lib/server/block-service.ts.
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <napi.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <list>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "block_channel.h"
#include "crypto_engine.h"
#include "errors.h"
#include "load_regs.h"

namespace pem::blockch {
namespace {

constexpr int64_t kTokenLifeMs = 10000;  // an installed connection token not used within this is dropped
constexpr size_t kGrantsMax = 100000;
constexpr size_t kTokensMax = 4096;
constexpr int kFirstRecordMs = 5000;  // a connection must present its token and first record within this
constexpr int kUnauthenticatedMax = 64;  // connections at once that have not yet sent an authentic record

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

struct Grant {
  std::string host;
  uint8_t file_id[16];
  uint32_t key_version;
  uint8_t cipher;
  bool seal;
  int64_t expires;
  uint8_t key[32];
  ~Grant() { OPENSSL_cleanse(key, sizeof(key)); }
};

struct Pending {  // a connection token the control plane installed
  std::string host;
  uint8_t keys[kChannelKeyBytes];
  int64_t expires;
  ~Pending() { OPENSSL_cleanse(keys, sizeof(keys)); }
};

struct Conn {
  int fd = -1;
  std::string host;
  std::thread thread;
  std::atomic<bool> done{false};
};

const EVP_CIPHER* CipherOf(uint8_t id) {
  static EVP_CIPHER* aes = EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
  static EVP_CIPHER* chacha = EVP_CIPHER_fetch(nullptr, "ChaCha20-Poly1305", nullptr);
  return id == 1 ? aes : id == 2 ? chacha : nullptr;
}

class Service {
 public:
  int Start(const std::string& host, int port, std::string* why);
  void Stop();
  void AddToken(const uint8_t* token, const std::string& host, const uint8_t* keys, int64_t life_ms);
  void AddGrant(const uint8_t* handle, std::unique_ptr<Grant> g);
  void DropHost(const std::string& host);
  void SetLoad(float load, uint16_t weight, uint64_t pv) {
    load_bits_ = [&] { uint32_t b; memcpy(&b, &load, 4); return b; }();
    weight_ = weight;
    pv_ = pv;
  }
  bool running() const { return listen_fd_ >= 0; }
  int port() const { return port_; }

  std::atomic<uint64_t> connections{0}, refused_token{0}, refused_record{0}, requests{0}, seal_blocks{0},
      open_blocks{0}, seal_bytes{0}, open_bytes{0}, grant_refusals{0}, aad_refusals{0}, auth_failures{0},
      bad_requests{0}, refused_busy{0};

 private:
  void AcceptLoop();
  void Serve(Conn* c);
  uint8_t Handle(const std::string& host, uint8_t* req, size_t n, uint8_t* reply, size_t* reply_len, uint16_t* index);

  int listen_fd_ = -1;
  int wake_[2] = {-1, -1};
  int port_ = 0;
  std::thread acceptor_;
  std::mutex conns_mu_;
  std::list<std::unique_ptr<Conn>> conns_;
  std::mutex tokens_mu_;
  std::unordered_map<std::string, std::unique_ptr<Pending>> tokens_;
  std::shared_mutex grants_mu_;
  std::unordered_map<std::string, std::unique_ptr<Grant>> grants_;
  std::atomic<uint32_t> load_bits_{0};
  std::atomic<uint16_t> weight_{0};
  std::atomic<uint64_t> pv_{0};
  std::atomic<int> unauthenticated_{0};
};

int Service::Start(const std::string& host, int port, std::string* why) {
  if (listen_fd_ >= 0) return port_;
  struct sockaddr_in6 a6 = {};
  struct sockaddr_in a4 = {};
  bool v6 = host.find(':') != std::string::npos;
  int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return *why = strerror(errno), -1;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  int rc;
  if (v6) {
    a6.sin6_family = AF_INET6;
    a6.sin6_port = htons(static_cast<uint16_t>(port));
    if (inet_pton(AF_INET6, host.c_str(), &a6.sin6_addr) != 1) return close(fd), *why = "bad address " + host, -1;
    rc = bind(fd, reinterpret_cast<sockaddr*>(&a6), sizeof(a6));
  } else {
    a4.sin_family = AF_INET;
    a4.sin_port = htons(static_cast<uint16_t>(port));
    if (inet_pton(AF_INET, host.c_str(), &a4.sin_addr) != 1) return close(fd), *why = "bad address " + host, -1;
    rc = bind(fd, reinterpret_cast<sockaddr*>(&a4), sizeof(a4));
  }
  if (rc != 0 || listen(fd, 128) != 0) {
    *why = strerror(errno);
    close(fd);
    return -1;
  }
  struct sockaddr_storage ss;
  socklen_t sl = sizeof(ss);
  getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &sl);
  port_ = ntohs(ss.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                                          : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  if (pipe2(wake_, O_CLOEXEC) != 0) return close(fd), *why = strerror(errno), -1;
  listen_fd_ = fd;
  acceptor_ = std::thread([this] { AcceptLoop(); });
  return port_;
}

void Service::Stop() {
  if (listen_fd_ < 0) return;
  if (write(wake_[1], "q", 1) < 0) {
  }
  acceptor_.join();
  close(listen_fd_);
  close(wake_[0]);
  close(wake_[1]);
  listen_fd_ = -1;
  std::list<std::unique_ptr<Conn>> all;
  {
    std::lock_guard<std::mutex> lk(conns_mu_);
    all.swap(conns_);
  }
  for (auto& c : all) shutdown(c->fd, SHUT_RDWR);
  for (auto& c : all) {
    c->thread.join();
    close(c->fd);
  }
  std::lock_guard<std::mutex> lk(tokens_mu_);
  tokens_.clear();
  std::unique_lock<std::shared_mutex> gl(grants_mu_);
  grants_.clear();
}

void Service::AddToken(const uint8_t* token, const std::string& host, const uint8_t* keys, int64_t life_ms) {
  auto p = std::make_unique<Pending>();
  p->host = host;
  memcpy(p->keys, keys, kChannelKeyBytes);
  const int64_t now = NowMs();
  p->expires = now + life_ms;
  std::lock_guard<std::mutex> lk(tokens_mu_);
  for (auto it = tokens_.begin(); it != tokens_.end();) it = it->second->expires <= now ? tokens_.erase(it) : ++it;
  if (tokens_.size() >= kTokensMax) tokens_.erase(tokens_.begin());
  tokens_[std::string(reinterpret_cast<const char*>(token), kTokenBytes)] = std::move(p);
}

void Service::AddGrant(const uint8_t* handle, std::unique_ptr<Grant> g) {
  const int64_t now = NowMs();
  std::unique_lock<std::shared_mutex> lk(grants_mu_);
  if (grants_.size() >= kGrantsMax) {
    for (auto it = grants_.begin(); it != grants_.end();) it = it->second->expires <= now ? grants_.erase(it) : ++it;
    if (grants_.size() >= kGrantsMax) grants_.erase(grants_.begin());
  }
  grants_[std::string(reinterpret_cast<const char*>(handle), kGrantBytes)] = std::move(g);
}

void Service::DropHost(const std::string& host) {
  {
    std::unique_lock<std::shared_mutex> lk(grants_mu_);
    for (auto it = grants_.begin(); it != grants_.end();) it = it->second->host == host ? grants_.erase(it) : ++it;
  }
  {
    std::lock_guard<std::mutex> lk(tokens_mu_);
    for (auto it = tokens_.begin(); it != tokens_.end();) it = it->second->host == host ? tokens_.erase(it) : ++it;
  }
  std::lock_guard<std::mutex> lk(conns_mu_);
  for (auto& c : conns_) {
    if (c->host == host && !c->done) shutdown(c->fd, SHUT_RDWR);
  }
}

void Service::AcceptLoop() {
  for (;;) {
    struct pollfd p[2] = {{listen_fd_, POLLIN, 0}, {wake_[0], POLLIN, 0}};
    if (poll(p, 2, 1000) < 0 && errno != EINTR) break;
    if (p[1].revents != 0) break;
    {
      std::lock_guard<std::mutex> lk(conns_mu_);  // reap finished connections
      for (auto it = conns_.begin(); it != conns_.end();) {
        if ((*it)->done) {
          (*it)->thread.join();
          close((*it)->fd);
          it = conns_.erase(it);
        } else {
          ++it;
        }
      }
    }
    if ((p[0].revents & POLLIN) == 0) continue;
    int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    if (unauthenticated_ >= kUnauthenticatedMax) {  // a flood of connections never gets a thread each
      refused_busy++;
      close(fd);
      continue;
    }
    unauthenticated_++;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    auto c = std::make_unique<Conn>();
    c->fd = fd;
    Conn* raw = c.get();
    std::lock_guard<std::mutex> lk(conns_mu_);
    conns_.push_back(std::move(c));
    raw->thread = std::thread([this, raw] { Serve(raw); });
  }
}

thread_local EVP_CIPHER_CTX* t_ctx = nullptr;

// One block: seal (in: len plaintext -> out: nonce|ct|tag) or open (the reverse). False: authentication failed.
bool BlockAead(const EVP_CIPHER* cipher, const uint8_t* key, bool seal, const uint8_t* aad, const uint8_t* in,
               uint32_t len, uint8_t* out) {
  if (t_ctx == nullptr) t_ctx = EVP_CIPHER_CTX_new();
  EVP_CIPHER_CTX* c = t_ctx;
  int outl = 0;
  bool ok;
  if (seal) {
    ok = RAND_bytes(out, 12) == 1 && EVP_CipherInit_ex2(c, cipher, key, out, 1, nullptr) == 1 &&
         EVP_EncryptUpdate(c, nullptr, &outl, aad, kAadBytes) == 1 &&
         (len == 0 || EVP_EncryptUpdate(c, out + 12, &outl, in, static_cast<int>(len)) == 1) &&
         EVP_EncryptFinal_ex(c, out + 12 + len, &outl) == 1 &&
         EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, 16, out + 12 + len) == 1;
  } else {
    uint8_t tag[16];
    memcpy(tag, in + 12 + len, 16);
    ok = EVP_CipherInit_ex2(c, cipher, key, in, 0, nullptr) == 1 &&
         EVP_DecryptUpdate(c, nullptr, &outl, aad, kAadBytes) == 1 &&
         (len == 0 || EVP_DecryptUpdate(c, out, &outl, in + 12, static_cast<int>(len)) == 1) &&
         EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, 16, tag) == 1 && EVP_DecryptFinal_ex(c, out + len, &outl) == 1;
    if (!ok && len > 0) OPENSSL_cleanse(out, len);
  }
  ERR_clear_error();
  EVP_CIPHER_CTX_reset(c);
  return ok;
}

// One request (plaintext of a record) into a reply body (after its head). Returns the status.
uint8_t Service::Handle(const std::string& host, uint8_t* req, size_t n, uint8_t* reply, size_t* reply_len,
                        uint16_t* index) {
  *reply_len = 0;
  const uint8_t op = req[0];
  const uint16_t count = Get16(req + 2);
  if ((op != kSeal && op != kOpen) || count == 0 || count > kMaxBlocksPerRequest ||
      n < kRequestHeadBytes + count * kBlockMetaBytes) {
    bad_requests++;
    return kBadRequest;
  }
  const uint8_t* meta = req + kRequestHeadBytes;
  size_t in_bytes = 0, out_bytes = 0;
  for (uint16_t i = 0; i < count; i++) {
    const uint32_t len = Get32(meta + i * kBlockMetaBytes);
    in_bytes += op == kSeal ? len : len + kBlockOverhead;
    out_bytes += op == kSeal ? len + kBlockOverhead : len;
  }
  if (kRequestHeadBytes + count * kBlockMetaBytes + in_bytes != n || out_bytes > kMaxDataPerRequest + 64 * 1024) {
    bad_requests++;
    return kBadRequest;
  }
  std::shared_lock<std::shared_mutex> lk(grants_mu_);
  auto it = grants_.find(std::string(reinterpret_cast<const char*>(req + 8), kGrantBytes));
  if (it == grants_.end()) return grant_refusals++, kGrantUnknown;
  const Grant& g = *it->second;
  if (g.expires <= NowMs()) return grant_refusals++, kGrantExpired;
  if (g.host != host) return grant_refusals++, kGrantHost;
  if (op == kSeal && !g.seal) return grant_refusals++, kGrantOps;
  const EVP_CIPHER* cipher = CipherOf(g.cipher);
  for (uint16_t i = 0; i < count; i++) {  // every AAD names the grant's file, key version and cipher
    const uint8_t* aad = meta + i * kBlockMetaBytes + 4;
    if (memcmp(aad, "PEMF", 4) != 0 || memcmp(aad + 6, g.file_id, 16) != 0 || aad[22] != g.cipher ||
        Get32(aad + 36) != g.key_version || cipher == nullptr) {
      *index = i;
      aad_refusals++;
      return kAadFile;
    }
  }
  const uint8_t* in = meta + count * kBlockMetaBytes;
  uint8_t* out = reply;
  for (uint16_t i = 0; i < count; i++) {
    const uint32_t len = Get32(meta + i * kBlockMetaBytes);
    if (!BlockAead(cipher, g.key, op == kSeal, meta + i * kBlockMetaBytes + 4, in, len, out)) {
      *index = i;
      auth_failures++;
      OPENSSL_cleanse(reply, static_cast<size_t>(out - reply));
      return kBlockAuth;
    }
    in += op == kSeal ? len : len + kBlockOverhead;
    out += op == kSeal ? len + kBlockOverhead : len;
  }
  (op == kSeal ? seal_blocks : open_blocks) += count;
  (op == kSeal ? seal_bytes : open_bytes) += op == kSeal ? in_bytes : out_bytes;
  *reply_len = out_bytes;
  return kOk;
}

void Service::Serve(Conn* c) {
  const int fd = c->fd;
  struct timeval tv = {kFirstRecordMs / 1000, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  uint8_t token[kTokenBytes];
  RecordCipher in, out;
  std::unique_ptr<Pending> p;
  if (ReadFull(fd, token, kTokenBytes) == 0) {
    std::lock_guard<std::mutex> lk(tokens_mu_);
    auto it = tokens_.find(std::string(reinterpret_cast<char*>(token), kTokenBytes));
    if (it != tokens_.end() && it->second->expires > NowMs()) p = std::move(it->second);
    if (it != tokens_.end()) tokens_.erase(it);  // one connection per token: its keys' nonces start once
  }
  bool counted = true;  // among the unauthenticated connections
  auto authenticated = [&] {
    if (counted) unauthenticated_--, counted = false;
  };
  if (p == nullptr || !in.Init(p->keys, false) || !out.Init(p->keys + kDirKeyBytes, true)) {
    authenticated();
    refused_token++;
    shutdown(fd, SHUT_RDWR);  // closed by the acceptor when it reaps the connection
    c->done = true;
    return;
  }
  {
    std::lock_guard<std::mutex> lk(conns_mu_);
    c->host = p->host;
  }
  const std::string host = p->host;
  p.reset();
  connections++;
  std::vector<uint8_t> rbuf, wbuf;
  bool first = true;
  for (;;) {
    uint8_t head[kRecordHeadBytes];
    if (ReadFull(fd, head, kRecordHeadBytes) != 0) break;
    const uint32_t len = Get32(head);
    if (len < kRecordTagBytes + kRequestHeadBytes || len > kMaxRecordBytes) {  // too short or oversized: fatal
      refused_record++;
      break;
    }
    if (rbuf.size() < len) rbuf.resize(len);
    if (ReadFull(fd, rbuf.data(), len) != 0) {  // truncated
      refused_record++;
      break;
    }
    const size_t n = len - kRecordTagBytes;
    if (!in.Open(head, rbuf.data(), n)) {  // forged, replayed, reordered or under other keys
      refused_record++;
      break;
    }
    if (first) {  // authenticated: from now on the connection may idle
      authenticated();
      struct timeval none = {0, 0};
      setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &none, sizeof(none));
      first = false;
    }
    requests++;
    const size_t room = kRecordHeadBytes + kReplyHeadBytes + kMaxDataPerRequest + 64 * 1024 + kRecordTagBytes;
    if (wbuf.size() < room) wbuf.resize(room);
    uint8_t* body = wbuf.data() + kRecordHeadBytes;
    memcpy(body, rbuf.data(), 8);  // op, 0, count, id echoed
    size_t data_len = 0;
    uint16_t index = 0;
    const uint64_t t0 = regs::MonoNs();
    body[1] = Handle(host, rbuf.data(), n, body + kReplyHeadBytes, &data_len, &index);
    regs::CryptoBusyAdd(regs::MonoNs() - t0);  // the crypto engine's load register counts this thread's work too
    OPENSSL_cleanse(rbuf.data(), n);
    Put32(body + 8, load_bits_.load());
    Put16(body + 12, weight_.load());
    Put16(body + 14, index);
    Put64(body + 16, pv_.load());
    const size_t body_len = kReplyHeadBytes + data_len;
    if (!out.Seal(wbuf.data(), body, body_len)) {
      OPENSSL_cleanse(body, body_len);  // still plaintext (once sealed it is ciphertext: nothing to wipe)
      break;
    }
    if (WriteFull(fd, wbuf.data(), kRecordHeadBytes + body_len + kRecordTagBytes) != 0) break;
  }
  authenticated();
  shutdown(fd, SHUT_RDWR);
  c->done = true;
}

Service g_service;

bool BytesArg(const Napi::Value& v, size_t n, const uint8_t** out) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) return false;
  Napi::Uint8Array u = v.As<Napi::Uint8Array>();
  if (u.ByteLength() != n) return false;
  *out = u.Data();
  return true;
}

// blockServiceStart(host, port) -> the port listened on.
Napi::Value StartJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString() || !info[1].IsNumber()) {
    ThrowEngineError(env, kErrBadArgument, "blockServiceStart(host, port)");
    return env.Undefined();
  }
  std::string why;
  int port = g_service.Start(info[0].As<Napi::String>().Utf8Value(), info[1].As<Napi::Number>().Int32Value(), &why);
  if (port < 0) {
    ThrowEngineError(env, kErrBadArgument, "block service: " + why);
    return env.Undefined();
  }
  return Napi::Number::New(env, port);
}

Napi::Value StopJs(const Napi::CallbackInfo& info) {
  g_service.Stop();
  return info.Env().Undefined();
}

// blockServiceToken(token(16), host, keys(64), lifeMs)
Napi::Value TokenJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const uint8_t *token, *keys;
  if (!BytesArg(info[0], kTokenBytes, &token) || !info[1].IsString() || !BytesArg(info[2], kChannelKeyBytes, &keys) ||
      !info[3].IsNumber()) {
    ThrowEngineError(env, kErrBadArgument, "blockServiceToken(token16, host, keys64, lifeMs)");
    return env.Undefined();
  }
  double life = info[3].As<Napi::Number>().DoubleValue();
  g_service.AddToken(token, info[1].As<Napi::String>().Utf8Value(), keys,
                     life > 0 && life < kTokenLifeMs ? static_cast<int64_t>(life) : kTokenLifeMs);
  return env.Undefined();
}

// blockServiceGrant(handle(16), host, fileId(16), keyVersion, cipher, key (engine Key), seal, ttlMs)
Napi::Value GrantJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const uint8_t *handle, *file_id;
  if (!BytesArg(info[0], kGrantBytes, &handle) || !info[1].IsString() || !BytesArg(info[2], 16, &file_id) ||
      !info[3].IsNumber() || !info[4].IsNumber() || !info[6].IsBoolean() || !info[7].IsNumber()) {
    ThrowEngineError(env, kErrBadArgument, "blockServiceGrant(handle16, host, fileId16, version, cipher, key, seal, ttlMs)");
    return env.Undefined();
  }
  engine::Key* key = engine::Key::From(env, info[5]);
  if (key == nullptr) return env.Undefined();
  auto g = std::make_unique<Grant>();
  g->host = info[1].As<Napi::String>().Utf8Value();
  memcpy(g->file_id, file_id, 16);
  g->key_version = info[3].As<Napi::Number>().Uint32Value();
  g->cipher = static_cast<uint8_t>(info[4].As<Napi::Number>().Uint32Value());
  memcpy(g->key, key->bytes(), 32);
  g->seal = info[6].As<Napi::Boolean>().Value();
  g->expires = NowMs() + static_cast<int64_t>(info[7].As<Napi::Number>().DoubleValue());
  g_service.AddGrant(handle, std::move(g));
  return env.Undefined();
}

Napi::Value DropHostJs(const Napi::CallbackInfo& info) {
  if (info[0].IsString()) g_service.DropHost(info[0].As<Napi::String>().Utf8Value());
  return info.Env().Undefined();
}

// blockServiceLoad(load 0..1, weight, pv): rides in every reply from now on.
Napi::Value LoadJs(const Napi::CallbackInfo& info) {
  if (info[0].IsNumber() && info[1].IsNumber() && info[2].IsNumber()) {
    g_service.SetLoad(info[0].As<Napi::Number>().FloatValue(), static_cast<uint16_t>(info[1].As<Napi::Number>().Uint32Value()),
                      static_cast<uint64_t>(info[2].As<Napi::Number>().DoubleValue()));
  }
  return info.Env().Undefined();
}

Napi::Value StatsJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  auto set = [&](const char* k, uint64_t v) { o.Set(k, Napi::Number::New(env, static_cast<double>(v))); };
  o.Set("running", Napi::Boolean::New(env, g_service.running()));
  set("port", static_cast<uint64_t>(g_service.port()));
  set("connections", g_service.connections);
  set("refusedToken", g_service.refused_token);
  set("refusedRecord", g_service.refused_record);
  set("requests", g_service.requests);
  set("sealBlocks", g_service.seal_blocks);
  set("openBlocks", g_service.open_blocks);
  set("sealBytes", g_service.seal_bytes);
  set("openBytes", g_service.open_bytes);
  set("grantRefusals", g_service.grant_refusals);
  set("aadRefusals", g_service.aad_refusals);
  set("authFailures", g_service.auth_failures);
  set("badRequests", g_service.bad_requests);
  set("refusedBusy", g_service.refused_busy);
  return o;
}

}  // namespace

void InitService(Napi::Env env, Napi::Object exports) {
  exports.Set("blockServiceStart", Napi::Function::New(env, StartJs));
  exports.Set("blockServiceStop", Napi::Function::New(env, StopJs));
  exports.Set("blockServiceToken", Napi::Function::New(env, TokenJs));
  exports.Set("blockServiceGrant", Napi::Function::New(env, GrantJs));
  exports.Set("blockServiceDropHost", Napi::Function::New(env, DropHostJs));
  exports.Set("blockServiceLoad", Napi::Function::New(env, LoadJs));
  exports.Set("blockServiceStats", Napi::Function::New(env, StatsJs));
}

}  // namespace pem::blockch
