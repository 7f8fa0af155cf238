// Crypto engine: OpenSSL 3 EVP AEAD batches (AES-256-GCM, ChaCha20-Poly1305) with provider selection, key handles
// with HKDF-SHA256 file keys (crypto_keys.cc), and per-block compression (compress.cc). JS: lib/native/crypto-engine.ts
//
// Sealed block layout (integers none; lengths come from the caller's Uint32Array):
//   12 bytes nonce (fresh from RAND_bytes per block) | L bytes ciphertext | 16 bytes tag     = L + 28 bytes
// A batch is blocks back to back. AAD is aadLen bytes per block, block i's AAD at aad[i*aadLen].
#pragma once

#include <napi.h>
#include <openssl/evp.h>
#include <openssl/provider.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "cpu_features.h"

namespace pem::engine {

constexpr size_t kNonceLen = 12;
constexpr size_t kTagLen = 16;
constexpr size_t kKeyLen = 32;
constexpr size_t kOverhead = kNonceLen + kTagLen;
constexpr size_t kFileIdLen = 16;
constexpr uint32_t kMaxBlock = 1u << 30;  // EVP takes int lengths; 1 GiB per block is plenty
constexpr const char* kHkdfInfoFileKey = "pem/v1 file key";

// Per-env state: the constructors of the wrapped classes.
struct State {
  Napi::FunctionReference key_ctor;
  Napi::FunctionReference engine_ctor;
};

// A 32-byte key in native memory, wiped when freed or destroyed. JS never sees the bytes.
class Key : public Napi::ObjectWrap<Key> {
 public:
  static Napi::Function Define(Napi::Env env);
  // New Key object holding a copy of `bytes` (kKeyLen), or nullptr after throwing.
  static Napi::Object Make(Napi::Env env, const uint8_t* bytes);
  // The Key behind a JS value, or nullptr after throwing ENGINE_ERR_BAD_ARGUMENT.
  static Key* From(Napi::Env env, const Napi::Value& v);
  explicit Key(const Napi::CallbackInfo& info);
  ~Key() override;
  const uint8_t* bytes() const { return bytes_; }
  bool live() const { return live_; }

 private:
  Napi::Value Destroy(const Napi::CallbackInfo& info);
  Napi::Value IsLive(const Napi::CallbackInfo& info);
  uint8_t bytes_[kKeyLen];
  bool live_ = false;
};

// An AEAD engine bound to one OpenSSL library context, provider and cipher.
class Engine : public Napi::ObjectWrap<Engine> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit Engine(const Napi::CallbackInfo& info);
  ~Engine() override;
  const EVP_CIPHER* cipher() const { return cipher_; }

 private:
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value Seal(const Napi::CallbackInfo& info) { return Batch(info, true, false); }
  Napi::Value SealAsync(const Napi::CallbackInfo& info) { return Batch(info, true, true); }
  Napi::Value Open(const Napi::CallbackInfo& info) { return Batch(info, false, false); }
  Napi::Value OpenAsync(const Napi::CallbackInfo& info) { return Batch(info, false, true); }
  Napi::Value Batch(const Napi::CallbackInfo& info, bool seal, bool async);

  OSSL_LIB_CTX* libctx_ = nullptr;
  OSSL_PROVIDER* provider_ = nullptr;
  OSSL_PROVIDER* fallback_ = nullptr;  // 'default', only when strict is false
  EVP_CIPHER* cipher_ = nullptr;
  std::string requested_, actual_, cipher_name_, path_;
  CpuFeatures cpu_;
};

// crypto_keys.cc: createKey(bytes), generateKey(), deriveFileKey(key, fileId, version).
void InitKeys(Napi::Env env, Napi::Object exports, State* state);
// compress.cc: compress/compressAsync/decompress/decompressAsync.
void InitCompress(Napi::Env env, Napi::Object exports);
// compress.cc, one block on the calling thread (host placement, native/fuse/crypt_node.cc); codec is the file
// header's compression byte (1 zstd, 2 lz4, 3 zlib). CompressBlock: the compressed size, 0 when it did not fit in
// cap (= did not shrink: store it raw) or failed. DecompressBlock: the bytes produced, -1 for garbage or more than room.
size_t CompressBlock(uint8_t codec, const uint8_t* in, size_t len, uint8_t* out, size_t cap);
int64_t DecompressBlock(uint8_t codec, const uint8_t* in, size_t len, uint8_t* out, size_t room);
// crypto_engine.cc: createEngine(provider, cipher, strict), sizes, and the two calls above.
void Init(Napi::Env env, Napi::Object exports);

}  // namespace pem::engine
