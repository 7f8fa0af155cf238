// Process memory: trimHeap() hands the C heap's free pages back to the kernel (glibc malloc_trim). The data path
// frees large buffers in bursts (TLS records, frames, batches); glibc keeps freed memory mapped until the top of the
// heap is free, so a long-lived daemon's RSS would ratchet up to its busiest moment. tuneHeap(arenas, mmapBytes)
// caps glibc's arenas and fixes its mmap threshold (mallopt), for the daemons (lib/native/memory.ts says why).
// Elsewhere both do nothing.
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

// tuneHeap(arenas, mmapBytes): true when glibc took both settings.
static Napi::Value TuneHeap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber()) {
    Napi::TypeError::New(env, "tuneHeap(arenas, mmapBytes)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
#if defined(__GLIBC__)
  const int arenas = info[0].As<Napi::Number>().Int32Value();
  const int mmap_bytes = info[1].As<Napi::Number>().Int32Value();
  return Napi::Boolean::New(env, mallopt(M_ARENA_MAX, arenas) == 1 && mallopt(M_MMAP_THRESHOLD, mmap_bytes) == 1);
#else
  return Napi::Boolean::New(env, false);
#endif
}

void Init(Napi::Env env, Napi::Object exports) {
  exports.Set("trimHeap", Napi::Function::New(env, TrimHeap, "trimHeap"));
  exports.Set("tuneHeap", Napi::Function::New(env, TuneHeap, "tuneHeap"));
}

}  // namespace pem::memory
