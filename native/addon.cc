// Addon entry: NODE_API_MODULE + Init only; registers the load registers, the crypto engine, the memory helpers,
// the native FUSE session (native/fuse/), spd's native block service (block_service.cc) and the xattr calls.
#include <napi.h>

#include "block_channel.h"
#include "crypto_engine.h"
#include "fuse/js.h"
#include "load_regs.h"
#include "memory.h"
#include "xattr.h"

static Napi::Object InitAll(Napi::Env env, Napi::Object exports) {
  pem::regs::Init(env, exports);
  pem::engine::Init(env, exports);
  pem::memory::Init(env, exports);
  pem::fuse::Init(env, exports);
  pem::blockch::InitService(env, exports);
  pem::blockch::InitBench(env, exports);
  pem::xattr::Init(env, exports);
  return exports;
}

NODE_API_MODULE(pem_native, InitAll)
