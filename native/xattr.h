// Extended attributes of a path, without following a final symlink (native/xattr.cc).
#pragma once
#include <napi.h>

namespace pem::xattr {
void Init(Napi::Env env, Napi::Object exports);
}
