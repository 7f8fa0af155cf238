// Per-env addon state (napi instance data): one struct holding each module's state; no mutable statics elsewhere.
#pragma once

#include <napi.h>

#include <memory>

#include "crypto_engine.h"
#include "job_pool.h"
#include "load_regs.h"

namespace pem {

struct EnvState {
  regs::State regs;
  engine::State engine;
  std::unique_ptr<engine::JobPool> pool;  // created on the first async batch
};

// The env's state, created on first use and freed with the env (worker threads get their own).
inline EnvState* GetEnvState(Napi::Env env) {
  EnvState* s = env.GetInstanceData<EnvState>();
  if (s == nullptr) {
    s = new EnvState();
    env.SetInstanceData<EnvState>(s);  // default finalizer deletes it at env teardown
  }
  return s;
}

}  // namespace pem
