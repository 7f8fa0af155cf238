// Process memory helpers (native/memory.cc).
#pragma once
#include <napi.h>

namespace pem::memory {
void Init(Napi::Env env, Napi::Object exports);
}
