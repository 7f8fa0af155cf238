// x86 CPU features as OpenSSL's capability vector sees them, honouring OPENSSL_ia32cap masking (for engine.info()).
#pragma once

#include <string>

namespace pem::engine {

struct CpuFeatures {
  bool aes = false;         // AES-NI            CPUID.1:ECX.25  (OPENSSL_ia32cap bit 57)
  bool pclmul = false;      // PCLMULQDQ         CPUID.1:ECX.1   (bit 33)
  bool ssse3 = false;       // SSSE3 (vpaes)     CPUID.1:ECX.9   (bit 41)
  bool avx = false;         // AVX + OS support  CPUID.1:ECX.28  (bit 60)
  bool avx2 = false;        // AVX2              CPUID.7:EBX.5   (second word, bit 5)
  bool avx512f = false;     // AVX-512F          CPUID.7:EBX.16
  bool vaes = false;        // VAES              CPUID.7:ECX.9   (second word, bit 41)
  bool vpclmulqdq = false;  // VPCLMULQDQ        CPUID.7:ECX.10  (second word, bit 42)
  std::string mask;         // the OPENSSL_ia32cap value in effect ("" when unset)
};

// Reads CPUID/XGETBV, then applies OPENSSL_ia32cap the way OpenSSL 3.0's OPENSSL_cpuid_setup does:
// "~X" clears bits of the first 64-bit word (CPUID.1 EDX|ECX<<32), a plain value replaces it, and when no ":Y"
// part is given the leaf-7 word is zeroed; ":~Y" clears / ":Y" replaces the leaf-7 word (EBX|ECX<<32).
CpuFeatures DetectCpu();

// Which implementation OpenSSL's default provider picks for the cipher on this CPU: "aesni", "vpaes", "generic"
// (AES-GCM; "+ghash4bit" when PCLMULQDQ is off), or "avx512", "avx2", "ssse3", "generic" (ChaCha20-Poly1305).
std::string CodePath(const CpuFeatures& f, bool chacha);

}  // namespace pem::engine
