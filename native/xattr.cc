// Extended attributes (and POSIX ACLs, which are system.posix_acl_* attributes) of a path, for `pemfs encrypt`
// carrying them from a file to its converted copy: xattrList(path), xattrGet(path, name), xattrSet(path, name, value).
// The l* calls: a final symlink is not followed. Synchronous (the converter's own files, never the mount's daemon).
// A failure throws an Error with `code` (the errno name) and `syscall`.
#include <napi.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>
#include <sys/xattr.h>

#include "xattr.h"

namespace pem::xattr {

static Napi::Value Fail(Napi::Env env, const char* syscall, int err) {
  Napi::Error e = Napi::Error::New(env, std::string(syscall) + ": " + std::strerror(err));
  e.Set("code", Napi::String::New(env, err == ENODATA ? "ENODATA" : err == ENOTSUP ? "ENOTSUP" : err == EPERM ? "EPERM" : err == EACCES ? "EACCES" : err == ENOENT ? "ENOENT" : "EIO"));
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("syscall", Napi::String::New(env, syscall));
  e.ThrowAsJavaScriptException();
  return env.Undefined();
}

static bool PathArg(const Napi::CallbackInfo& info, size_t n, const char* usage) {
  for (size_t i = 0; i < n; i++) {
    if (info.Length() <= i || !(i < 2 ? info[i].IsString() : info[i].IsBuffer())) {
      Napi::TypeError::New(info.Env(), usage).ThrowAsJavaScriptException();
      return false;
    }
  }
  return true;
}

static Napi::Value List(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!PathArg(info, 1, "xattrList(path)")) return env.Undefined();
  const std::string p = info[0].As<Napi::String>();
  for (;;) { // the list may grow between the two calls: ask again
    ssize_t n = llistxattr(p.c_str(), nullptr, 0);
    if (n < 0) return Fail(env, "llistxattr", errno);
    std::vector<char> buf(static_cast<size_t>(n) + 1);
    ssize_t got = llistxattr(p.c_str(), buf.data(), buf.size());
    if (got < 0 && errno == ERANGE) continue;
    if (got < 0) return Fail(env, "llistxattr", errno);
    Napi::Array out = Napi::Array::New(env);
    uint32_t i = 0;
    for (ssize_t at = 0; at < got;) {
      std::string name(buf.data() + at);
      at += static_cast<ssize_t>(name.size()) + 1;
      if (!name.empty()) out.Set(i++, Napi::String::New(env, name));
    }
    return out;
  }
}

static Napi::Value Get(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!PathArg(info, 2, "xattrGet(path, name)")) return env.Undefined();
  const std::string p = info[0].As<Napi::String>();
  const std::string name = info[1].As<Napi::String>();
  for (;;) {
    ssize_t n = lgetxattr(p.c_str(), name.c_str(), nullptr, 0);
    if (n < 0) return Fail(env, "lgetxattr", errno);
    Napi::Buffer<uint8_t> out = Napi::Buffer<uint8_t>::New(env, static_cast<size_t>(n));
    ssize_t got = lgetxattr(p.c_str(), name.c_str(), out.Data(), out.Length());
    if (got < 0 && errno == ERANGE) continue;
    if (got < 0) return Fail(env, "lgetxattr", errno);
    return Napi::Buffer<uint8_t>::Copy(env, out.Data(), static_cast<size_t>(got));
  }
}

static Napi::Value Set(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!PathArg(info, 3, "xattrSet(path, name, value: Buffer)")) return env.Undefined();
  const std::string p = info[0].As<Napi::String>();
  const std::string name = info[1].As<Napi::String>();
  Napi::Buffer<uint8_t> value = info[2].As<Napi::Buffer<uint8_t>>();
  if (lsetxattr(p.c_str(), name.c_str(), value.Data(), value.Length(), 0) != 0) return Fail(env, "lsetxattr", errno);
  return env.Undefined();
}

void Init(Napi::Env env, Napi::Object exports) {
  exports.Set("xattrList", Napi::Function::New(env, List, "xattrList"));
  exports.Set("xattrGet", Napi::Function::New(env, Get, "xattrGet"));
  exports.Set("xattrSet", Napi::Function::New(env, Set, "xattrSet"));
}

}  // namespace pem::xattr
