// Native error style: EngineError(env, code, msg) with a string `code` from lib/wire/errors.ts, OpenSSL queue -> text.
// Every code string in native/*.{cc,h} also exists in lib/wire/errors.ts (test/native/codes.test.ts checks).
// One style everywhere (NAPI_DISABLE_CPP_EXCEPTIONS): ThrowEngineError(...) then `return env.Undefined()`.
#pragma once

#include <napi.h>
#include <openssl/err.h>

#include <string>

namespace pem {

constexpr const char* kErrOpenSSL = "ENGINE_ERR_OPENSSL";
constexpr const char* kErrBadLength = "ENGINE_ERR_BAD_LENGTH";
constexpr const char* kErrAuth = "ENGINE_ERR_AUTH";
constexpr const char* kErrProvider = "ENGINE_ERR_PROVIDER";
constexpr const char* kErrCompress = "ENGINE_ERR_COMPRESS";
constexpr const char* kErrBadArgument = "ENGINE_ERR_BAD_ARGUMENT";
constexpr const char* kErrLoadRegs = "ENGINE_ERR_LOAD_REGS";
constexpr const char* kErrFuse = "ENGINE_ERR_FUSE";

inline Napi::Error EngineError(Napi::Env env, const char* code, const std::string& msg) {
  Napi::Error err = Napi::Error::New(env, msg);
  err.Set("code", Napi::String::New(env, code));
  return err;
}

inline void ThrowEngineError(Napi::Env env, const char* code, const std::string& msg) {
  EngineError(env, code, msg).ThrowAsJavaScriptException();
}

// Drains this thread's OpenSSL error queue; returns the first (oldest) error as text, or `fallback` when empty.
// Safe on worker threads (no Napi).
inline std::string OpenSSLErrorText(const char* fallback) {
  unsigned long first = ERR_get_error();
  while (ERR_get_error() != 0) {
  }
  if (first == 0) return fallback;
  char buf[256];
  ERR_error_string_n(first, buf, sizeof(buf));
  return std::string(fallback) + ": " + buf;
}

}  // namespace pem
