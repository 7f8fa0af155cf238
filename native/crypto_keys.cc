// Key handles: 32-byte keys kept in native memory (wiped on destroy/free) and HKDF-SHA256 per-file key derivation.
// copyKeyInto(handle, out) writes a handle's 32 bytes into a caller's buffer: spd uses it to seal a per-file key to a
// host (lib/server/keys.ts), with `out` a sodium_malloc buffer it wipes right after sealing.
//
// deriveFileKey(named key K, file id F (16 bytes), key version V):
//   HKDF-SHA256(ikm = K, salt = none (32 zero bytes), info = "pem/v1 file key" (15) | F (16) | V u32 big endian (4))
//   -> 32 bytes. info is 35 bytes.
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>

#include <cstring>

#include "batch_worker.h"
#include "crypto_engine.h"
#include "env_state.h"
#include "errors.h"

namespace pem::engine {

Napi::Function Key::Define(Napi::Env env) {
  return DefineClass(env, "KeyHandle",
                     {InstanceMethod<&Key::Destroy>("destroy"), InstanceAccessor<&Key::IsLive>("live")});
}

// Constructed only from C++ (Make) with an External holding the bytes; from JS `new` it throws.
Key::Key(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Key>(info) {
  if (info.Length() != 1 || !info[0].IsExternal()) {
    ThrowEngineError(info.Env(), kErrBadArgument, "key handles come from createKey/generateKey/deriveFileKey");
    return;
  }
  memcpy(bytes_, info[0].As<Napi::External<uint8_t>>().Data(), kKeyLen);
  live_ = true;
}

Key::~Key() { OPENSSL_cleanse(bytes_, kKeyLen); }

Napi::Object Key::Make(Napi::Env env, const uint8_t* bytes) {
  State& s = GetEnvState(env)->engine;
  Napi::External<uint8_t> ext = Napi::External<uint8_t>::New(env, const_cast<uint8_t*>(bytes));
  Napi::Object obj = s.key_ctor.New({ext});
  if (env.IsExceptionPending()) return Napi::Object();
  return obj;
}

Key* Key::From(Napi::Env env, const Napi::Value& v) {
  State& s = GetEnvState(env)->engine;
  if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(s.key_ctor.Value())) {
    ThrowEngineError(env, kErrBadArgument, "expected a key handle");
    return nullptr;
  }
  Key* k = Key::Unwrap(v.As<Napi::Object>());
  if (k == nullptr || !k->live_) {
    ThrowEngineError(env, kErrBadArgument, "the key handle was destroyed");
    return nullptr;
  }
  return k;
}

Napi::Value Key::Destroy(const Napi::CallbackInfo& info) {
  OPENSSL_cleanse(bytes_, kKeyLen);
  live_ = false;
  return info.Env().Undefined();
}

Napi::Value Key::IsLive(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), live_); }

namespace {

Napi::Value CreateKey(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint8_t* data;
  size_t len;
  if (info.Length() < 1 || !BytesArg(info[0], &data, &len)) {
    ThrowEngineError(env, kErrBadArgument, "createKey(bytes): bytes must be a Uint8Array");
    return env.Undefined();
  }
  if (len != kKeyLen) {
    ThrowEngineError(env, kErrBadLength, "createKey(bytes): a key is 32 bytes");
    return env.Undefined();
  }
  Napi::Object k = Key::Make(env, data);
  return env.IsExceptionPending() ? env.Undefined() : Napi::Value(k);
}

Napi::Value GenerateKey(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint8_t tmp[kKeyLen];
  if (RAND_bytes(tmp, kKeyLen) != 1) {
    ThrowEngineError(env, kErrOpenSSL, OpenSSLErrorText("RAND_bytes failed"));
    return env.Undefined();
  }
  Napi::Object k = Key::Make(env, tmp);
  OPENSSL_cleanse(tmp, kKeyLen);
  return env.IsExceptionPending() ? env.Undefined() : Napi::Value(k);
}

bool Hkdf(const uint8_t* ikm, const uint8_t* info, size_t info_len, uint8_t* out) {
  EVP_KDF* kdf = EVP_KDF_fetch(nullptr, "HKDF", nullptr);
  if (kdf == nullptr) return false;
  EVP_KDF_CTX* kctx = EVP_KDF_CTX_new(kdf);
  EVP_KDF_free(kdf);
  if (kctx == nullptr) return false;
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, const_cast<uint8_t*>(ikm), kKeyLen),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, const_cast<uint8_t*>(info), info_len),
      OSSL_PARAM_construct_end()};
  bool ok = EVP_KDF_derive(kctx, out, kKeyLen, params) == 1;
  EVP_KDF_CTX_free(kctx);
  return ok;
}

Napi::Value DeriveFileKey(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3) {
    ThrowEngineError(env, kErrBadArgument, "deriveFileKey(key, fileId, version)");
    return env.Undefined();
  }
  Key* key = Key::From(env, info[0]);
  if (key == nullptr) return env.Undefined();
  uint8_t* fid;
  size_t fid_len;
  if (!BytesArg(info[1], &fid, &fid_len)) {
    ThrowEngineError(env, kErrBadArgument, "deriveFileKey: fileId must be a Uint8Array");
    return env.Undefined();
  }
  if (fid_len != kFileIdLen) {
    ThrowEngineError(env, kErrBadLength, "deriveFileKey: a file id is 16 bytes");
    return env.Undefined();
  }
  double v = info[2].IsNumber() ? info[2].As<Napi::Number>().DoubleValue() : -1;
  if (!(v >= 0 && v <= 4294967295.0) || v != static_cast<double>(static_cast<uint32_t>(v))) {
    ThrowEngineError(env, kErrBadArgument, "deriveFileKey: version must be an integer in 0..2^32-1");
    return env.Undefined();
  }
  const size_t label = strlen(kHkdfInfoFileKey);
  uint8_t hinfo[64];
  memcpy(hinfo, kHkdfInfoFileKey, label);
  memcpy(hinfo + label, fid, kFileIdLen);
  uint32_t ver = static_cast<uint32_t>(v);
  uint8_t* p = hinfo + label + kFileIdLen;
  p[0] = ver >> 24;
  p[1] = ver >> 16;
  p[2] = ver >> 8;
  p[3] = ver;
  uint8_t out[kKeyLen];
  if (!Hkdf(key->bytes(), hinfo, label + kFileIdLen + 4, out)) {
    OPENSSL_cleanse(out, kKeyLen);
    ThrowEngineError(env, kErrOpenSSL, OpenSSLErrorText("HKDF-SHA256 failed"));
    return env.Undefined();
  }
  Napi::Object k = Key::Make(env, out);
  OPENSSL_cleanse(out, kKeyLen);
  return env.IsExceptionPending() ? env.Undefined() : Napi::Value(k);
}

Napi::Value CopyKeyInto(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2) {
    ThrowEngineError(env, kErrBadArgument, "copyKeyInto(key, out)");
    return env.Undefined();
  }
  Key* key = Key::From(env, info[0]);
  if (key == nullptr) return env.Undefined();
  uint8_t* out;
  size_t out_len;
  if (!BytesArg(info[1], &out, &out_len)) {
    ThrowEngineError(env, kErrBadArgument, "copyKeyInto: out must be a Uint8Array");
    return env.Undefined();
  }
  if (out_len != kKeyLen) {
    ThrowEngineError(env, kErrBadLength, "copyKeyInto: out must be 32 bytes");
    return env.Undefined();
  }
  memcpy(out, key->bytes(), kKeyLen);
  return env.Undefined();
}

}  // namespace

void InitKeys(Napi::Env env, Napi::Object exports, State* state) {
  state->key_ctor = Napi::Persistent(Key::Define(env));
  exports.Set("createKey", Napi::Function::New(env, CreateKey, "createKey"));
  exports.Set("generateKey", Napi::Function::New(env, GenerateKey, "generateKey"));
  exports.Set("deriveFileKey", Napi::Function::New(env, DeriveFileKey, "deriveFileKey"));
  exports.Set("copyKeyInto", Napi::Function::New(env, CopyKeyInto, "copyKeyInto"));
  exports.Set("HKDF_INFO_FILE_KEY", Napi::String::New(env, kHkdfInfoFileKey));
}

}  // namespace pem::engine
