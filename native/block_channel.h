// The block channel's record layer and message layout (docs/CHANNEL.md §8), shared by spd's native block service
// (block_service.cc) and pemfs's native client (fuse/block_client.cc). Raw TCP carrying AES-256-GCM records keyed
// from the control channel's TLS 1.3 exporter (RFC 8446 §7.5): no handshake here, only records.
//   connection: client sends the 16-byte token in clear, then records both ways
//   record:     u32 BE n (ciphertext + 16-byte tag) | ciphertext | tag; nonce = 4 zero bytes | u64 BE record
//               number of that direction (from 0); AAD = the 4 length bytes. A record that fails is fatal.
#pragma once

#include <napi.h>
#include <openssl/evp.h>

#include <cstddef>
#include <cstdint>

namespace pem::blockch {

constexpr size_t kTokenBytes = 16;
constexpr size_t kGrantBytes = 16;
constexpr size_t kDirKeyBytes = 32;
constexpr size_t kChannelKeyBytes = 2 * kDirKeyBytes;  // host->spd key | spd->host key
constexpr size_t kRecordTagBytes = 16;
constexpr size_t kRecordHeadBytes = 4;
constexpr uint32_t kMaxRecordBytes = (4u << 20) + (64u << 10);  // ciphertext + tag
constexpr size_t kAadBytes = 44;                                 // a block's AAD (FORMAT.md §4.3)
constexpr size_t kBlockOverhead = 12 + 16;                       // nonce | ct | tag
constexpr size_t kRequestHeadBytes = 24;  // op, 0, u16 count, u32 id, grant(16)
constexpr size_t kBlockMetaBytes = 48;    // u32 payload length, AAD(44)
constexpr size_t kReplyHeadBytes = 24;    // op, status, u16 count, u32 id, f32 load, u16 weight, u16 index, u64 pv
constexpr uint16_t kMaxBlocksPerRequest = 512;
constexpr size_t kMaxDataPerRequest = 3u << 20;  // the client splits larger batches
constexpr const char* kExporterLabel = "EXPORTER-pem-block-channel/1";

enum Op : uint8_t { kSeal = 1, kOpen = 2 };
// Reply status. ONLY APPEND (the numbers travel).
enum Status : uint8_t {
  kOk = 0,
  kGrantUnknown = 1,  // never installed, dropped, or spd restarted: decide again
  kGrantExpired = 2,
  kGrantHost = 3,     // the grant belongs to another host
  kGrantOps = 4,      // a read grant asked to seal
  kAadFile = 5,       // a block's AAD names another file, key version or cipher than the grant
  kBlockAuth = 6,     // a block failed authentication (index says which)
  kBadRequest = 7,    // counts or lengths do not add up
};

void Put16(uint8_t* p, uint16_t v);
void Put32(uint8_t* p, uint32_t v);
void Put64(uint8_t* p, uint64_t v);
uint16_t Get16(const uint8_t* p);
uint32_t Get32(const uint8_t* p);
uint64_t Get64(const uint8_t* p);

// One direction's record cipher (key schedule once; a nonce per record).
class RecordCipher {
 public:
  RecordCipher() = default;
  ~RecordCipher();
  RecordCipher(const RecordCipher&) = delete;
  RecordCipher& operator=(const RecordCipher&) = delete;
  bool Init(const uint8_t* key, bool encrypt);
  // Encrypt: the n plaintext bytes at body in place, head (4 bytes) filled with n + 16, tag written after body.
  // Decrypt: head/body/tag as read; false = forged, replayed, reordered or truncated (fatal).
  bool Seal(uint8_t* head, uint8_t* body, size_t n);
  bool Open(const uint8_t* head, uint8_t* body, size_t n);
  uint64_t records() const { return seq_; }

 private:
  bool Nonce();
  EVP_CIPHER_CTX* ctx_ = nullptr;
  bool enc_ = true;
  uint64_t seq_ = 0;
  uint8_t iv_[12] = {};
};

// Blocking socket helpers: 0 or errno (EPIPE for a peer gone, ECONNRESET for EOF in the middle).
int ReadFull(int fd, uint8_t* buf, size_t n);
int WriteFull(int fd, const uint8_t* buf, size_t n);

}  // namespace pem::blockch

namespace pem::blockch {
// block_service.cc: blockServiceStart/Stop/Token/Grant/DropHost/Load/Stats (spd's native block service).
void InitService(Napi::Env env, Napi::Object exports);
// block_bench.cc: blockBench (the native client against a block service), tcpEchoBench (its C floor).
void InitBench(Napi::Env env, Napi::Object exports);
}  // namespace pem::blockch
