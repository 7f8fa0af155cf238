// Off-thread batches: a Job runs in Napi::AsyncWorker::Execute (no Napi there) and settles a Promise.
// The JS buffers the job points into are pinned with references until the worker is done (sodium-native style).
#pragma once

#include <napi.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "errors.h"
#include "load_regs.h"

namespace pem::engine {

// What every batch job reports. Run() sets code/msg (and index for the block at fault) on failure.
struct JobResult {
  const char* code = nullptr;
  std::string msg;
  int64_t index = -1;  // first failing block, -1 when the failure is not about one block
  double value = 0;    // bytes written
  void Fail(const char* c, std::string m, int64_t i = -1) {
    code = c;
    msg = std::move(m);
    index = i;
  }
};

// Turns a failed job into the JS error: `code` always, `index` when a block is at fault.
inline Napi::Error JobError(Napi::Env env, const JobResult& r) {
  Napi::Error e = EngineError(env, r.code, r.msg);
  if (r.index >= 0) e.Set("index", Napi::Number::New(env, static_cast<double>(r.index)));
  return e;
}

// Runs job->Run() (which must be thread-safe and allocation-light) and counts its time as crypto busy time.
template <typename Job>
void RunTimed(Job* job) {
  uint64_t t0 = regs::MonoNs();
  job->Run();
  regs::CryptoBusyAdd(regs::MonoNs() - t0);
}

// Sync path: runs on the JS thread; throws on failure (caller then returns env.Undefined()).
template <typename Job>
Napi::Value RunSync(Napi::Env env, Job* job) {
  RunTimed(job);
  if (job->result.code != nullptr) {
    JobError(env, job->result).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Napi::Number::New(env, job->result.value);
}

template <typename Job>
class BatchWorker : public Napi::AsyncWorker {
 public:
  BatchWorker(Napi::Env env, std::unique_ptr<Job> job, const std::vector<Napi::Object>& pins)
      : Napi::AsyncWorker(env, "pem:batch"), deferred_(Napi::Promise::Deferred::New(env)), job_(std::move(job)) {
    pins_.reserve(pins.size());
    for (const Napi::Object& o : pins) pins_.push_back(Napi::Persistent(o));
  }
  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {  // worker thread: no Napi calls
    RunTimed(job_.get());
    if (job_->result.code != nullptr) SetError(job_->result.msg.empty() ? "batch failed" : job_->result.msg);
  }
  void OnOK() override { deferred_.Resolve(Napi::Number::New(Env(), job_->result.value)); }
  void OnError(const Napi::Error&) override { deferred_.Reject(JobError(Env(), job_->result).Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::unique_ptr<Job> job_;
  std::vector<Napi::ObjectReference> pins_;
};

// Queues the job; returns its Promise.
template <typename Job>
Napi::Value RunAsync(Napi::Env env, std::unique_ptr<Job> job, const std::vector<Napi::Object>& pins) {
  auto* w = new BatchWorker<Job>(env, std::move(job), pins);  // deletes itself after OnOK/OnError
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// Byte view of a Uint8Array/Buffer argument; false when it is not one.
inline bool BytesArg(const Napi::Value& v, uint8_t** data, size_t* len) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) return false;
  Napi::Uint8Array a = v.As<Napi::Uint8Array>();
  *data = a.Data();
  *len = a.ElementLength();
  return true;
}

inline bool U32Arg(const Napi::Value& v, uint32_t** data, size_t* len) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array) return false;
  Napi::Uint32Array a = v.As<Napi::Uint32Array>();
  *data = a.Data();
  *len = a.ElementLength();
  return true;
}

// True when [a, a+al) and [b, b+bl) share a byte.
inline bool Overlaps(const uint8_t* a, size_t al, const uint8_t* b, size_t bl) {
  if (al == 0 || bl == 0 || a == nullptr || b == nullptr) return false;
  auto x = reinterpret_cast<uintptr_t>(a), y = reinterpret_cast<uintptr_t>(b);
  return x < y + bl && y < x + al;
}

}  // namespace pem::engine
