// Per-block compression: zstd and lz4 (Debian's system libraries) and zlib (the copy node exports), in batches over
// caller-owned buffers. Contexts are reused per thread; every size is bounds-checked, so garbage never overflows.
//
// compress(codec, level, input, lens, out, outLens) -> bytes written to out
//   out holds the compressed blocks packed back to back; outLens[i] = compressed size, or 0 when block i did not
//   shrink (nothing is written for it: the caller stores it raw). out must hold at least sum(lens) bytes.
// decompress(codec, input, lens, out, outLens) -> total bytes produced
//   outLens[i] in: the room of block i (its slot in out starts at the sum of the rooms before it);
//   outLens[i] out: the bytes block i decompressed to. A block needing more than its room, or garbage, is
//   ENGINE_ERR_COMPRESS with `index`.
// Formats: zstd frames (ZSTD_compressCCtx), raw LZ4 blocks (LZ4_compress_fast_extState, level = acceleration),
// zlib streams (RFC 1950, window 15: what node:zlib deflateSync/inflateSync speak).
#include <lz4.h>
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "batch_worker.h"
#include "crypto_engine.h"
#include "errors.h"

namespace pem::engine {

namespace {

enum class Codec { kZstd, kLz4, kZlib };

// Per-thread compression contexts, created on first use (see ThreadCipherCtx in crypto_engine.cc).
struct ThreadCodecs {
  ZSTD_CCtx* zc = nullptr;
  ZSTD_DCtx* zd = nullptr;
  void* lz4 = nullptr;
  z_stream def{};
  z_stream inf{};
  bool def_ready = false, inf_ready = false;
  int def_level = 0;
  ~ThreadCodecs() {
    ZSTD_freeCCtx(zc);
    ZSTD_freeDCtx(zd);
    free(lz4);
    if (def_ready) deflateEnd(&def);
    if (inf_ready) inflateEnd(&inf);
  }
};
thread_local ThreadCodecs t_codecs;

struct CodecJob {
  Codec codec = Codec::kZstd;
  bool compress = true;
  int level = 0;
  const uint8_t* in = nullptr;
  size_t in_len = 0;
  uint8_t* out = nullptr;
  size_t out_len = 0;
  const uint32_t* lens = nullptr;
  uint32_t* out_lens = nullptr;
  size_t n = 0;
  JobResult result;

  void Run() {
    size_t in_off = 0, out_off = 0;
    double total = 0;
    for (size_t i = 0; i < n && result.code == nullptr; i++) {
      const size_t len = lens[i];
      if (in_off + len > in_len) {
        result.Fail(kErrBadLength, "block lengths do not fit the input", static_cast<int64_t>(i));
        break;
      }
      if (compress) {
        // Only a strictly smaller result is kept, so the output never outgrows sum(lens).
        size_t cap = len == 0 ? 0 : len - 1;
        if (out_off + cap > out_len) cap = out_len - out_off;
        size_t got = cap == 0 ? 0 : Compress(in + in_off, len, out + out_off, cap, i);
        out_lens[i] = static_cast<uint32_t>(got);
        out_off += got;
        total += got;
      } else {
        const size_t room = out_lens[i];
        if (out_off + room > out_len) {
          result.Fail(kErrBadLength, "block rooms do not fit the output", static_cast<int64_t>(i));
          break;
        }
        size_t got = Decompress(in + in_off, len, out + out_off, room, i);
        if (result.code != nullptr) break;
        out_lens[i] = static_cast<uint32_t>(got);
        out_off += room;
        total += got;
      }
      in_off += len;
    }
    result.value = total;
  }

  // Returns the compressed size, or 0 when the block does not fit in cap (= did not shrink).
  size_t Compress(const uint8_t* src, size_t len, uint8_t* dst, size_t cap, size_t i) {
    ThreadCodecs& t = t_codecs;
    switch (codec) {
      case Codec::kZstd: {
        if (t.zc == nullptr && (t.zc = ZSTD_createCCtx()) == nullptr) return Fail("zstd: out of memory", i);
        size_t r = ZSTD_compressCCtx(t.zc, dst, cap, src, len, level);
        if (!ZSTD_isError(r)) return r;
        if (ZSTD_getErrorCode(r) == ZSTD_error_dstSize_tooSmall) return 0;
        return Fail(std::string("zstd: ") + ZSTD_getErrorName(r), i);
      }
      case Codec::kLz4: {
        if (t.lz4 == nullptr && (t.lz4 = malloc(LZ4_sizeofState())) == nullptr) return Fail("lz4: out of memory", i);
        int r = LZ4_compress_fast_extState(t.lz4, reinterpret_cast<const char*>(src), reinterpret_cast<char*>(dst),
                                           static_cast<int>(len), static_cast<int>(cap), level);
        return r > 0 ? static_cast<size_t>(r) : 0;  // 0: no room (the block is at most 1 GiB, below LZ4's limit)
      }
      case Codec::kZlib: {
        if (!t.def_ready) {
          if (deflateInit2(&t.def, level, Z_DEFLATED, 15, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
            return Fail("zlib: deflateInit2 failed", i);
          }
          t.def_ready = true;
          t.def_level = level;
        } else if (deflateReset(&t.def) != Z_OK ||
                   (t.def_level != level && deflateParams(&t.def, level, Z_DEFAULT_STRATEGY) != Z_OK)) {
          return Fail("zlib: deflateReset failed", i);
        }
        t.def_level = level;
        t.def.next_in = const_cast<Bytef*>(src);
        t.def.avail_in = static_cast<uInt>(len);
        t.def.next_out = dst;
        t.def.avail_out = static_cast<uInt>(cap);
        int r = deflate(&t.def, Z_FINISH);
        if (r == Z_STREAM_END) return cap - t.def.avail_out;
        if (r == Z_OK || r == Z_BUF_ERROR) return 0;
        return Fail("zlib: deflate failed", i);
      }
    }
    return 0;
  }

  size_t Decompress(const uint8_t* src, size_t len, uint8_t* dst, size_t room, size_t i) {
    ThreadCodecs& t = t_codecs;
    if (len == 0) return Fail("empty block (compress never writes one: 0 in outLens means stored raw)", i);
    switch (codec) {
      case Codec::kZstd: {
        if (t.zd == nullptr && (t.zd = ZSTD_createDCtx()) == nullptr) return Fail("zstd: out of memory", i);
        size_t r = ZSTD_decompressDCtx(t.zd, dst, room, src, len);
        if (ZSTD_isError(r)) return Fail(std::string("zstd: ") + ZSTD_getErrorName(r), i);
        return r;
      }
      case Codec::kLz4: {
        int r = LZ4_decompress_safe(reinterpret_cast<const char*>(src), reinterpret_cast<char*>(dst),
                                    static_cast<int>(len), static_cast<int>(room));
        if (r < 0) return Fail("lz4: malformed block or more than its room", i);
        return static_cast<size_t>(r);
      }
      case Codec::kZlib: {
        if (!t.inf_ready) {
          if (inflateInit2(&t.inf, 15) != Z_OK) return Fail("zlib: inflateInit2 failed", i);
          t.inf_ready = true;
        } else if (inflateReset(&t.inf) != Z_OK) {
          return Fail("zlib: inflateReset failed", i);
        }
        t.inf.next_in = const_cast<Bytef*>(src);
        t.inf.avail_in = static_cast<uInt>(len);
        t.inf.next_out = dst;
        t.inf.avail_out = static_cast<uInt>(room);
        int r = inflate(&t.inf, Z_FINISH);
        if (r != Z_STREAM_END || t.inf.avail_in != 0) {
          return Fail(r == Z_BUF_ERROR && t.inf.avail_out == 0 ? "zlib: block is larger than its room"
                                                               : "zlib: malformed block",
                      i);
        }
        return room - t.inf.avail_out;
      }
    }
    return 0;
  }

  size_t Fail(std::string msg, size_t i) {
    result.Fail(kErrCompress, "block " + std::to_string(i) + ": " + msg, static_cast<int64_t>(i));
    return 0;
  }
};

bool ParseCodec(const Napi::Value& v, Codec* c) {
  if (!v.IsString()) return false;
  std::string s = v.As<Napi::String>().Utf8Value();
  if (s == "zstd") *c = Codec::kZstd;
  else if (s == "lz4") *c = Codec::kLz4;
  else if (s == "zlib") *c = Codec::kZlib;
  else return false;
  return true;
}

bool LevelOk(Codec c, double l) {
  if (l != static_cast<double>(static_cast<int>(l))) return false;
  switch (c) {
    case Codec::kZstd: return l >= ZSTD_minCLevel() && l <= ZSTD_maxCLevel() && l != 0;
    case Codec::kLz4: return l >= 1 && l <= 65537;
    case Codec::kZlib: return l >= 1 && l <= 9;
  }
  return false;
}

// compress(codec, level, input, lens, out, outLens) / decompress(codec, input, lens, out, outLens)
Napi::Value CodecBatch(const Napi::CallbackInfo& info, bool compress, bool async) {
  Napi::Env env = info.Env();
  auto job = std::make_unique<CodecJob>();
  const size_t a = compress ? 1 : 0;  // argument shift: compress has a level
  uint8_t *in, *out;
  uint32_t *lens, *out_lens;
  size_t n, n_out;
  if (info.Length() < 5 + a || !ParseCodec(info[0], &job->codec) || (compress && !info[1].IsNumber()) ||
      !BytesArg(info[1 + a], &in, &job->in_len) || !U32Arg(info[2 + a], &lens, &n) ||
      !BytesArg(info[3 + a], &out, &job->out_len) || !U32Arg(info[4 + a], &out_lens, &n_out)) {
    ThrowEngineError(env, kErrBadArgument,
                     compress ? "compress(codec: 'zstd'|'lz4'|'zlib', level, input, lens, out, outLens)"
                              : "decompress(codec: 'zstd'|'lz4'|'zlib', input, lens, out, outLens)");
    return env.Undefined();
  }
  if (compress) {
    double level = info[1].As<Napi::Number>().DoubleValue();
    if (!LevelOk(job->codec, level)) {
      ThrowEngineError(env, kErrBadArgument, "level out of range for this codec");
      return env.Undefined();
    }
    job->level = static_cast<int>(level);
  }
  uint64_t sum = 0, rooms = 0;
  for (size_t i = 0; i < n; i++) {
    if (lens[i] > kMaxBlock) {
      ThrowEngineError(env, kErrBadLength, "a block is longer than 1 GiB");
      return env.Undefined();
    }
    sum += lens[i];
    if (!compress && i < n_out) {
      if (out_lens[i] > kMaxBlock) {
        ThrowEngineError(env, kErrBadLength, "a block room is larger than 1 GiB");
        return env.Undefined();
      }
      rooms += out_lens[i];
    }
  }
  if (n_out != n || sum != job->in_len || (compress ? job->out_len < sum : job->out_len < rooms)) {
    ThrowEngineError(env, kErrBadLength,
                     compress ? "need outLens.length == lens.length, input == sum(lens), out >= sum(lens)"
                              : "need outLens.length == lens.length, input == sum(lens), out >= sum(outLens)");
    return env.Undefined();
  }
  if (Overlaps(in, job->in_len, out, job->out_len)) {
    ThrowEngineError(env, kErrBadArgument, "input and out overlap");
    return env.Undefined();
  }
  job->compress = compress;
  job->in = in;
  job->out = out;
  job->lens = lens;
  job->out_lens = out_lens;
  job->n = n;
  if (!async) return RunSync(env, job.get());
  return RunAsync(env, std::move(job),
                  {info[1 + a].As<Napi::Object>(), info[2 + a].As<Napi::Object>(), info[3 + a].As<Napi::Object>(),
                   info[4 + a].As<Napi::Object>()});
}

Napi::Value CompressSync(const Napi::CallbackInfo& info) { return CodecBatch(info, true, false); }
Napi::Value CompressAsync(const Napi::CallbackInfo& info) { return CodecBatch(info, true, true); }
Napi::Value DecompressSync(const Napi::CallbackInfo& info) { return CodecBatch(info, false, false); }
Napi::Value DecompressAsync(const Napi::CallbackInfo& info) { return CodecBatch(info, false, true); }

// The levels lib/native/compress.ts uses by default (DEFAULT_LEVEL), for blocks sealed natively.
int DefaultLevel(Codec c) { return c == Codec::kZstd ? 3 : c == Codec::kLz4 ? 1 : 6; }

bool CodecOfHeader(uint8_t id, Codec* c) {
  if (id < 1 || id > 3) return false;
  *c = id == 1 ? Codec::kZstd : id == 2 ? Codec::kLz4 : Codec::kZlib;
  return true;
}

}  // namespace

namespace {

// One block through a CodecJob (the batch code with n = 1). *out_len: in, room for decompression; out, bytes made.
bool RunOne(CodecJob& job, const uint8_t* in, size_t len, uint8_t* out, size_t cap, uint32_t* out_len) {
  const uint32_t in_len = static_cast<uint32_t>(len);
  job.in = in;
  job.in_len = len;
  job.out = out;
  job.out_len = cap;
  job.lens = &in_len;
  job.out_lens = out_len;
  job.n = 1;
  job.Run();
  return job.result.code == nullptr;
}

}  // namespace

size_t CompressBlock(uint8_t codec, const uint8_t* in, size_t len, uint8_t* out, size_t cap) {
  CodecJob job;
  uint32_t out_len = 0;
  if (!CodecOfHeader(codec, &job.codec) || len > kMaxBlock) return 0;
  job.level = DefaultLevel(job.codec);
  return RunOne(job, in, len, out, cap, &out_len) ? out_len : 0;
}

int64_t DecompressBlock(uint8_t codec, const uint8_t* in, size_t len, uint8_t* out, size_t room) {
  CodecJob job;
  uint32_t out_len = static_cast<uint32_t>(room);
  if (!CodecOfHeader(codec, &job.codec) || len > kMaxBlock || room > kMaxBlock) return -1;
  job.compress = false;
  return RunOne(job, in, len, out, room, &out_len) ? static_cast<int64_t>(out_len) : -1;
}

void InitCompress(Napi::Env env, Napi::Object exports) {
  exports.Set("compress", Napi::Function::New(env, CompressSync, "compress"));
  exports.Set("compressAsync", Napi::Function::New(env, CompressAsync, "compressAsync"));
  exports.Set("decompress", Napi::Function::New(env, DecompressSync, "decompress"));
  exports.Set("decompressAsync", Napi::Function::New(env, DecompressAsync, "decompressAsync"));
}

}  // namespace pem::engine
