// File-system calls Node lacks (native/fs_calls.cc): mknod and the l*xattr family, answering -errno on failure.
#pragma once
#include <napi.h>

namespace pem::fscalls {
void Init(Napi::Env env, Napi::Object exports);
}
