// Benchmark drivers for the block channel (benchmarks/data/block-path.bench.ts): the native client's round trip to
// spd's block service with `depth` worker threads sharing one connection, and its floor, a C TCP echo of the same
// payload in this process (length-prefixed, one connection and thread per depth). Both block the calling thread for
// the run; the bench calls them from a process that serves nothing else.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/rand.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "block_channel.h"
#include "errors.h"
#include "fuse/block_client.h"

namespace pem::blockch {
namespace {

using Clock = std::chrono::steady_clock;

struct Run {
  double rate = 0;  // round trips per second
  double p50_us = 0, p99_us = 0;
  int err = 0;
};

// `depth` threads each calling once() in a loop for ms; latencies of every call pooled.
template <typename F>
Run Drive(int depth, int ms, F once) {
  std::vector<std::vector<float>> lat(depth);
  std::atomic<int> err{0};
  const auto until = Clock::now() + std::chrono::milliseconds(ms);
  const auto start = Clock::now();
  std::vector<std::thread> ts;
  for (int t = 0; t < depth; t++) {
    ts.emplace_back([&, t] {
      while (Clock::now() < until && err == 0) {
        const auto a = Clock::now();
        int e = once(t);
        if (e != 0) err = e;
        lat[t].push_back(std::chrono::duration<float, std::micro>(Clock::now() - a).count());
      }
    });
  }
  for (auto& th : ts) th.join();
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  std::vector<float> all;
  for (auto& l : lat) all.insert(all.end(), l.begin(), l.end());
  Run r;
  r.err = err;
  if (all.empty()) return r;
  std::sort(all.begin(), all.end());
  r.rate = all.size() / secs;
  r.p50_us = all[all.size() / 2];
  r.p99_us = all[std::min(all.size() - 1, all.size() * 99 / 100)];
  return r;
}

Napi::Object ToJs(Napi::Env env, const Run& r) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("rate", r.rate);
  o.Set("p50us", r.p50_us);
  o.Set("p99us", r.p99_us);
  o.Set("errno", r.err);
  return o;
}

// blockBench(remote, aad (44 bytes), blockBytes, blocks per request, depth, ms) -> { seal: Run, open: Run }
Napi::Value BlockBenchJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject() || !info[1].IsTypedArray() || !info[2].IsNumber() || !info[3].IsNumber() ||
      !info[4].IsNumber() || !info[5].IsNumber()) {
    ThrowEngineError(env, kErrBadArgument, "blockBench(remote, aad, blockBytes, blocks, depth, ms)");
    return env.Undefined();
  }
  Napi::Object r = info[0].As<Napi::Object>();
  fuse::RemoteSpec spec;
  spec.server = r.Get("server").As<Napi::String>().Utf8Value();
  spec.host = r.Get("host").As<Napi::String>().Utf8Value();
  spec.port = r.Get("port").As<Napi::Number>().Int32Value();
  memcpy(spec.token, r.Get("token").As<Napi::Uint8Array>().Data(), kTokenBytes);
  memcpy(spec.keys, r.Get("keys").As<Napi::Uint8Array>().Data(), kChannelKeyBytes);
  memcpy(spec.grant, r.Get("grant").As<Napi::Uint8Array>().Data(), kGrantBytes);
  const uint8_t* aad = info[1].As<Napi::Uint8Array>().Data();
  const uint32_t bb = info[2].As<Napi::Number>().Uint32Value();
  const size_t n = info[3].As<Napi::Number>().Uint32Value();
  const int depth = info[4].As<Napi::Number>().Int32Value(), ms = info[5].As<Napi::Number>().Int32Value();
  fuse::BlockLinks links;
  std::string why;
  auto sealer = links.Sealer(spec, &why);
  if (sealer == nullptr) {
    ThrowEngineError(env, kErrBadArgument, "block bench: " + why);
    return env.Undefined();
  }
  std::vector<uint8_t> plain(n * bb), sealed(n * (bb + kBlockOverhead));
  RAND_bytes(plain.data(), static_cast<int>(plain.size()));
  struct Lane {
    std::vector<uint8_t> out;
    std::vector<fuse::BlockJob> jobs;
  };
  std::vector<Lane> lanes(depth);
  auto jobs_of = [&](Lane& l, bool seal) {
    l.out.resize(n * (bb + kBlockOverhead));
    l.jobs.resize(n);
    for (size_t i = 0; i < n; i++) {
      l.jobs[i] = seal ? fuse::BlockJob{aad, plain.data() + i * bb, bb, l.out.data() + i * (bb + kBlockOverhead)}
                       : fuse::BlockJob{aad, sealed.data() + i * (bb + kBlockOverhead), bb, l.out.data() + i * bb};
    }
  };
  Lane first;
  jobs_of(first, true);
  int err = sealer->Run(true, first.jobs.data(), n);
  if (err == 0) sealed = first.out;
  for (auto& l : lanes) jobs_of(l, true);
  Run seal = Drive(depth, ms, [&](int t) { return sealer->Run(true, lanes[t].jobs.data(), n); });
  for (auto& l : lanes) jobs_of(l, false);
  Run open = Drive(depth, ms, [&](int t) { return sealer->Run(false, lanes[t].jobs.data(), n); });
  Napi::Object o = Napi::Object::New(env);
  o.Set("seal", ToJs(env, seal));
  o.Set("open", ToJs(env, open));
  if (err != 0) o.Set("errno", err);
  return o;
}

// tcpEchoBench(bytes, depth, ms) -> Run: loopback TCP, u32 length | payload out, the same back.
Napi::Value TcpEchoBenchJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const size_t bytes = info[0].As<Napi::Number>().Uint32Value();
  const int depth = info[1].As<Napi::Number>().Int32Value(), ms = info[2].As<Napi::Number>().Int32Value();
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t al = sizeof(a);
  if (bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || listen(lfd, depth) != 0 ||
      getsockname(lfd, reinterpret_cast<sockaddr*>(&a), &al) != 0) {
    close(lfd);
    ThrowEngineError(env, kErrBadArgument, "tcp echo: listen failed");
    return env.Undefined();
  }
  std::vector<std::thread> servers;
  std::vector<int> cfds(depth);
  int one = 1;
  for (int t = 0; t < depth; t++) {
    cfds[t] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    setsockopt(cfds[t], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    connect(cfds[t], reinterpret_cast<sockaddr*>(&a), sizeof(a));
    int sfd = accept(lfd, nullptr, nullptr);
    setsockopt(sfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    servers.emplace_back([sfd, bytes] {
      std::vector<uint8_t> buf(bytes + 4);
      while (ReadFull(sfd, buf.data(), 4) == 0 && ReadFull(sfd, buf.data() + 4, Get32(buf.data())) == 0 &&
             WriteFull(sfd, buf.data(), 4 + Get32(buf.data())) == 0) {
      }
      close(sfd);
    });
  }
  std::vector<std::vector<uint8_t>> bufs(depth, std::vector<uint8_t>(bytes + 4));
  for (auto& b : bufs) Put32(b.data(), static_cast<uint32_t>(bytes));
  Run r = Drive(depth, ms, [&](int t) {
    uint8_t* b = bufs[t].data();
    Put32(b, static_cast<uint32_t>(bytes));
    int e = WriteFull(cfds[t], b, bytes + 4);
    if (e == 0) e = ReadFull(cfds[t], b, 4);
    if (e == 0) e = ReadFull(cfds[t], b + 4, Get32(b));
    return e;
  });
  for (int fd : cfds) shutdown(fd, SHUT_RDWR), close(fd);
  for (auto& th : servers) th.join();
  close(lfd);
  return ToJs(env, r);
}

}  // namespace

void InitBench(Napi::Env env, Napi::Object exports) {
  exports.Set("blockBench", Napi::Function::New(env, BlockBenchJs));
  exports.Set("tcpEchoBench", Napi::Function::New(env, TcpEchoBenchJs));
}

}  // namespace pem::blockch
