// Format v1 (crypt_format.h): every rule here mirrors lib/wire/file-format.ts and cites lib/wire/FORMAT.md §4.
#include "crypt_format.h"

#include <errno.h>
#include <unistd.h>
#include <zlib.h>

#include <cstring>

namespace pem::fuse {

namespace {

constexpr size_t kFixedBytes = 39;  // up to and including the key-name length byte (§4.1)
constexpr size_t kCrcBytes = 4;
constexpr size_t kPageBytes = 4096;
constexpr uint32_t kMinBlock = 4096, kMaxBlock = 1u << 20;
const uint8_t kMagic[4] = {'P', 'E', 'M', 'F'};
const uint8_t kRedoMagic[8] = {'P', 'E', 'M', 'F', 'r', 'e', 'd', 'o'};
constexpr size_t kRedoFooterBytes = 24;  // u64 target | u32 entry bytes | u32 CRC-32 | magic
constexpr size_t kRedoEntryBytes = 12;   // u64 file offset | u32 length

uint32_t Be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}
uint64_t Be64(const uint8_t* p) { return (uint64_t{Be32(p)} << 32) | Be32(p + 4); }
void Put32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
}
void Put64(uint8_t* p, uint64_t v) {
  Put32(p, static_cast<uint32_t>(v >> 32));
  Put32(p + 4, static_cast<uint32_t>(v));
}
uint32_t Crc(const uint8_t* p, size_t n) {
  return static_cast<uint32_t>(crc32(crc32(0L, Z_NULL, 0), p, static_cast<uInt>(n)));
}

bool PreadAll(int fd, uint8_t* buf, size_t n, uint64_t at) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = pread(fd, buf + got, n - got, static_cast<off_t>(at + got));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    got += static_cast<size_t>(r);
  }
  return true;
}

}  // namespace

bool HasFileMagic(const uint8_t* b, size_t n) { return n >= 4 && memcmp(b, kMagic, 4) == 0; }

bool DecodeHeader(const uint8_t* b, size_t n, FileHeader* h, std::string* why) {
  if (n < kFixedBytes + 1 + kCrcBytes) return *why = "shorter than any header", false;
  if (!HasFileMagic(b, n)) return *why = "not an encrypted file (bad magic)", false;
  h->version = static_cast<uint16_t>((b[4] << 8) | b[5]);
  if (h->version != 1) return *why = "format version " + std::to_string(h->version) + " is not supported", false;
  h->header_bytes = static_cast<uint16_t>((b[6] << 8) | b[7]);
  const size_t hb = h->header_bytes;
  if (hb > n || hb < kFixedBytes + 1 + kCrcBytes || hb > kHeaderMaxBytes) return *why = "header size is out of range", false;
  if (Crc(b, hb - kCrcBytes) != Be32(b + hb - kCrcBytes)) return *why = "header checksum mismatch", false;
  memcpy(h->file_id, b + 8, kFileIdBytes);
  h->key_version = Be32(b + 24);
  h->cipher = b[28];
  h->compression = b[29];
  h->block_bytes = Be32(b + 30);
  h->slot_bytes = Be32(b + 34);
  const size_t name = b[38];
  if (h->cipher != kCipherAesGcm && h->cipher != kCipherChaCha) return *why = "unknown cipher", false;
  if (h->compression > 3) return *why = "unknown compression", false;
  if (name < 1 || kFixedBytes + name > hb - kCrcBytes) return *why = "key name overruns the header", false;
  for (size_t i = kFixedBytes + name; i < hb - kCrcBytes; i++) {
    if (b[i] != 0) return *why = "header padding is not zero", false;
  }
  const uint32_t B = h->block_bytes;
  if (h->key_version < 1) return *why = "key version must be >= 1", false;
  if (B < kMinBlock || B > kMaxBlock || (B & (B - 1)) != 0) return *why = "block size is not a power of two in [4 KiB, 1 MiB]", false;
  if (h->slot_bytes < B + kRecordOverhead || h->slot_bytes > B + kRecordOverhead + kPageBytes) {
    return *why = "slot size does not fit the block size", false;
  }
  return true;
}

// §4.2: d = size − H, n = ⌈d / S⌉, tail = d − (n − 1) × S; size = (n − 1) × B + (tail = S ? B : tail − 40).
uint64_t PlainSize(const FileHeader& h, uint64_t file_size) {
  if (file_size <= h.header_bytes) return 0;
  const uint64_t d = file_size - h.header_bytes, S = h.slot_bytes, B = h.block_bytes;
  const uint64_t n = (d + S - 1) / S;
  const uint64_t tail = d - (n - 1) * S;
  uint64_t last = tail == S ? B : (tail > kRecordOverhead ? tail - kRecordOverhead : 0);
  if (last > B) last = B;
  return (n - 1) * B + last;
}

uint64_t CipherSize(const FileHeader& h, uint64_t plain) {
  if (plain == 0) return h.header_bytes;
  const uint64_t B = h.block_bytes;
  const uint64_t n = (plain + B - 1) / B;
  const uint64_t last = plain - (n - 1) * B;
  return h.header_bytes + (n - 1) * h.slot_bytes + (last == B ? h.slot_bytes : last + kRecordOverhead);
}

// §4.3: magic | version | file id | cipher | compression | block bytes | block number | key version | plain length.
void WriteAad(const FileHeader& h, uint64_t block, uint32_t plain_len, uint8_t* out) {
  memcpy(out, kMagic, 4);
  out[4] = static_cast<uint8_t>(h.version >> 8);
  out[5] = static_cast<uint8_t>(h.version);
  memcpy(out + 6, h.file_id, kFileIdBytes);
  out[22] = h.cipher;
  out[23] = h.compression;
  Put32(out + 24, h.block_bytes);
  Put64(out + 28, block);
  Put32(out + 36, h.key_version);
  Put32(out + 40, plain_len);
}

void WriteTrailer(const FileHeader& h, uint8_t* rec, uint32_t payload_len, uint32_t plain_len) {
  uint8_t* t = rec + kNonceBytes + payload_len + kTagBytes;
  Put32(t, static_cast<uint32_t>(kNonceBytes + payload_len + kTagBytes));
  Put32(t + 4, plain_len);
  Put32(t + 8, h.key_version);
}

int ParseSlot(const FileHeader& h, uint64_t block, const uint8_t* slot, size_t n, const uint8_t** record,
              size_t* record_len, uint32_t* plain_len, std::string* why) {
  const std::string at = "block " + std::to_string(block) + ": ";
  *record = nullptr;
  if (n > h.slot_bytes) return *why = at + "longer than a slot", EIO;
  const bool full = n == h.slot_bytes;
  if (n < kRecordOverhead) return *why = at + "the file ends inside it", EIO;
  const uint8_t* t = slot + n - kTrailerBytes;
  const uint32_t sealed = Be32(t), plain = Be32(t + 4), version = Be32(t + 8);
  if (full && sealed == 0 && plain == 0 && version == 0) {
    for (size_t i = 0; i < n; i++) {
      if (slot[i] != 0) return *why = at + "slot has data but no trailer", EIO;
    }
    return 0;  // a hole
  }
  const uint64_t len = uint64_t{sealed} + kTrailerBytes;
  if (!full && (len != n || sealed < kNonceBytes + kTagBytes || sealed - kNonceBytes - kTagBytes != plain ||
                plain >= h.block_bytes)) {
    return *why = at + "the file ends inside it", EIO;  // PEM_ERR_TRUNCATED
  }
  if (len > n || len < kRecordOverhead) return *why = at + "record does not fit its slot", EIO;
  const uint64_t payload = sealed - kNonceBytes - kTagBytes;
  if (plain > h.block_bytes || payload > plain || (plain < h.block_bytes && payload != plain)) {
    return *why = at + "record trailer is inconsistent", EIO;
  }
  if (version != h.key_version) return *why = at + "sealed under another key version than the header's", EIO;
  *record = slot + n - len;
  *record_len = static_cast<size_t>(len);
  *plain_len = plain;
  return 0;
}

std::vector<uint8_t> EncodeRedo(const Redo& r) {
  size_t entries = 0;
  for (const auto& w : r.writes) entries += kRedoEntryBytes + w.second.size();
  std::vector<uint8_t> b(entries + kRedoFooterBytes);
  size_t at = 0;
  for (const auto& w : r.writes) {
    Put64(&b[at], w.first);
    Put32(&b[at + 8], static_cast<uint32_t>(w.second.size()));
    memcpy(&b[at + kRedoEntryBytes], w.second.data(), w.second.size());
    at += kRedoEntryBytes + w.second.size();
  }
  Put64(&b[at], r.target);
  Put32(&b[at + 8], static_cast<uint32_t>(entries));
  Put32(&b[at + 12], Crc(b.data(), at + 12));
  memcpy(&b[at + 16], kRedoMagic, sizeof(kRedoMagic));
  return b;
}

bool EndsInRedo(int fd, uint64_t size) {
  uint8_t tail[sizeof(kRedoMagic)];
  return size >= sizeof(tail) && PreadAll(fd, tail, sizeof(tail), size - sizeof(tail)) &&
         memcmp(tail, kRedoMagic, sizeof(tail)) == 0;
}

// readRedo of crypt-file.ts: a damaged record, or one that does not fit the file, is not taken for one.
bool ReadRedo(int fd, const FileHeader& h, uint64_t size, Redo* out) {
  if (size < h.header_bytes + kRedoFooterBytes) return false;
  uint8_t foot[kRedoFooterBytes];
  if (!PreadAll(fd, foot, sizeof(foot), size - sizeof(foot)) || memcmp(foot + 16, kRedoMagic, 8) != 0) return false;
  const uint64_t target = Be64(foot);
  const uint64_t entries = Be32(foot + 8);
  if (entries + kRedoFooterBytes > size) return false;
  const uint64_t start = size - kRedoFooterBytes - entries;
  if (target < h.header_bytes || start < target || entries > 2 * (kRedoEntryBytes + h.slot_bytes)) return false;
  std::vector<uint8_t> b(entries + 12);
  if (!PreadAll(fd, b.data(), b.size(), start) || Crc(b.data(), b.size()) != Be32(foot + 12)) return false;
  out->target = target;
  out->writes.clear();
  for (size_t at = 0; at < entries;) {
    if (at + kRedoEntryBytes > entries) return false;
    const uint64_t to = Be64(&b[at]);
    const uint64_t len = Be32(&b[at + 8]);
    at += kRedoEntryBytes;
    if (at + len > entries || to < h.header_bytes || to + len > target) return false;
    out->writes.emplace_back(to, std::vector<uint8_t>(b.begin() + at, b.begin() + at + len));
    at += len;
  }
  return true;
}

}  // namespace pem::fuse
