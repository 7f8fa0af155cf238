// Batch plumbing of the engine: a Job runs synchronously on the JS thread or on the engine pool (job_pool.h) and
// settles a Promise; argument views shared by the AEAD and codec batches.
#pragma once

#include <napi.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "errors.h"
#include "job_pool.h"
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

// A batch on the engine's pool: the Job runs on a pool thread; the Promise settles on the JS thread. The JS buffers
// the job points into are pinned with references until it is done (sodium-native style).
template <typename Job>
class BatchTask : public PoolTask {
 public:
  BatchTask(Napi::Env env, std::unique_ptr<Job> job, const std::vector<Napi::Object>& pins) : job_(std::move(job)) {
    napi_create_promise(env, &deferred_, &promise_);
    pins_.reserve(pins.size());
    for (const Napi::Object& o : pins) pins_.push_back(Napi::Persistent(o));
  }
  Napi::Value Promise(Napi::Env env) { return Napi::Value(env, promise_); }
  void Execute() override { RunTimed(job_.get()); }
  // Plain N-API with statuses ignored: while a worker thread is being terminated, settling fails (JS may not run
  // any more) and node-addon-api would turn that failure into a fatal error.
  void Settle(Napi::Env env) override {
    napi_handle_scope scope;
    if (napi_open_handle_scope(env, &scope) != napi_ok) return;
    const JobResult& r = job_->result;
    napi_value v = nullptr;
    if (r.code == nullptr) {
      napi_create_double(env, r.value, &v);
      napi_resolve_deferred(env, deferred_, v);
    } else {
      napi_value code = nullptr, msg = nullptr, index = nullptr;
      napi_create_string_utf8(env, r.code, NAPI_AUTO_LENGTH, &code);
      napi_create_string_utf8(env, r.msg.empty() ? "batch failed" : r.msg.c_str(), NAPI_AUTO_LENGTH, &msg);
      if (napi_create_error(env, code, msg, &v) == napi_ok && r.index >= 0 &&
          napi_create_double(env, static_cast<double>(r.index), &index) == napi_ok) {
        napi_set_named_property(env, v, "index", index);
      }
      napi_reject_deferred(env, deferred_, v);
    }
    napi_close_handle_scope(env, scope);
  }
  void Forget() override {
    for (Napi::ObjectReference& r : pins_) r.SuppressDestruct();
  }

 private:
  napi_deferred deferred_ = nullptr;
  napi_value promise_ = nullptr;  // valid in the creating call's handle scope only
  std::unique_ptr<Job> job_;
  std::vector<Napi::ObjectReference> pins_;
};

// Queues the job on the env's pool; returns its Promise.
template <typename Job>
Napi::Value RunAsync(Napi::Env env, std::unique_ptr<Job> job, const std::vector<Napi::Object>& pins) {
  auto* task = new BatchTask<Job>(env, std::move(job), pins);
  Napi::Value p = task->Promise(env);
  GetJobPool(env)->Submit(task);
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
