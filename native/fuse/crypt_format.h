// Encrypted file format v1 for the native data plane: the C++ twin of lib/wire/file-format.ts (header decode, slot
// placement, plainSize/cipherSize, slot parsing, AAD) and of the truncation redo record of lib/pem-fs/crypt-file.ts.
// The layout is lib/wire/FORMAT.md §4 (header §4.1, slots and records §4.2, AAD §4.3, redo record §4.8).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace pem::fuse {

constexpr size_t kFileIdBytes = 16;
constexpr size_t kNonceBytes = 12;
constexpr size_t kTagBytes = 16;
constexpr size_t kTrailerBytes = 12;  // u32 sealed length | u32 plaintext length | u32 key version
constexpr size_t kRecordOverhead = kNonceBytes + kTagBytes + kTrailerBytes;
constexpr size_t kAadBytes = 44;
constexpr size_t kHeaderMaxBytes = 4096;
constexpr uint8_t kCipherAesGcm = 1, kCipherChaCha = 2;  // header byte 28
constexpr uint8_t kCompressionNone = 0;                  // header byte 29 (1 zstd, 2 lz4, 3 zlib)

struct FileHeader {
  uint16_t version = 0;
  uint16_t header_bytes = 0;  // H: slot 0 starts here
  uint8_t file_id[kFileIdBytes] = {};
  uint32_t key_version = 0;
  uint8_t cipher = 0;
  uint8_t compression = 0;
  uint32_t block_bytes = 0;  // B
  uint32_t slot_bytes = 0;   // S
};

// decodeHeader of `n` bytes (the file's first bytes; more than the header is fine). False with *why on any damage.
bool DecodeHeader(const uint8_t* b, size_t n, FileHeader* h, std::string* why);
// True when the first 4 bytes are "PEMF" (an encrypted file; anything else non-empty is plaintext from before).
bool HasFileMagic(const uint8_t* b, size_t n);

uint64_t PlainSize(const FileHeader& h, uint64_t file_size);
uint64_t CipherSize(const FileHeader& h, uint64_t plain);
inline uint64_t SlotOffset(const FileHeader& h, uint64_t block) { return h.header_bytes + block * h.slot_bytes; }

// The AAD of one block (kAadBytes into out).
void WriteAad(const FileHeader& h, uint64_t block, uint32_t plain_len, uint8_t* out);

// parseSlot + checkRecord: the record in the bytes read from block's slot (slot_bytes of them, or fewer for the file's
// last). 0 with *record/*record_len/*plain_len set (a hole: *record == nullptr), else EIO with *why.
int ParseSlot(const FileHeader& h, uint64_t block, const uint8_t* slot, size_t n, const uint8_t** record,
              size_t* record_len, uint32_t* plain_len, std::string* why);
// Fills the trailer of a record whose payload (compressed or raw) is `payload_len` bytes, at its end.
void WriteTrailer(const FileHeader& h, uint8_t* rec, uint32_t payload_len, uint32_t plain_len);

// The redo record of a truncation (FORMAT.md §4.8): records to write in place, then the cut to `target`.
struct Redo {
  uint64_t target = 0;
  std::vector<std::pair<uint64_t, std::vector<uint8_t>>> writes;
};
std::vector<uint8_t> EncodeRedo(const Redo& r);
// The whole, well-formed redo record at the end of the file open on fd (`size` bytes), or false.
bool ReadRedo(int fd, const FileHeader& h, uint64_t size, Redo* out);
// True when the file's last bytes are "PEMFredo" (whole or not: leave it to the loader).
bool EndsInRedo(int fd, uint64_t size);

}  // namespace pem::fuse
