// Load registers: reads /proc/stat and /sys/class/net/IF/{statistics/rx_bytes,statistics/tx_bytes,speed} in place.
#include "load_regs.h"

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include "env_state.h"
#include "errors.h"

namespace pem::regs {

namespace {

std::atomic<uint64_t> g_crypto_busy_ns{0};

void CloseFd(int* fd) {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}

int OpenRead(const std::string& path) { return open(path.c_str(), O_RDONLY | O_CLOEXEC); }

// Reads the start of a proc/sys file from offset 0 into buf (NUL-terminated). Returns bytes read or -1.
ssize_t ReadAt0(int fd, char* buf, size_t cap) {
  ssize_t n;
  do {
    n = pread(fd, buf, cap - 1, 0);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return -1;
  buf[n] = '\0';
  return n;
}

bool ReadU64File(int fd, double* out) {
  char buf[64];
  if (ReadAt0(fd, buf, sizeof(buf)) <= 0) return false;
  char* end = nullptr;
  errno = 0;
  unsigned long long v = strtoull(buf, &end, 10);
  if (errno != 0 || end == buf) return false;
  *out = static_cast<double>(v);
  return true;
}

// Parses the aggregate "cpu  user nice system idle iowait irq softirq steal ..." line.
bool ReadCpu(int fd, double* busy, double* total) {
  char buf[512];
  if (ReadAt0(fd, buf, sizeof(buf)) <= 0) return false;
  if (strncmp(buf, "cpu ", 4) != 0) return false;
  char* p = buf + 4;
  unsigned long long f[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int i = 0; i < 8; i++) {
    char* end = nullptr;
    f[i] = strtoull(p, &end, 10);
    if (end == p) {
      if (i < 4) return false;  // user nice system idle are always there
      break;
    }
    p = end;
  }
  // guest/guest_nice are already counted in user/nice.
  unsigned long long b = f[0] + f[1] + f[2] + f[5] + f[6] + f[7];
  *busy = static_cast<double>(b);
  *total = static_cast<double>(b + f[3] + f[4]);
  return true;
}

bool ValidIfName(const std::string& name) {
  if (name.empty() || name.size() > 15 || name == "." || name == "..") return false;
  for (char c : name) {
    if (c == '/' || c == '\0' || c == ' ' || c == '\n') return false;
  }
  return true;
}

// Opens the interface's counters into s; on failure leaves s untouched and returns false.
bool OpenNic(State* s, const std::string& name) {
  const std::string base = "/sys/class/net/" + name;
  int rx = OpenRead(base + "/statistics/rx_bytes");
  int tx = OpenRead(base + "/statistics/tx_bytes");
  if (rx < 0 || tx < 0) {
    CloseFd(&rx);
    CloseFd(&tx);
    return false;
  }
  int speed = OpenRead(base + "/speed");  // may be absent (some virtual devices): speed stays -1
  CloseFd(&s->rx_fd);
  CloseFd(&s->tx_fd);
  CloseFd(&s->speed_fd);
  s->rx_fd = rx;
  s->tx_fd = tx;
  s->speed_fd = speed;
  s->nic = name;
  return true;
}

Napi::Value ReadRegs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsTypedArray() ||
      info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array) {
    ThrowEngineError(env, kErrBadArgument, "readRegs(out): out must be a Float64Array");
    return env.Undefined();
  }
  Napi::Float64Array out = info[0].As<Napi::Float64Array>();
  if (out.ElementLength() < kRegCount) {
    ThrowEngineError(env, kErrBadLength, "readRegs(out): out needs REG_COUNT elements");
    return env.Undefined();
  }
  State* s = &GetEnvState(env)->regs;
  if (s->stat_fd < 0) s->stat_fd = OpenRead("/proc/stat");
  if (s->rx_fd < 0 && !OpenNic(s, s->nic)) {
    ThrowEngineError(env, kErrLoadRegs, "no network interface '" + s->nic + "' in /sys/class/net");
    return env.Undefined();
  }
  double* r = out.Data();
  if (s->stat_fd < 0 || !ReadCpu(s->stat_fd, &r[kRegCpuBusyJiffies], &r[kRegCpuTotalJiffies])) {
    ThrowEngineError(env, kErrLoadRegs, "cannot read the cpu line of /proc/stat");
    return env.Undefined();
  }
  if (!ReadU64File(s->rx_fd, &r[kRegNicRxBytes]) || !ReadU64File(s->tx_fd, &r[kRegNicTxBytes])) {
    ThrowEngineError(env, kErrLoadRegs, "cannot read the byte counters of interface '" + s->nic + "'");
    return env.Undefined();
  }
  double speed = -1;
  char buf[32];
  if (s->speed_fd >= 0 && ReadAt0(s->speed_fd, buf, sizeof(buf)) > 0) {
    char* end = nullptr;
    long v = strtol(buf, &end, 10);
    if (end != buf && v > 0) speed = static_cast<double>(v);
  }
  r[kRegNicSpeedMbps] = speed;
  r[kRegCryptoBusyNs] = static_cast<double>(CryptoBusyNs());
  r[kRegCryptoThreads] = s->crypto_threads;
  r[kRegMonoNs] = static_cast<double>(MonoNs());
  return env.Undefined();
}

Napi::Value SetNicInterface(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) {
    ThrowEngineError(env, kErrBadArgument, "setNicInterface(name): name must be a string");
    return env.Undefined();
  }
  std::string name = info[0].As<Napi::String>().Utf8Value();
  if (!ValidIfName(name)) {
    ThrowEngineError(env, kErrBadArgument, "'" + name + "' is not a valid interface name");
    return env.Undefined();
  }
  if (!OpenNic(&GetEnvState(env)->regs, name)) {
    ThrowEngineError(env, kErrLoadRegs, "no network interface '" + name + "' in /sys/class/net");
    return env.Undefined();
  }
  return env.Undefined();
}

Napi::Value CryptoBusyAddJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    ThrowEngineError(env, kErrBadArgument, "cryptoBusyAdd(ns): ns must be a number");
    return env.Undefined();
  }
  double ns = info[0].As<Napi::Number>().DoubleValue();
  if (!(ns >= 0) || ns > 9.0e15) {
    ThrowEngineError(env, kErrBadArgument, "cryptoBusyAdd(ns): ns must be in 0..9e15");
    return env.Undefined();
  }
  CryptoBusyAdd(static_cast<uint64_t>(ns));
  return env.Undefined();
}

}  // namespace

State::State() : crypto_threads(CryptoThreads()) {}

State::~State() {
  CloseFd(&stat_fd);
  CloseFd(&rx_fd);
  CloseFd(&tx_fd);
  CloseFd(&speed_fd);
}

void CryptoBusyAdd(uint64_t ns) { g_crypto_busy_ns.fetch_add(ns, std::memory_order_relaxed); }

uint64_t CryptoBusyNs() { return g_crypto_busy_ns.load(std::memory_order_relaxed); }

int CryptoThreads() {
  constexpr int kMaxCryptoThreads = 64;
  int cpus = 1;
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    cpus = CPU_COUNT(&set);
  } else {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n > 0) cpus = static_cast<int>(n);
  }
  return cpus < 1 ? 1 : (cpus > kMaxCryptoThreads ? kMaxCryptoThreads : cpus);
}

uint64_t MonoNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

void Init(Napi::Env env, Napi::Object exports) {
  GetEnvState(env);
  exports.Set("readRegs", Napi::Function::New(env, ReadRegs, "readRegs"));
  exports.Set("setNicInterface", Napi::Function::New(env, SetNicInterface, "setNicInterface"));
  exports.Set("cryptoBusyAdd", Napi::Function::New(env, CryptoBusyAddJs, "cryptoBusyAdd"));
  exports.Set("REG_CPU_BUSY_JIFFIES", Napi::Number::New(env, kRegCpuBusyJiffies));
  exports.Set("REG_CPU_TOTAL_JIFFIES", Napi::Number::New(env, kRegCpuTotalJiffies));
  exports.Set("REG_NIC_RX_BYTES", Napi::Number::New(env, kRegNicRxBytes));
  exports.Set("REG_NIC_TX_BYTES", Napi::Number::New(env, kRegNicTxBytes));
  exports.Set("REG_NIC_SPEED_MBPS", Napi::Number::New(env, kRegNicSpeedMbps));
  exports.Set("REG_CRYPTO_BUSY_NS", Napi::Number::New(env, kRegCryptoBusyNs));
  exports.Set("REG_CRYPTO_THREADS", Napi::Number::New(env, kRegCryptoThreads));
  exports.Set("REG_MONO_NS", Napi::Number::New(env, kRegMonoNs));
  exports.Set("REG_COUNT", Napi::Number::New(env, kRegCount));
}

}  // namespace pem::regs
