// Addon entry: NODE_API_MODULE + Init only; registers the load registers and the crypto engine (like InitAll).
#include <napi.h>

#include "crypto_engine.h"
#include "load_regs.h"

static Napi::Object InitAll(Napi::Env env, Napi::Object exports) {
  pem::regs::Init(env, exports);
  pem::engine::Init(env, exports);
  return exports;
}

NODE_API_MODULE(pem_native, InitAll)
