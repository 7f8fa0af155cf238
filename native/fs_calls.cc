// File-system calls Node has no API for, on a backing path: mknod and the l*xattr family. Each is one syscall made on
// the caller's thread and answers 0 / a byte count, or -errno (no exception): the FUSE layer hands errnos on as they
// are. The l* forms never follow a symlink in the last component (an xattr of a link is the link's own).
#include <napi.h>

#include <errno.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/xattr.h>

#include <string>

#include "errors.h"
#include "fs_calls.h"

namespace pem::fscalls {

namespace {

Napi::Value Result(Napi::Env env, long r) { return Napi::Number::New(env, r < 0 ? -errno : r); }

bool Strings(const Napi::CallbackInfo& info, size_t n, const char* usage) {
  for (size_t i = 0; i < n; i++) {
    if (info.Length() <= i || !info[i].IsString()) {
      ThrowEngineError(info.Env(), kErrBadArgument, usage);
      return false;
    }
  }
  return true;
}

// An optional output buffer (null or undefined: ask for the size only).
bool OutBuffer(const Napi::CallbackInfo& info, size_t i, void** data, size_t* len) {
  *data = nullptr;
  *len = 0;
  if (info.Length() <= i || info[i].IsNull() || info[i].IsUndefined()) return true;
  if (!info[i].IsTypedArray()) return false;
  Napi::Uint8Array b = info[i].As<Napi::Uint8Array>();
  *data = b.Data();
  *len = b.ByteLength();
  return true;
}

// mknod(path, mode, dev): mode carries the file type (S_IFIFO, S_IFSOCK, S_IFCHR, S_IFBLK, S_IFREG).
Napi::Value Mknod(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Strings(info, 1, "mknod(path, mode, dev)")) return env.Undefined();
  if (info.Length() < 3 || !info[1].IsNumber() || !info[2].IsNumber()) {
    ThrowEngineError(env, kErrBadArgument, "mknod(path, mode, dev)");
    return env.Undefined();
  }
  const std::string path = info[0].As<Napi::String>().Utf8Value();
  const mode_t mode = static_cast<mode_t>(info[1].As<Napi::Number>().Uint32Value());
  const dev_t dev = static_cast<dev_t>(info[2].As<Napi::Number>().Int64Value());
  return Result(env, ::mknod(path.c_str(), mode, dev));
}

// getxattr(path, name, out | null): the value's length (written into out when given), or -errno.
Napi::Value GetXattr(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  void* out;
  size_t len;
  if (!Strings(info, 2, "getxattr(path, name, out)")) return env.Undefined();
  if (!OutBuffer(info, 2, &out, &len)) {
    ThrowEngineError(env, kErrBadArgument, "getxattr: out must be a Uint8Array or null");
    return env.Undefined();
  }
  const std::string path = info[0].As<Napi::String>().Utf8Value();
  const std::string name = info[1].As<Napi::String>().Utf8Value();
  return Result(env, ::lgetxattr(path.c_str(), name.c_str(), out, len));
}

// setxattr(path, name, value, flags): 0 or -errno (flags: XATTR_CREATE / XATTR_REPLACE).
Napi::Value SetXattr(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Strings(info, 2, "setxattr(path, name, value, flags)")) return env.Undefined();
  if (info.Length() < 4 || !info[2].IsTypedArray() || !info[3].IsNumber()) {
    ThrowEngineError(env, kErrBadArgument, "setxattr(path, name, value, flags)");
    return env.Undefined();
  }
  const std::string path = info[0].As<Napi::String>().Utf8Value();
  const std::string name = info[1].As<Napi::String>().Utf8Value();
  Napi::Uint8Array value = info[2].As<Napi::Uint8Array>();
  const int flags = info[3].As<Napi::Number>().Int32Value();
  return Result(env, ::lsetxattr(path.c_str(), name.c_str(), value.Data(), value.ByteLength(), flags));
}

// listxattr(path, out | null): bytes of the NUL-separated name list (written into out when given), or -errno.
Napi::Value ListXattr(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  void* out;
  size_t len;
  if (!Strings(info, 1, "listxattr(path, out)")) return env.Undefined();
  if (!OutBuffer(info, 1, &out, &len)) {
    ThrowEngineError(env, kErrBadArgument, "listxattr: out must be a Uint8Array or null");
    return env.Undefined();
  }
  const std::string path = info[0].As<Napi::String>().Utf8Value();
  return Result(env, ::llistxattr(path.c_str(), static_cast<char*>(out), len));
}

// removexattr(path, name): 0 or -errno.
Napi::Value RemoveXattr(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Strings(info, 2, "removexattr(path, name)")) return env.Undefined();
  const std::string path = info[0].As<Napi::String>().Utf8Value();
  const std::string name = info[1].As<Napi::String>().Utf8Value();
  return Result(env, ::lremovexattr(path.c_str(), name.c_str()));
}

}  // namespace

void Init(Napi::Env env, Napi::Object exports) {
  exports.Set("mknod", Napi::Function::New(env, Mknod, "mknod"));
  exports.Set("getxattr", Napi::Function::New(env, GetXattr, "getxattr"));
  exports.Set("setxattr", Napi::Function::New(env, SetXattr, "setxattr"));
  exports.Set("listxattr", Napi::Function::New(env, ListXattr, "listxattr"));
  exports.Set("removexattr", Napi::Function::New(env, RemoveXattr, "removexattr"));
}

}  // namespace pem::fscalls
