// Bridge (bridge.h): worker -> JS calls through thread-safe functions, JS -> worker answers by id.
#include "bridge.h"

#include <errno.h>

#include <chrono>
#include <cstring>

#include "inodes.h"

namespace pem::fuse {

const char* IoKindName(IoKind k) {
  switch (k) {
    case IoKind::kOpen: return "open";
    case IoKind::kRead: return "read";
    case IoKind::kWrite: return "write";
    case IoKind::kFlush: return "flush";
    case IoKind::kFsync: return "fsync";
    case IoKind::kRelease: return "release";
    case IoKind::kTruncate: return "truncate";
    case IoKind::kSize: return "size";
    case IoKind::kKey: return "key";
  }
  return "?";
}

Bridge::Bridge(Napi::Env env, Napi::Function decide, Napi::Function io, int timeout_ms) : timeout_ms_(timeout_ms) {
  // Unlimited queues: a worker never blocks on the queue, only on its own answer (which has a deadline).
  decide_tsfn_ = Napi::ThreadSafeFunction::New(env, decide, "pem:fuse-decide", 0, 1);
  io_tsfn_ = Napi::ThreadSafeFunction::New(env, io, "pem:fuse-io", 0, 1);
}

std::shared_ptr<Bridge::Pending> Bridge::Enqueue(Job* job) {
  auto p = std::make_shared<Pending>();
  p->is_io = job->is_io;
  std::lock_guard<std::mutex> lock(mu_);
  if (cancelled_) return nullptr;
  job->bridge = this;
  job->id = next_id_++;
  pending_[job->id] = p;
  return p;
}

void Bridge::Fail(uint64_t id, int err) {
  std::shared_ptr<Pending> p;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = pending_.find(id);
    if (it == pending_.end()) return;
    p = it->second;
    pending_.erase(it);
  }
  std::lock_guard<std::mutex> lock(p->mu);
  p->err = err;
  p->done = true;
  p->cv.notify_all();
}

int Bridge::Wait(uint64_t id, const std::shared_ptr<Pending>& p) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms_);
  std::unique_lock<std::mutex> lk(p->mu);
  if (!p->cv.wait_until(lk, deadline, [&] { return p->done; })) {
    lk.unlock();
    std::lock_guard<std::mutex> lock(mu_);
    pending_.erase(id);  // a late answer finds nothing
    timeouts_++;
    return ETIMEDOUT;
  }
  return p->err;
}

int Bridge::Decide(DecideCall&& call, Answer* out) {
  Job* job = new Job();
  job->decide = std::move(call);
  auto p = Enqueue(job);
  if (p == nullptr) {
    delete job;
    return EIO;
  }
  uint64_t id = job->id;
  if (decide_tsfn_.NonBlockingCall(job, CallDecide) != napi_ok) {
    delete job;
    Fail(id, EIO);
  }
  int err = Wait(id, p);
  if (err == 0) *out = p->answer;
  return err;
}

int Bridge::Io(IoCall&& call, IoResult* out) {
  Job* job = new Job();
  job->is_io = true;
  job->io = std::move(call);
  auto p = Enqueue(job);
  if (p == nullptr) {
    delete job;
    return EIO;
  }
  uint64_t id = job->id;
  if (io_tsfn_.NonBlockingCall(job, CallIo) != napi_ok) {
    delete job;
    Fail(id, EIO);
  }
  int err = Wait(id, p);
  if (err == 0) *out = std::move(p->io);
  return err;
}

void Bridge::Deliver(Napi::Env env, Napi::Function fn, Job* job, Napi::Object req) {
  req.Set("id", Napi::Number::New(env, static_cast<double>(job->id)));
  fn.Call({req});
  if (env.IsExceptionPending()) {
    env.GetAndClearPendingException();
    job->bridge->Fail(job->id, EIO);
  }
}

void Bridge::CallDecide(Napi::Env env, Napi::Function fn, Job* job) {
  if (env == nullptr || fn.IsEmpty()) {  // the function is being torn down
    job->bridge->Fail(job->id, EIO);
    delete job;
    return;
  }
  Napi::HandleScope scope(env);
  const DecideCall& c = job->decide;
  Napi::Object req = Napi::Object::New(env);
  req.Set("uid", Napi::Number::New(env, c.uid));
  req.Set("gid", Napi::Number::New(env, c.gid));
  Napi::Array gids = Napi::Array::New(env, c.gids.size());
  for (size_t i = 0; i < c.gids.size(); i++) gids.Set(static_cast<uint32_t>(i), Napi::Number::New(env, c.gids[i]));
  req.Set("gids", gids);
  req.Set("pid", Napi::Number::New(env, c.pid));
  req.Set("umask", Napi::Number::New(env, c.umask));
  req.Set("path", Napi::String::New(env, c.path));
  req.Set("action", Napi::String::New(env, ActionName(c.action)));
  req.Set("nodeid", Napi::Number::New(env, static_cast<double>(c.nodeid)));
  Deliver(env, fn, job, req);
  delete job;
}

void Bridge::CallIo(Napi::Env env, Napi::Function fn, Job* job) {
  if (env == nullptr || fn.IsEmpty()) {
    job->bridge->Fail(job->id, EIO);
    delete job;
    return;
  }
  Napi::HandleScope scope(env);
  const IoCall& c = job->io;
  Napi::Object req = Napi::Object::New(env);
  req.Set("kind", Napi::String::New(env, IoKindName(c.kind)));
  req.Set("fh", Napi::Number::New(env, static_cast<double>(c.fh)));
  req.Set("nodeid", Napi::Number::New(env, static_cast<double>(c.nodeid)));
  req.Set("fd", Napi::Number::New(env, c.fd));
  req.Set("offset", Napi::Number::New(env, static_cast<double>(c.offset)));
  req.Set("size", Napi::Number::New(env, static_cast<double>(c.size)));
  req.Set("flags", Napi::Number::New(env, c.flags));
  req.Set("uid", Napi::Number::New(env, static_cast<double>(c.uid)));
  req.Set("gid", Napi::Number::New(env, static_cast<double>(c.gid)));
  req.Set("pid", Napi::Number::New(env, static_cast<double>(c.pid)));
  req.Set("path", Napi::String::New(env, c.path));
  req.Set("pool", Napi::Number::New(env, c.pool));
  if (c.kind == IoKind::kWrite || c.kind == IoKind::kKey) {
    req.Set("data", Napi::Buffer<uint8_t>::Copy(env, c.data.data(), c.data.size()));
  }
  Deliver(env, fn, job, req);
  delete job;
}

namespace {

bool NumberField(Napi::Object o, const char* key, double* out) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return false;
  if (!v.IsNumber()) return false;
  *out = v.As<Napi::Number>().DoubleValue();
  return true;
}

bool BytesField(Napi::Object o, const char* name, size_t n, uint8_t* out) {
  Napi::Value v = o.Get(name);
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array ||
      v.As<Napi::Uint8Array>().ByteLength() != n) {
    return false;
  }
  memcpy(out, v.As<Napi::Uint8Array>().Data(), n);
  return true;
}

constexpr uint32_t kMaxSpares = 64;  // spare keys one answer may carry

// { key: 32 bytes | remote: { server, host, port, token: 16, keys: 64, grant: 16 }, header: the file's header bytes,
// ttlMs > 0 }: one file's key (host placement) or, with remote, its grant at spd's block service over the block
// channel (appliance placement).
bool ParseHostKey(Napi::Value v, HostKey* k, std::string* why) {
  if (!v.IsObject()) return *why = "hostKey must be an object", false;
  Napi::Object hk = v.As<Napi::Object>();
  Napi::Value header = hk.Get("header"), remote = hk.Get("remote");
  double ttl = 0;
  if (remote.IsObject()) {
    Napi::Object r = remote.As<Napi::Object>();
    Napi::Value server = r.Get("server"), host = r.Get("host");
    double port = 0;
    if (!server.IsString() || !host.IsString() || !NumberField(r, "port", &port) || !(port > 0 && port < 65536) ||
        !BytesField(r, "token", blockch::kTokenBytes, k->spec.token) ||
        !BytesField(r, "keys", blockch::kChannelKeyBytes, k->spec.keys) ||
        !BytesField(r, "grant", blockch::kGrantBytes, k->spec.grant)) {
      return *why = "hostKey.remote must be { server, host, port, token (16), keys (64), grant (16) }", false;
    }
    k->spec.server = server.As<Napi::String>().Utf8Value();
    k->spec.host = host.As<Napi::String>().Utf8Value();
    k->spec.port = static_cast<int>(port);
    k->remote = true;
  } else if (!BytesField(hk, "key", kHostKeyBytes, k->key)) {
    return *why = "hostKey.key must be 32 bytes", false;
  }
  if (!header.IsTypedArray() || header.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array ||
      header.As<Napi::Uint8Array>().ByteLength() > kHeaderMaxBytes) {
    return *why = "hostKey.header must be the file's header bytes", false;
  }
  if (!NumberField(hk, "ttlMs", &ttl) || !(ttl > 0)) return *why = "hostKey.ttlMs must be > 0", false;
  Napi::Uint8Array hb = header.As<Napi::Uint8Array>();
  k->header.assign(hb.Data(), hb.Data() + hb.ByteLength());
  k->ttl_ms = ttl > kHostKeyMaxTtlMs ? kHostKeyMaxTtlMs : ttl;
  k->present = true;
  return true;
}

// hostKey (absent: not host placement) and spares (absent: none; a list of at most kMaxSpares keys like hostKey).
bool HostKeyFields(Napi::Object o, IoResult* r, std::string* why) {
  Napi::Value v = o.Get("hostKey");
  if (!v.IsUndefined() && !v.IsNull() && !ParseHostKey(v, &r->host, why)) return false;
  Napi::Value sp = o.Get("spares");
  if (sp.IsUndefined() || sp.IsNull()) return true;
  if (!sp.IsArray() || sp.As<Napi::Array>().Length() > kMaxSpares) return *why = "spares must be a list of at most 64 keys", false;
  Napi::Array a = sp.As<Napi::Array>();
  r->spares.resize(a.Length());
  for (uint32_t i = 0; i < a.Length(); i++) {
    if (!ParseHostKey(a.Get(i), &r->spares[i], why)) return false;
    if (r->spares[i].remote) return *why = "spares must be keys, not remote grants", false;
  }
  return true;
}

}  // namespace

bool Bridge::Complete(Napi::Env env, uint64_t id, Napi::Value answer, std::string* why) {
  std::shared_ptr<Pending> p;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = pending_.find(id);
    if (it == pending_.end()) {
      *why = "no such call (answered late, or the session stopped)";
      return false;
    }
    p = it->second;
    pending_.erase(it);
  }
  int err = 0;
  Answer a;
  IoResult r;
  bool good = answer.IsObject();
  if (!good) *why = "the answer must be an object";
  if (good) {
    Napi::Object o = answer.As<Napi::Object>();
    double n = 0;
    if (!p->is_io) {
      a.ok = o.Get("ok").ToBoolean().Value();
      if (NumberField(o, "errno", &n) && n > 0 && n < 4096) a.err = static_cast<int>(n);
      if (!a.ok && a.err == 0) a.err = EACCES;
      if (NumberField(o, "ttlMs", &n) && n > 0) a.ttl_ms = n > 3.6e6 ? 3.6e6 : n;
      Napi::Value bp = o.Get("bypass");
      a.bypass = bp.IsUndefined() ? true : bp.ToBoolean().Value();
      if (NumberField(o, "pool", &n) && n >= 1 && n <= 4294967295.0) a.pool = static_cast<uint32_t>(n);
      Napi::Value sc = o.Get("scope");
      if (sc.IsString()) {
        a.scope = sc.As<Napi::String>().Utf8Value();
        a.scoped = true;
        if (a.scope.size() > kPolicyPathMax || (!a.scope.empty() && (a.scope[0] != '/' || a.scope.back() == '/'))) {
          good = false;
          *why = "scope must be '' or an absolute path without a trailing slash";
        }
      } else if (!sc.IsUndefined() && !sc.IsNull()) {
        good = false;
        *why = "scope must be a string";
      }
    } else {
      if (NumberField(o, "errno", &n) && n > 0 && n < 4096) r.err = static_cast<int>(n);
      if (NumberField(o, "value", &n)) r.value = static_cast<int64_t>(n);
      Napi::Value d = o.Get("data");
      if (d.IsBuffer() || d.IsTypedArray()) {
        Napi::Uint8Array u = d.As<Napi::Uint8Array>();
        if (u.ByteLength() > kMaxIoBytes) {
          good = false;
          *why = "data is larger than the size asked";
        } else {
          r.data.assign(u.Data(), u.Data() + u.ByteLength());
        }
      }
      if (good && !HostKeyFields(o, &r, why)) good = false;
    }
  }
  if (!good) err = EIO;
  std::lock_guard<std::mutex> lock(p->mu);
  p->answer = a;
  p->io = std::move(r);
  p->err = err;
  p->done = true;
  p->cv.notify_all();
  return good;
}

void Bridge::CancelAll() {
  std::unordered_map<uint64_t, std::shared_ptr<Pending>> all;
  {
    std::lock_guard<std::mutex> lock(mu_);
    cancelled_ = true;
    all.swap(pending_);
  }
  for (auto& kv : all) {
    std::lock_guard<std::mutex> lock(kv.second->mu);
    kv.second->err = EIO;
    kv.second->done = true;
    kv.second->cv.notify_all();
  }
}

void Bridge::Release() {
  std::lock_guard<std::mutex> lock(mu_);
  if (released_) return;
  released_ = true;
  decide_tsfn_.Release();
  io_tsfn_.Release();
}

}  // namespace pem::fuse
