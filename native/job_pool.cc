// Engine thread pool (see job_pool.h): queue, pool threads, settling on the JS thread, env teardown.
#include "job_pool.h"

#include <pthread.h>
#include <stdlib.h>

#include <set>

#include "env_state.h"
#include "load_regs.h"

namespace pem::engine {

struct JobPool::DoneHandle {
  uv_async_t async;
  napi_async_cleanup_hook_handle hook = nullptr;
};

namespace {

void FreeForgotten(PoolTask* task) {
  task->Forget();
  delete task;
}

// Every live pool (one per env), for the exit handler; the handler is registered with the first pool, after
// OpenSSL's own (node initialises OpenSSL first), so it runs before OpenSSL's cleanup.
std::mutex g_pools_mu;
std::set<JobPool*>* g_pools = new std::set<JobPool*>();  // never freed: exit handlers may run after static dtors
std::once_flag g_at_exit;

}  // namespace

JobPool::JobPool(Napi::Env env, int threads)
    : env_(env), async_context_(env, "pem:engine-pool"), thread_count_(threads > 0 ? static_cast<size_t>(threads) : 1) {
  uv_loop_t* loop = nullptr;
  napi_get_uv_event_loop(env, &loop);
  done_handle_ = new DoneHandle();
  uv_async_init(loop, &done_handle_->async, OnDone);
  done_handle_->async.data = this;
  uv_unref(reinterpret_cast<uv_handle_t*>(&done_handle_->async));  // only submitted work keeps the process alive
  napi_add_async_cleanup_hook(env, OnTeardown, this, &done_handle_->hook);
  workers_.reserve(thread_count_);
  for (size_t i = 0; i < thread_count_; i++) workers_.emplace_back([this] { Work(); });
  std::call_once(g_at_exit, [] { atexit(StopAllAtExit); });
  std::lock_guard<std::mutex> lk(g_pools_mu);
  g_pools->insert(this);
}

void JobPool::StopAllAtExit() {
  std::lock_guard<std::mutex> lk(g_pools_mu);
  for (JobPool* pool : *g_pools) pool->StopThreads();
}

void JobPool::StopThreads() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (std::thread& t : workers_) {
    if (t.joinable()) t.join();  // a running job finishes first: it may write into JS buffers
  }
}

JobPool::~JobPool() { Shutdown(); }  // normally done already by the env's teardown hook

void JobPool::Submit(PoolTask* task) {
  if (shut_down_) {  // the env is tearing down: nothing will run or settle it
    FreeForgotten(task);
    return;
  }
  if (in_flight_++ == 0) uv_ref(reinterpret_cast<uv_handle_t*>(&done_handle_->async));
  bool signal;
  {
    std::lock_guard<std::mutex> lk(mu_);
    queue_.push_back(task);
    signal = idle_ > 0;
  }
  if (signal) wake_.notify_one();
}

void JobPool::Work() {
  pthread_setname_np(pthread_self(), "pem-crypto");  // how ps, top and perf (and the tests) tell pool threads apart
  std::unique_lock<std::mutex> lk(mu_);
  for (;;) {
    if (stopping_) return;
    if (queue_.empty()) {
      idle_++;
      wake_.wait(lk, [this] { return stopping_ || !queue_.empty(); });
      idle_--;
      continue;
    }
    PoolTask* task = queue_.front();
    queue_.pop_front();
    lk.unlock();
    task->Execute();
    lk.lock();
    done_.push_back(task);
    // While queued work keeps this thread busy, the JS thread is woken for every CryptoThreads() finished jobs rather
    // than for each: a wake-up costs it ~40 us on a cache the batches just evicted, taken from a pool thread on a
    // 2-core machine. A held job waits at most until another finishes (the queued one will); a lone job goes at once.
    const bool notify = queue_.empty() || done_.size() >= thread_count_;
    lk.unlock();
    if (notify) uv_async_send(&done_handle_->async);  // coalesces while the JS thread has not yet run OnDone
    lk.lock();
  }
}

void JobPool::OnDone(uv_async_t* async) { static_cast<JobPool*>(async->data)->SettleDone(); }

void JobPool::SettleDone() {
  std::vector<PoolTask*> done;
  {
    std::lock_guard<std::mutex> lk(mu_);
    done.swap(done_);
  }
  if (done.empty()) return;
  {
    Napi::HandleScope scope(env_);
    Napi::CallbackScope callback(env_, async_context_);  // promise reactions run when it closes
    for (PoolTask* task : done) {
      task->Settle(env_);
      delete task;
    }
  }
  in_flight_ -= done.size();
  if (in_flight_ == 0 && !shut_down_) uv_unref(reinterpret_cast<uv_handle_t*>(&done_handle_->async));
}

void JobPool::OnTeardown(napi_async_cleanup_hook_handle, void* pool) { static_cast<JobPool*>(pool)->Shutdown(); }

void JobPool::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  {
    std::lock_guard<std::mutex> lk(g_pools_mu);  // the exit handler does not join these threads at the same time
    g_pools->erase(this);
    StopThreads();
  }
  workers_.clear();
  for (PoolTask* t : queue_) FreeForgotten(t);
  for (PoolTask* t : done_) FreeForgotten(t);
  queue_.clear();
  done_.clear();
  // libuv frees the handle later; the close callback must not touch the pool, which may be gone by then.
  uv_close(reinterpret_cast<uv_handle_t*>(&done_handle_->async), [](uv_handle_t* h) {
    auto* d = reinterpret_cast<DoneHandle*>(h);
    napi_remove_async_cleanup_hook(d->hook);
    delete d;
  });
  done_handle_ = nullptr;
}

JobPool* GetJobPool(Napi::Env env) {
  EnvState* s = GetEnvState(env);
  if (!s->pool) s->pool = std::make_unique<JobPool>(env, regs::CryptoThreads());
  return s->pool.get();
}

}  // namespace pem::engine
