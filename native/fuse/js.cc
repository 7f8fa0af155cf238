// JS entry points of the native FUSE session (lib/native/fuse-session.ts is the only caller): fuseMount,
// fuseAnswer, fuseUnmount, fuseInvalidate, fuseNotify, fuseRevoke, fuseDropKeys, fuseReservedPids, fuseHandles,
// fuseStats. Throw-then-return style.
#include "js.h"

#include <napi.h>
#include <sys/prctl.h>

#include <string>
#include <vector>

#include "../errors.h"
#include "bridge.h"
#include "session.h"

namespace pem::fuse {

namespace {

struct Mounted {
  Session* session = nullptr;
  Bridge* bridge = nullptr;
  napi_env env = nullptr;
  bool hooked = false;
};

// Stops the session; frees it unless its threads were left to end with the connection (they still use it).
void Teardown(Mounted* m) {
  if (m->session == nullptr) return;
  m->session->Stop();
  m->bridge->Release();
  if (m->session->finished()) {
    delete m->session;
    delete m->bridge;
  }
  m->session = nullptr;
  m->bridge = nullptr;
}

void CleanupHook(void* arg) { Teardown(static_cast<Mounted*>(arg)); }

void Finalize(Napi::Env env, Mounted* m) {
  Teardown(m);
  if (m->hooked) napi_remove_env_cleanup_hook(env, CleanupHook, m);
  delete m;
}

Mounted* Unwrap(const Napi::CallbackInfo& info, bool need_live) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsExternal()) {
    ThrowEngineError(env, kErrBadArgument, "the first argument must be a FUSE session");
    return nullptr;
  }
  Mounted* m = info[0].As<Napi::External<Mounted>>().Data();
  if (need_live && m->session == nullptr) {
    ThrowEngineError(env, kErrFuse, "the FUSE session is unmounted");
    return nullptr;
  }
  return m;
}

double NumberOr(Napi::Object o, const char* key, double dflt) {
  Napi::Value v = o.Get(key);
  return v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : dflt;
}

// fuseMount(dir, backingFd, options, decide, io) -> session
Napi::Value JsMount(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 5 || !info[0].IsString() || !info[1].IsNumber() || !info[2].IsObject() ||
      !info[3].IsFunction() || !info[4].IsFunction()) {
    ThrowEngineError(env, kErrBadArgument, "fuseMount(dir, backingFd, options, decide, io)");
    return env.Undefined();
  }
  MountOptions o;
  o.dir = info[0].As<Napi::String>().Utf8Value();
  double fd = info[1].As<Napi::Number>().DoubleValue();
  Napi::Object opts = info[2].As<Napi::Object>();
  if (o.dir.empty() || o.dir[0] != '/' || o.dir.size() > kPathMax || !(fd >= 0 && fd < 1 << 30)) {
    ThrowEngineError(env, kErrBadArgument, "fuseMount: dir must be an absolute path, backingFd an fd");
    return env.Undefined();
  }
  o.backing_fd = static_cast<int>(fd);
  double entry = NumberOr(opts, "entryTimeoutMs", 1000), attr = NumberOr(opts, "attrTimeoutMs", 1000);
  double decide = NumberOr(opts, "decideTimeoutMs", 5000);
  if (!(entry >= 0 && entry <= 3.6e6) || !(attr >= 0 && attr <= 3.6e6) || !(decide >= 1 && decide <= 600000)) {
    ThrowEngineError(env, kErrBadArgument, "fuseMount: a timeout is out of range");
    return env.Undefined();
  }
  o.entry_timeout = entry / 1000.0;
  o.attr_timeout = attr / 1000.0;
  o.decide_timeout_ms = static_cast<int>(decide);
  o.auto_unmount = opts.Get("autoUnmount").IsBoolean() ? opts.Get("autoUnmount").ToBoolean().Value() : true;
  o.debug = opts.Get("debug").ToBoolean().Value();
  Napi::Value fsname = opts.Get("fsname");
  if (fsname.IsString()) o.fsname = fsname.As<Napi::String>().Utf8Value();
  if (!fsname.IsUndefined() && (!fsname.IsString() || o.fsname.empty() || o.fsname.size() > kPathMax)) {
    ThrowEngineError(env, kErrBadArgument, "fuseMount: fsname must be a non-empty string");
    return env.Undefined();
  }

  Mounted* m = new Mounted();
  m->env = env;
  m->bridge = new Bridge(env, info[3].As<Napi::Function>(), info[4].As<Napi::Function>(), o.decide_timeout_ms);
  m->session = new Session(o);
  std::string why;
  if (m->session->Start(m->bridge, &why) != 0) {
    Teardown(m);
    delete m;
    ThrowEngineError(env, kErrFuse, why);
    return env.Undefined();
  }
  m->hooked = napi_add_env_cleanup_hook(env, CleanupHook, m) == napi_ok;
  return Napi::External<Mounted>::New(env, m, Finalize);
}

// fuseAnswer(session, id, answer) -> boolean (false: the call is gone; a malformed answer throws)
Napi::Value JsAnswer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Mounted* m = Unwrap(info, false);
  if (m == nullptr) return env.Undefined();
  if (info.Length() < 3 || !info[1].IsNumber()) {
    ThrowEngineError(env, kErrBadArgument, "fuseAnswer(session, id, answer)");
    return env.Undefined();
  }
  if (m->bridge == nullptr) return Napi::Boolean::New(env, false);
  std::string why;
  double id = info[1].As<Napi::Number>().DoubleValue();
  if (!(id >= 1)) return Napi::Boolean::New(env, false);
  bool ok = m->bridge->Complete(env, static_cast<uint64_t>(id), info[2], &why);
  if (!ok && why.rfind("no such call", 0) != 0) {
    ThrowEngineError(env, kErrBadArgument, "fuseAnswer: " + why);
    return env.Undefined();
  }
  return Napi::Boolean::New(env, ok);
}

Napi::Value JsUnmount(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Mounted* m = Unwrap(info, false);
  if (m == nullptr) return env.Undefined();
  Teardown(m);
  return env.Undefined();
}

// fuseInvalidate(session): drops every cached decision (a new policy version).
Napi::Value JsInvalidate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Mounted* m = Unwrap(info, true);
  if (m == nullptr) return env.Undefined();
  m->session->cache().Clear();
  m->session->crypt().ClearSpares();  // keys taken for the old policy's create decisions
  return env.Undefined();
}

// fuseNotify(session, nodeid, name?): the kernel forgets the inode's attributes/data, or the entry parent/name.
Napi::Value JsNotify(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Mounted* m = Unwrap(info, true);
  if (m == nullptr) return env.Undefined();
  if (info.Length() < 2 || !info[1].IsNumber() || (info.Length() > 2 && !info[2].IsString() && !info[2].IsUndefined())) {
    ThrowEngineError(env, kErrBadArgument, "fuseNotify(session, nodeid, name?)");
    return env.Undefined();
  }
  std::string name = info.Length() > 2 && info[2].IsString() ? info[2].As<Napi::String>().Utf8Value() : "";
  if (name.size() > kNameMax) {
    ThrowEngineError(env, kErrBadLength, "fuseNotify: name is longer than 255 bytes");
    return env.Undefined();
  }
  m->session->QueueInval(static_cast<uint64_t>(info[1].As<Napi::Number>().DoubleValue()), name);
  return env.Undefined();
}

// fuseRevoke(session, fh): the handle (0: every handle) loses its decisions; its reads and writes get EACCES.
Napi::Value JsRevoke(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Mounted* m = Unwrap(info, true);
  if (m == nullptr) return env.Undefined();
  if (info.Length() < 2 || !info[1].IsNumber()) {
    ThrowEngineError(env, kErrBadArgument, "fuseRevoke(session, fh)");
    return env.Undefined();
  }
  double fh = info[1].As<Napi::Number>().DoubleValue();
  return Napi::Number::New(env, static_cast<double>(m->session->Revoke(fh >= 1 ? static_cast<uint64_t>(fh) : 0)));
}

// fuseDropKeys(session, expiredOnly): wipes the host-placement keys held (expiredOnly: those past their ttl); the
// files' next reads and writes ask for a key again. Returns how many were wiped.
Napi::Value JsDropKeys(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Mounted* m = Unwrap(info, true);
  if (m == nullptr) return env.Undefined();
  if (info.Length() < 2 || !info[1].IsBoolean()) {
    ThrowEngineError(env, kErrBadArgument, "fuseDropKeys(session, expiredOnly)");
    return env.Undefined();
  }
  return Napi::Number::New(env, static_cast<double>(m->session->crypt().DropKeys(info[1].As<Napi::Boolean>().Value())));
}

// fuseReservedPids(session, pids): the processes served pemfs's own names (reserved.h), replacing the previous ones.
Napi::Value JsReservedPids(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Mounted* m = Unwrap(info, true);
  if (m == nullptr) return env.Undefined();
  if (info.Length() < 2 || !info[1].IsArray()) {
    ThrowEngineError(env, kErrBadArgument, "fuseReservedPids(session, pids)");
    return env.Undefined();
  }
  Napi::Array a = info[1].As<Napi::Array>();
  std::vector<pid_t> pids;
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value v = a.Get(i);
    double pid = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : 0;
    if (!(pid >= 1 && pid < 1 << 30) || pid != static_cast<double>(static_cast<pid_t>(pid))) {
      ThrowEngineError(env, kErrBadArgument, "fuseReservedPids: every pid must be a positive integer");
      return env.Undefined();
    }
    pids.push_back(static_cast<pid_t>(pid));
  }
  m->session->reserved().SetPids(std::move(pids));
  return env.Undefined();
}

Napi::Value JsHandles(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Mounted* m = Unwrap(info, true);
  if (m == nullptr) return env.Undefined();
  auto all = m->session->Handles();
  Napi::Array out = Napi::Array::New(env, all.size());
  for (size_t i = 0; i < all.size(); i++) {
    const auto& h = all[i];
    Napi::Object o = Napi::Object::New(env);
    std::string path;
    m->session->inodes().Path(h->nodeid, &path);
    o.Set("fh", Napi::Number::New(env, static_cast<double>(h->id)));
    o.Set("nodeid", Napi::Number::New(env, static_cast<double>(h->nodeid)));
    o.Set("path", Napi::String::New(env, path));
    o.Set("encrypted", Napi::Boolean::New(env, h->encrypted));
    o.Set("read", Napi::Boolean::New(env, (h->allowed & Bit(Action::kRead)) != 0));
    o.Set("write", Napi::Boolean::New(env, (h->allowed & Bit(Action::kWrite)) != 0));
    o.Set("revoked", Napi::Boolean::New(env, h->revoked.load()));
    o.Set("uid", Napi::Number::New(env, h->uid));
    o.Set("pid", Napi::Number::New(env, h->pid));
    out.Set(static_cast<uint32_t>(i), o);
  }
  return out;
}

Napi::Value JsStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Mounted* m = Unwrap(info, true);
  if (m == nullptr) return env.Undefined();
  Session* s = m->session;
  Napi::Object o = Napi::Object::New(env);
  o.Set("ops", Napi::Number::New(env, static_cast<double>(s->ops.load())));
  o.Set("jsCalls", Napi::Number::New(env, static_cast<double>(s->js_calls.load())));
  o.Set("cacheHits", Napi::Number::New(env, static_cast<double>(s->cache_hits.load())));
  o.Set("timeouts", Napi::Number::New(env, static_cast<double>(m->bridge->timeouts())));
  o.Set("nodes", Napi::Number::New(env, static_cast<double>(s->inodes().size())));
  o.Set("handles", Napi::Number::New(env, static_cast<double>(s->Handles().size())));
  o.Set("cacheEntries", Napi::Number::New(env, static_cast<double>(s->cache().size())));
  CryptNodes& c = s->crypt();
  o.Set("hostNodes", Napi::Number::New(env, static_cast<double>(c.nodes())));
  o.Set("hostKeys", Napi::Number::New(env, static_cast<double>(c.keys.load())));
  o.Set("hostKeysHeld", Napi::Number::New(env, static_cast<double>(c.keys_held())));
  o.Set("hostKeysDropped", Napi::Number::New(env, static_cast<double>(c.keys_dropped.load())));
  o.Set("hostKeyCalls", Napi::Number::New(env, static_cast<double>(c.key_calls.load())));
  o.Set("hostReads", Napi::Number::New(env, static_cast<double>(c.reads.load())));
  o.Set("hostWrites", Napi::Number::New(env, static_cast<double>(c.writes.load())));
  o.Set("hostBytesRead", Napi::Number::New(env, static_cast<double>(c.bytes_read.load())));
  o.Set("hostBytesWritten", Napi::Number::New(env, static_cast<double>(c.bytes_written.load())));
  o.Set("blockGrants", Napi::Number::New(env, static_cast<double>(c.grants.load())));
  o.Set("blockRequests", Napi::Number::New(env, static_cast<double>(c.links.requests.load())));
  o.Set("blockBlocks", Napi::Number::New(env, static_cast<double>(c.links.blocks.load())));
  o.Set("blockConnects", Napi::Number::New(env, static_cast<double>(c.links.connects.load())));
  o.Set("blockLinksLost", Napi::Number::New(env, static_cast<double>(c.links.lost.load())));
  o.Set("blockBehindWrites", Napi::Number::New(env, static_cast<double>(c.behind.behind_writes.load())));
  o.Set("blockAheadBytes", Napi::Number::New(env, static_cast<double>(c.behind.ahead_bytes.load())));
  Napi::Array seen = Napi::Array::New(env);
  uint32_t i = 0;
  for (const ServerSeen& v : c.links.Seen()) {
    Napi::Object e = Napi::Object::New(env);
    e.Set("server", Napi::String::New(env, v.server));
    e.Set("load", Napi::Number::New(env, v.load));
    e.Set("weight", Napi::Number::New(env, v.weight));
    e.Set("pv", Napi::Number::New(env, static_cast<double>(v.pv)));
    e.Set("alive", Napi::Boolean::New(env, v.alive));
    e.Set("requests", Napi::Number::New(env, static_cast<double>(v.requests)));
    seen.Set(i++, e);
  }
  o.Set("blockServers", seen);
  o.Set("hostSpareKeys", Napi::Number::New(env, static_cast<double>(c.spares())));
  o.Set("hostSpareTakes", Napi::Number::New(env, static_cast<double>(c.spare_takes.load())));
  Napi::Array bounds = Napi::Array::New(env);
  for (size_t b = 0; b < kLatencyBoundsNs.size(); b++) bounds.Set(static_cast<uint32_t>(b), Napi::Number::New(env, kLatencyBoundsNs[b] / 1e9));
  Napi::Object latency = Napi::Object::New(env);
  latency.Set("bounds", bounds);
  for (int k = 0; k < kOpClasses; k++) {  // each bucket read once; count is their sum, so it equals the +Inf bucket
    const OpHistogram& h = s->latency.Of(static_cast<OpClass>(k));
    Napi::Array counts = Napi::Array::New(env);
    for (size_t b = 0; b < h.buckets.size(); b++) counts.Set(static_cast<uint32_t>(b), Napi::Number::New(env, static_cast<double>(h.buckets[b].load(std::memory_order_relaxed))));
    Napi::Object e = Napi::Object::New(env);
    e.Set("counts", counts);
    e.Set("sum", Napi::Number::New(env, h.sum_ns.load(std::memory_order_relaxed) / 1e9));
    latency.Set(OpClassName(static_cast<OpClass>(k)), e);
  }
  o.Set("opLatency", latency);
  o.Set("dumpable", Napi::Boolean::New(env, prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0));
  return o;
}

}  // namespace

void Init(Napi::Env env, Napi::Object exports) {
  exports.Set("fuseMount", Napi::Function::New(env, JsMount, "fuseMount"));
  exports.Set("fuseAnswer", Napi::Function::New(env, JsAnswer, "fuseAnswer"));
  exports.Set("fuseUnmount", Napi::Function::New(env, JsUnmount, "fuseUnmount"));
  exports.Set("fuseInvalidate", Napi::Function::New(env, JsInvalidate, "fuseInvalidate"));
  exports.Set("fuseNotify", Napi::Function::New(env, JsNotify, "fuseNotify"));
  exports.Set("fuseRevoke", Napi::Function::New(env, JsRevoke, "fuseRevoke"));
  exports.Set("fuseDropKeys", Napi::Function::New(env, JsDropKeys, "fuseDropKeys"));
  exports.Set("fuseReservedPids", Napi::Function::New(env, JsReservedPids, "fuseReservedPids"));
  exports.Set("fuseHandles", Napi::Function::New(env, JsHandles, "fuseHandles"));
  exports.Set("fuseStats", Napi::Function::New(env, JsStats, "fuseStats"));
  exports.Set("FUSE_MAX_WRITE", Napi::Number::New(env, kMaxWrite));
  exports.Set("FUSE_NAME_MAX", Napi::Number::New(env, kNameMax));
  exports.Set("FUSE_PATH_MAX", Napi::Number::New(env, kPathMax));
}

}  // namespace pem::fuse
