// Registers the native FUSE session's functions and constants on the addon's exports (native/addon.cc).
#pragma once

#include <napi.h>

namespace pem::fuse {

void Init(Napi::Env env, Napi::Object exports);

}  // namespace pem::fuse
