// AEAD engine: batches of blocks sealed/opened with one EVP_CIPHER_CTX per thread; provider selection; module Init.
#include "crypto_engine.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <cctype>
#include <cstring>
#include <memory>
#include <vector>

#include "batch_worker.h"
#include "env_state.h"
#include "errors.h"

namespace pem::engine {

namespace {

// One cipher context per thread, reused across batches and blocks (reset after each batch: no key stays behind).
// thread_local is per-thread scratch, not shared state: every engine pool thread and the JS thread get their own.
struct ThreadCipherCtx {
  EVP_CIPHER_CTX* ctx = nullptr;
  ~ThreadCipherCtx() { EVP_CIPHER_CTX_free(ctx); }
  EVP_CIPHER_CTX* Get() {
    if (ctx == nullptr) ctx = EVP_CIPHER_CTX_new();
    return ctx;
  }
};
thread_local ThreadCipherCtx t_cipher;

constexpr size_t kNonceChunk = 64;  // nonces drawn per RAND_bytes call (on the stack)

struct AeadJob {
  const EVP_CIPHER* cipher = nullptr;
  uint8_t key[kKeyLen];
  bool seal = true;
  bool in_place = false;
  const uint8_t* in = nullptr;
  size_t in_len = 0;
  uint8_t* out = nullptr;
  size_t out_len = 0;
  const uint32_t* lens = nullptr;
  size_t n = 0;
  const uint8_t* aad = nullptr;
  size_t aad_len = 0;  // per block
  JobResult result;

  ~AeadJob() { OPENSSL_cleanse(key, kKeyLen); }
  void Run();

 private:
  bool SealBlock(EVP_CIPHER_CTX* c, size_t i, const uint8_t* nonce, size_t* in_off, size_t* out_off);
  bool OpenBlock(EVP_CIPHER_CTX* c, size_t i, size_t* in_off, size_t* out_off);
};

void AeadJob::Run() {
  EVP_CIPHER_CTX* c = t_cipher.Get();
  if (c == nullptr || EVP_CipherInit_ex2(c, cipher, key, nullptr, seal ? 1 : 0, nullptr) != 1) {
    result.Fail(kErrOpenSSL, OpenSSLErrorText("cipher init failed"));
    EVP_CIPHER_CTX_reset(c);
    return;
  }
  uint8_t nonces[kNonceChunk * kNonceLen];
  size_t in_off = 0, out_off = 0;
  for (size_t i = 0; i < n; i++) {
    bool ok;
    if (seal) {
      size_t k = i % kNonceChunk;
      if (k == 0 && RAND_bytes(nonces, sizeof(nonces)) != 1) {
        result.Fail(kErrOpenSSL, OpenSSLErrorText("RAND_bytes failed"), static_cast<int64_t>(i));
        break;
      }
      ok = SealBlock(c, i, nonces + k * kNonceLen, &in_off, &out_off);
    } else {
      ok = OpenBlock(c, i, &in_off, &out_off);
    }
    if (!ok) break;
  }
  OPENSSL_cleanse(nonces, sizeof(nonces));
  EVP_CIPHER_CTX_reset(c);
  if (result.code == nullptr) result.value = static_cast<double>(out_off);
}

// Lengths were checked on the JS thread; they are checked again here because the caller could change them while
// an async batch runs. in_place: the plaintext already sits at its ciphertext position (out == in).
bool AeadJob::SealBlock(EVP_CIPHER_CTX* c, size_t i, const uint8_t* nonce, size_t* in_off, size_t* out_off) {
  const size_t len = lens[i];
  const size_t src = in_place ? *out_off + kNonceLen : *in_off;
  if (len > kMaxBlock || *out_off + len + kOverhead > out_len || src + len > in_len) {
    result.Fail(kErrBadLength, "block lengths do not fit the buffers", static_cast<int64_t>(i));
    return false;
  }
  uint8_t* o = out + *out_off;
  const uint8_t* aad_i = aad + i * aad_len;
  int outl = 0;
  bool ok = EVP_CipherInit_ex2(c, nullptr, nullptr, nonce, 1, nullptr) == 1 &&
            (aad_len == 0 || EVP_EncryptUpdate(c, nullptr, &outl, aad_i, static_cast<int>(aad_len)) == 1) &&
            (len == 0 || EVP_EncryptUpdate(c, o + kNonceLen, &outl, in + src, static_cast<int>(len)) == 1) &&
            EVP_EncryptFinal_ex(c, o + kNonceLen + len, &outl) == 1 &&
            EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, kTagLen, o + kNonceLen + len) == 1;
  if (!ok) {
    result.Fail(kErrOpenSSL, OpenSSLErrorText("seal failed"), static_cast<int64_t>(i));
    return false;
  }
  memcpy(o, nonce, kNonceLen);  // after the ciphertext: in place, the nonce slot may not be read any more
  *in_off += len;
  *out_off += len + kOverhead;
  return true;
}

bool AeadJob::OpenBlock(EVP_CIPHER_CTX* c, size_t i, size_t* in_off, size_t* out_off) {
  const size_t sealed = lens[i];
  if (sealed < kOverhead || sealed - kOverhead > kMaxBlock || *in_off + sealed > in_len) {
    result.Fail(kErrBadLength, "a sealed block is shorter than 28 bytes or lengths do not fit the input",
                static_cast<int64_t>(i));
    return false;
  }
  const size_t len = sealed - kOverhead;
  const uint8_t* b = in + *in_off;
  uint8_t* dst = in_place ? out + *in_off + kNonceLen : out + *out_off;
  if (!in_place && *out_off + len > out_len) {
    result.Fail(kErrBadLength, "output too small", static_cast<int64_t>(i));
    return false;
  }
  uint8_t tag[kTagLen];
  memcpy(tag, b + kNonceLen + len, kTagLen);
  const uint8_t* aad_i = aad + i * aad_len;
  int outl = 0;
  bool ok = EVP_CipherInit_ex2(c, nullptr, nullptr, b, 0, nullptr) == 1 &&
            (aad_len == 0 || EVP_DecryptUpdate(c, nullptr, &outl, aad_i, static_cast<int>(aad_len)) == 1) &&
            (len == 0 || EVP_DecryptUpdate(c, dst, &outl, b + kNonceLen, static_cast<int>(len)) == 1) &&
            EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, kTagLen, tag) == 1;
  if (ok && EVP_DecryptFinal_ex(c, dst + len, &outl) != 1) {
    ERR_clear_error();
    if (len > 0) OPENSSL_cleanse(dst, len);  // never hand out unauthenticated plaintext
    result.Fail(kErrAuth, "block " + std::to_string(i) + " failed authentication", static_cast<int64_t>(i));
    return false;
  }
  if (!ok) {
    if (len > 0) OPENSSL_cleanse(dst, len);
    result.Fail(kErrOpenSSL, OpenSSLErrorText("open failed"), static_cast<int64_t>(i));
    return false;
  }
  *in_off += sealed;
  *out_off += len;  // plaintext bytes written (in place they sit at each block's ciphertext position)
  return true;
}

bool ValidProviderName(const std::string& s) {
  if (s.empty() || s.size() > 64) return false;
  for (char ch : s) {
    if (!isalnum(static_cast<unsigned char>(ch)) && ch != '_' && ch != '-' && ch != '.') return false;
  }
  return s != "." && s != "..";
}

}  // namespace

// ---- Engine: an OpenSSL library context with the requested provider and the cipher fetched from it ----

Napi::Function Engine::Define(Napi::Env env) {
  return DefineClass(env, "CryptoEngine",
                     {InstanceMethod<&Engine::Info>("info"), InstanceMethod<&Engine::Seal>("seal"),
                      InstanceMethod<&Engine::SealAsync>("sealAsync"), InstanceMethod<&Engine::Open>("open"),
                      InstanceMethod<&Engine::OpenAsync>("openAsync")});
}

// new CryptoEngine(provider: string, cipher: 'aes-256-gcm' | 'chacha20-poly1305', strict: boolean)
// strict (the default in lib/native): the cipher must come from the named provider. Not strict: the named
// provider is preferred and 'default' is loaded beside it; info() says which one serves the cipher.
Engine::Engine(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Engine>(info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsString() || !info[1].IsString() || !info[2].IsBoolean()) {
    ThrowEngineError(env, kErrBadArgument, "CryptoEngine(provider, cipher, strict)");
    return;
  }
  requested_ = info[0].As<Napi::String>().Utf8Value();
  cipher_name_ = info[1].As<Napi::String>().Utf8Value();
  const bool strict = info[2].As<Napi::Boolean>().Value();
  const char* evp_name = cipher_name_ == "aes-256-gcm"         ? "AES-256-GCM"
                         : cipher_name_ == "chacha20-poly1305" ? "ChaCha20-Poly1305"
                                                               : nullptr;
  if (evp_name == nullptr) {
    ThrowEngineError(env, kErrBadArgument, "unknown cipher '" + cipher_name_ + "'");
    return;
  }
  if (!ValidProviderName(requested_)) {  // a name with '/' would make OpenSSL dlopen a path
    ThrowEngineError(env, kErrBadArgument, "'" + requested_ + "' is not a provider name");
    return;
  }
  libctx_ = OSSL_LIB_CTX_new();  // our own context: loading a provider here never changes node:crypto
  if (libctx_ == nullptr) {
    ThrowEngineError(env, kErrOpenSSL, OpenSSLErrorText("OSSL_LIB_CTX_new failed"));
    return;
  }
  provider_ = OSSL_PROVIDER_load(libctx_, requested_.c_str());
  if (provider_ == nullptr) {
    ThrowEngineError(env, kErrProvider,
                     OpenSSLErrorText(("OpenSSL provider '" + requested_ + "' could not be loaded").c_str()));
    return;
  }
  if (!strict && requested_ != "default") {
    fallback_ = OSSL_PROVIDER_load(libctx_, "default");
    if (fallback_ == nullptr) {
      ThrowEngineError(env, kErrProvider, OpenSSLErrorText("OpenSSL provider 'default' could not be loaded"));
      return;
    }
  }
  const std::string props = (strict ? "provider=" : "?provider=") + requested_;
  cipher_ = EVP_CIPHER_fetch(libctx_, evp_name, props.c_str());
  if (cipher_ == nullptr) {
    ThrowEngineError(env, kErrProvider,
                     OpenSSLErrorText(("provider '" + requested_ + "' loaded but offers no " + evp_name +
                                       (strict ? " (strict; pass strict: false to let 'default' serve it)" : ""))
                                          .c_str()));
    return;
  }
  ERR_clear_error();
  const OSSL_PROVIDER* serving = EVP_CIPHER_get0_provider(cipher_);
  actual_ = serving != nullptr ? OSSL_PROVIDER_get0_name(serving) : requested_;
  cpu_ = DetectCpu();
  const bool builtin = actual_ == "default" || actual_ == "fips" || actual_ == "base";
  path_ = actual_ + "/" + (builtin ? CodePath(cpu_, cipher_name_ != "aes-256-gcm") : "provider");
}

Engine::~Engine() {
  EVP_CIPHER_free(cipher_);
  if (fallback_ != nullptr) OSSL_PROVIDER_unload(fallback_);
  if (provider_ != nullptr) OSSL_PROVIDER_unload(provider_);
  OSSL_LIB_CTX_free(libctx_);
}

Napi::Value Engine::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("provider", actual_);
  o.Set("requested", requested_);
  o.Set("cipher", cipher_name_);
  o.Set("path", path_);
  o.Set("threads", regs::CryptoThreads());
  Napi::Object cpu = Napi::Object::New(env);
  cpu.Set("aes", cpu_.aes);
  cpu.Set("pclmul", cpu_.pclmul);
  cpu.Set("ssse3", cpu_.ssse3);
  cpu.Set("avx", cpu_.avx);
  cpu.Set("avx2", cpu_.avx2);
  cpu.Set("avx512f", cpu_.avx512f);
  cpu.Set("vaes", cpu_.vaes);
  cpu.Set("vpclmulqdq", cpu_.vpclmulqdq);
  cpu.Set("ia32cap", cpu_.mask);
  o.Set("cpu", cpu);
  return o;
}

// seal(key, input, lens, aad, aadLen, out) / open(...) and their Async forms.
// out === input (same memory, same length) means in place: the buffer has the sealed layout and the plaintext of
// block i sits at its ciphertext position. Otherwise input and out must not overlap.
Napi::Value Engine::Batch(const Napi::CallbackInfo& info, bool seal, bool async) {
  Napi::Env env = info.Env();
  auto job = std::make_unique<AeadJob>();
  uint8_t *in, *out, *aad;
  uint32_t* lens;
  size_t in_len, out_len, n, aad_total;
  Key* key = info.Length() >= 6 ? Key::From(env, info[0]) : nullptr;
  if (key == nullptr) {
    if (!env.IsExceptionPending()) ThrowEngineError(env, kErrBadArgument, "(key, input, lens, aad, aadLen, out)");
    return env.Undefined();
  }
  if (!BytesArg(info[1], &in, &in_len) || !U32Arg(info[2], &lens, &n) || !BytesArg(info[3], &aad, &aad_total) ||
      !info[4].IsNumber() || !BytesArg(info[5], &out, &out_len)) {
    ThrowEngineError(env, kErrBadArgument,
                     "expected (key, input: Uint8Array, lens: Uint32Array, aad: Uint8Array, aadLen: number, "
                     "out: Uint8Array)");
    return env.Undefined();
  }
  const double aad_len = info[4].As<Napi::Number>().DoubleValue();
  if (!(aad_len >= 0 && aad_len <= 65536) || aad_len != static_cast<double>(static_cast<size_t>(aad_len)) ||
      aad_total != n * static_cast<size_t>(aad_len)) {
    ThrowEngineError(env, kErrBadLength, "aad must hold exactly lens.length * aadLen bytes (aadLen <= 65536)");
    return env.Undefined();
  }
  uint64_t sum = 0;
  for (size_t i = 0; i < n; i++) {
    if (seal ? lens[i] > kMaxBlock : (lens[i] < kOverhead || lens[i] - kOverhead > kMaxBlock)) {
      ThrowEngineError(env, kErrBadLength,
                       seal ? "a block is longer than 1 GiB" : "a sealed block is shorter than 28 bytes or too long");
      return env.Undefined();
    }
    sum += lens[i];
  }
  const uint64_t overhead = static_cast<uint64_t>(n) * kOverhead;
  const bool in_place = in == out && in_len == out_len && in_len > 0;
  bool fits;
  if (in_place) {
    fits = in_len == (seal ? sum + overhead : sum);
  } else if (Overlaps(in, in_len, out, out_len)) {
    ThrowEngineError(env, kErrBadArgument, "input and out overlap; pass the same buffer as both for in place");
    return env.Undefined();
  } else {
    fits = in_len == sum && out_len >= (seal ? sum + overhead : sum - overhead);
  }
  if (!fits) {
    ThrowEngineError(env, kErrBadLength,
                     in_place ? "in place, the buffer must hold exactly the sealed blocks"
                              : "input must hold exactly sum(lens) bytes and out the result");
    return env.Undefined();
  }
  job->cipher = cipher_;
  memcpy(job->key, key->bytes(), kKeyLen);
  job->seal = seal;
  job->in_place = in_place;
  job->in = in;
  job->in_len = in_len;
  job->out = out;
  job->out_len = out_len;
  job->lens = lens;
  job->n = n;
  job->aad = aad;
  job->aad_len = static_cast<size_t>(aad_len);
  if (!async) return RunSync(env, job.get());
  return RunAsync(env, std::move(job),
                  {info.This().As<Napi::Object>(), info[1].As<Napi::Object>(), info[2].As<Napi::Object>(),
                   info[3].As<Napi::Object>(), info[5].As<Napi::Object>()});
}

Napi::Value CreateEngine(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  State& s = GetEnvState(env)->engine;
  std::vector<napi_value> args;
  for (size_t i = 0; i < info.Length(); i++) args.push_back(info[i]);
  Napi::Object e = s.engine_ctor.New(args);
  return env.IsExceptionPending() ? env.Undefined() : Napi::Value(e);
}

void Init(Napi::Env env, Napi::Object exports) {
  State& s = GetEnvState(env)->engine;
  s.engine_ctor = Napi::Persistent(Engine::Define(env));
  exports.Set("createEngine", Napi::Function::New(env, CreateEngine, "createEngine"));
  exports.Set("NONCE_BYTES", Napi::Number::New(env, kNonceLen));
  exports.Set("TAG_BYTES", Napi::Number::New(env, kTagLen));
  exports.Set("KEY_BYTES", Napi::Number::New(env, kKeyLen));
  exports.Set("OVERHEAD_BYTES", Napi::Number::New(env, kOverhead));
  exports.Set("FILE_ID_BYTES", Napi::Number::New(env, kFileIdLen));
  exports.Set("MAX_BLOCK_BYTES", Napi::Number::New(env, kMaxBlock));
  exports.Set("CRYPTO_THREADS", Napi::Number::New(env, regs::CryptoThreads()));
  InitKeys(env, exports, &s);
  InitCompress(env, exports);
}

}  // namespace pem::engine
