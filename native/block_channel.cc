// The block channel's record layer (block_channel.h): AES-256-GCM with counter nonces per direction.
#include "block_channel.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

namespace pem::blockch {

void Put16(uint8_t* p, uint16_t v) { p[0] = v >> 8, p[1] = v & 0xff; }
void Put32(uint8_t* p, uint32_t v) {
  for (int i = 3; i >= 0; i--) p[i] = v & 0xff, v >>= 8;
}
void Put64(uint8_t* p, uint64_t v) {
  for (int i = 7; i >= 0; i--) p[i] = v & 0xff, v >>= 8;
}
uint16_t Get16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
uint32_t Get32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) << 24 | static_cast<uint32_t>(p[1]) << 16 | static_cast<uint32_t>(p[2]) << 8 | p[3];
}
uint64_t Get64(const uint8_t* p) { return static_cast<uint64_t>(Get32(p)) << 32 | Get32(p + 4); }

RecordCipher::~RecordCipher() { EVP_CIPHER_CTX_free(ctx_); }

bool RecordCipher::Init(const uint8_t* key, bool encrypt) {
  static EVP_CIPHER* aes = EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
  enc_ = encrypt;
  ctx_ = EVP_CIPHER_CTX_new();
  bool ok = aes != nullptr && ctx_ != nullptr && EVP_CipherInit_ex2(ctx_, aes, key, nullptr, encrypt ? 1 : 0, nullptr) == 1;
  ERR_clear_error();
  return ok;
}

bool RecordCipher::Nonce() {
  if (seq_ == UINT64_MAX) return false;  // never reuse a nonce
  memset(iv_, 0, 4);
  Put64(iv_ + 4, seq_++);
  return EVP_CipherInit_ex2(ctx_, nullptr, nullptr, iv_, enc_ ? 1 : 0, nullptr) == 1;
}

bool RecordCipher::Seal(uint8_t* head, uint8_t* body, size_t n) {
  Put32(head, static_cast<uint32_t>(n + kRecordTagBytes));
  int outl = 0;
  bool ok = ctx_ != nullptr && Nonce() && EVP_EncryptUpdate(ctx_, nullptr, &outl, head, kRecordHeadBytes) == 1 &&
            (n == 0 || EVP_EncryptUpdate(ctx_, body, &outl, body, static_cast<int>(n)) == 1) &&
            EVP_EncryptFinal_ex(ctx_, body + n, &outl) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx_, EVP_CTRL_AEAD_GET_TAG, kRecordTagBytes, body + n) == 1;
  ERR_clear_error();
  return ok;
}

bool RecordCipher::Open(const uint8_t* head, uint8_t* body, size_t n) {
  int outl = 0;
  uint8_t tag[kRecordTagBytes];
  memcpy(tag, body + n, kRecordTagBytes);
  bool ok = ctx_ != nullptr && Nonce() && EVP_DecryptUpdate(ctx_, nullptr, &outl, head, kRecordHeadBytes) == 1 &&
            (n == 0 || EVP_DecryptUpdate(ctx_, body, &outl, body, static_cast<int>(n)) == 1) &&
            EVP_CIPHER_CTX_ctrl(ctx_, EVP_CTRL_AEAD_SET_TAG, kRecordTagBytes, tag) == 1 &&
            EVP_DecryptFinal_ex(ctx_, body + n, &outl) == 1;
  if (!ok) OPENSSL_cleanse(body, n);
  ERR_clear_error();
  return ok;
}

int ReadFull(int fd, uint8_t* buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = recv(fd, buf + got, n - got, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return errno;
    if (r == 0) return got == 0 ? EPIPE : ECONNRESET;
    got += static_cast<size_t>(r);
  }
  return 0;
}

int WriteFull(int fd, const uint8_t* buf, size_t n) {
  size_t done = 0;
  while (done < n) {
    ssize_t r = send(fd, buf + done, n - done, MSG_NOSIGNAL);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return errno;
    done += static_cast<size_t>(r);
  }
  return 0;
}

}  // namespace pem::blockch
