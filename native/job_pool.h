// Engine thread pool: CryptoThreads() threads per env fed from one queue, settling jobs on the JS thread.
// Why not libuv's pool (Napi::AsyncWorker): there every batch pays a pool-thread wake-up and its own JS wake-up, and
// libuv's 4 threads oversubscribe a 2-core machine. Here a pool thread that finds queued work takes it without
// sleeping, the JS thread signals only when a pool thread is idle, and finished jobs go back through one uv_async
// handle whose wake-ups coalesce; while queued work keeps the threads busy, the JS thread is woken once per
// CryptoThreads() finished jobs (no lock is held across a syscall; docs/ENGINE.md "What an async batch costs").
#pragma once

#include <napi.h>
#include <uv.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

namespace pem::engine {

// A unit of pool work. Execute runs on a pool thread (no Napi there); Settle on the JS thread afterwards.
class PoolTask {
 public:
  virtual ~PoolTask() = default;  // runs on the JS thread (it may hold Napi references)
  virtual void Execute() = 0;
  virtual void Settle(Napi::Env env) = 0;
  // Env teardown: the task is freed without settling; it must not touch Napi then (references die with the env).
  virtual void Forget() = 0;
};

class JobPool {
 public:
  JobPool(Napi::Env env, int threads);
  ~JobPool();
  JobPool(const JobPool&) = delete;
  JobPool& operator=(const JobPool&) = delete;

  // JS thread: takes ownership; Settle and the delete follow on the JS thread once Execute is done.
  void Submit(PoolTask* task);

 private:
  struct DoneHandle;  // the uv_async handle; outlives the pool until libuv has closed it
  static void OnDone(uv_async_t* async);
  static void OnTeardown(napi_async_cleanup_hook_handle hook, void* pool);
  void Work();
  void SettleDone();
  void Shutdown();  // JS thread: stops and joins the threads, frees what never settled
  // Stops and joins the threads (a running job finishes first). Shutdown calls it; so does exit(): process.exit()
  // runs no env teardown, and a job still running while atexit frees OpenSSL's state crashed (4 exits in 200; none in 300 since).
  void StopThreads();
  static void StopAllAtExit();

  Napi::Env env_;
  Napi::AsyncContext async_context_;
  DoneHandle* done_handle_ = nullptr;
  std::mutex mu_;
  std::condition_variable wake_;
  std::deque<PoolTask*> queue_;   // submitted, not started; guarded by mu_
  std::vector<PoolTask*> done_;   // executed, not settled; guarded by mu_
  std::vector<std::thread> workers_;
  const size_t thread_count_;      // workers_.size() from the start; read by the pool threads
  int idle_ = 0;                   // pool threads waiting on wake_; guarded by mu_
  bool stopping_ = false;          // guarded by mu_
  size_t in_flight_ = 0;           // JS thread only: submitted, not yet settled
  bool shut_down_ = false;         // JS thread only
};

// The env's pool, created with its threads on first use.
JobPool* GetJobPool(Napi::Env env);

}  // namespace pem::engine
