// Process memory: trimHeap() hands the C heap's free pages back to the kernel (glibc malloc_trim). The data path
// frees large buffers in bursts (TLS records, frames, batches); glibc keeps freed memory mapped until the top of the
// heap is free, so a long-lived daemon's RSS would ratchet up to its busiest moment. Elsewhere it does nothing.
#include <napi.h>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "memory.h"

namespace pem::memory {

static Napi::Value TrimHeap(const Napi::CallbackInfo& info) {
#if defined(__GLIBC__)
  return Napi::Boolean::New(info.Env(), malloc_trim(0) != 0);
#else
  return Napi::Boolean::New(info.Env(), false);
#endif
}

void Init(Napi::Env env, Napi::Object exports) {
  exports.Set("trimHeap", Napi::Function::New(env, TrimHeap, "trimHeap"));
}

}  // namespace pem::memory
