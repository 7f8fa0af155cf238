// CPU feature detection mirroring OpenSSL's x86 capability vector and its OPENSSL_ia32cap environment masking.
#include "cpu_features.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define PEM_X86 1
#endif

namespace pem::engine {

namespace {

uint64_t ParseU64(const char* s) { return strtoull(s, nullptr, 0); }  // 0x.., 0.., decimal, like ossl_strtouint64

#ifdef PEM_X86
uint64_t Xgetbv0() {
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<uint64_t>(hi) << 32) | lo;
}
#endif

}  // namespace

CpuFeatures DetectCpu() {
  CpuFeatures f;
  uint64_t w0 = 0;  // CPUID.1: EDX | ECX << 32
  uint64_t w1 = 0;  // CPUID.7.0: EBX | ECX << 32
#ifdef PEM_X86
  unsigned a, b, c, d;
  if (__get_cpuid(1, &a, &b, &c, &d)) w0 = d | (static_cast<uint64_t>(c) << 32);
  if (__get_cpuid_max(0, nullptr) >= 7) {
    __cpuid_count(7, 0, a, b, c, d);
    w1 = b | (static_cast<uint64_t>(c) << 32);
  }
  // Like OpenSSL: AVX-class bits only count when the OS saves the YMM (and ZMM) state.
  uint64_t xcr0 = (w0 >> 32) & (1u << 27) ? Xgetbv0() : 0;
  if ((xcr0 & 6) != 6) {
    w0 &= ~(1ull << 60);
    w1 &= ~((1ull << 5) | (1ull << 16) | (1ull << 41) | (1ull << 42));
  }
  if ((xcr0 & 0xe6) != 0xe6) w1 &= ~(1ull << 16);
#endif
  if (const char* env = getenv("OPENSSL_ia32cap")) {
    f.mask = env;
    if (env[0] == '~') {
      w0 &= ~ParseU64(env + 1);
    } else if (env[0] != ':') {
      w0 = ParseU64(env);
    }
    const char* x = strchr(env, ':');
    if (x == nullptr) {
      w1 = 0;
    } else if (x[1] == '~') {
      w1 &= ~ParseU64(x + 2);
    } else {
      w1 = ParseU64(x + 1);
    }
  }
  f.pclmul = (w0 >> 33) & 1;
  f.ssse3 = (w0 >> 41) & 1;
  f.aes = (w0 >> 57) & 1;
  f.avx = (w0 >> 60) & 1;
  f.avx2 = f.avx && ((w1 >> 5) & 1);
  f.avx512f = f.avx && ((w1 >> 16) & 1);
  f.vaes = f.avx && ((w1 >> 41) & 1);
  f.vpclmulqdq = f.avx && ((w1 >> 42) & 1);
  return f;
}

std::string CodePath(const CpuFeatures& f, bool chacha) {
  if (chacha) {
    if (f.avx512f) return "avx512";
    if (f.avx2) return "avx2";
    if (f.ssse3) return "ssse3";
    return "generic";
  }
  std::string p = f.aes ? "aesni" : f.ssse3 ? "vpaes" : "generic";
  if (!f.pclmul) p += "+ghash4bit";
  return p;
}

}  // namespace pem::engine
