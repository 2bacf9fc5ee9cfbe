// Cluster compression and decompression (see compress.h). Each thread keeps its own zlib and
// zstd contexts: creating them costs more than compressing a small cluster, and the callers
// run on the event loop's worker threads.
#include "block/formats/qcow2/compress.h"

#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#ifdef QBLOCK_HAVE_LIBDEFLATE
#include <libdeflate.h>
#endif

namespace qblock::qcow2 {

namespace {

// §6.2: raw deflate (negative window bits: no zlib header) with a 4 KiB window, as QEMU
// writes and reads it.
constexpr int kWindowBits = -12;

struct Deflater {
  z_stream z{};
  bool ready = false;
  Deflater() {
    ready = deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, kWindowBits, 9,
                         Z_DEFAULT_STRATEGY) == Z_OK;
  }
  ~Deflater() {
    if (ready) deflateEnd(&z);
  }
};

struct Inflater {
  z_stream z{};
  bool ready = false;
  Inflater() { ready = inflateInit2(&z, kWindowBits) == Z_OK; }
  ~Inflater() {
    if (ready) inflateEnd(&z);
  }
};

struct ZstdContexts {
  ZSTD_CCtx* c = ZSTD_createCCtx();
  ZSTD_DCtx* d = ZSTD_createDCtx();
  ~ZstdContexts() {
    ZSTD_freeCCtx(c);
    ZSTD_freeDCtx(d);
  }
};

#ifdef QBLOCK_HAVE_LIBDEFLATE
struct FastInflater {
  libdeflate_decompressor* d = libdeflate_alloc_decompressor();
  ~FastInflater() {
    if (d) libdeflate_free_decompressor(d);
  }
};
thread_local FastInflater t_fast_inflater;
#endif

thread_local Deflater t_deflater;
thread_local Inflater t_inflater;
thread_local ZstdContexts t_zstd;

Status inflate_raw(const uint8_t* src, std::size_t src_len, uint8_t* out, std::size_t out_len) {
#ifdef QBLOCK_HAVE_LIBDEFLATE
  // The common case, a whole stream ending in its final block that yields exactly the
  // cluster, through libdeflate; anything else (a stream zlib accepts because it filled the
  // cluster before its end) falls back to zlib below.
  if (t_fast_inflater.d && libdeflate_deflate_decompress(t_fast_inflater.d, src, src_len, out,
                                                         out_len, nullptr) == LIBDEFLATE_SUCCESS) {
    return ok();
  }
#endif
  z_stream& z = t_inflater.z;
  if (!t_inflater.ready || inflateReset(&z) != Z_OK) return fail(Error::io("inflateInit2 failed"));
  z.next_in = const_cast<Bytef*>(src);
  z.avail_in = static_cast<uInt>(src_len);
  z.next_out = out;
  z.avail_out = static_cast<uInt>(out_len);
  int r = inflate(&z, Z_FINISH);
  const bool complete = z.avail_out == 0 && (r == Z_STREAM_END || r == Z_OK || r == Z_BUF_ERROR);
  if (!complete) return fail(Error::io("corrupt zlib-compressed cluster"));
  return ok();
}

Status zstd_stream(const uint8_t* src, std::size_t src_len, uint8_t* out, std::size_t out_len) {
  ZSTD_DCtx* ctx = t_zstd.d;
  if (!ctx) return fail(Error::io("ZSTD_createDCtx failed"));
  ZSTD_DCtx_reset(ctx, ZSTD_reset_session_only);
  ZSTD_inBuffer in{src, src_len, 0};
  ZSTD_outBuffer o{out, out_len, 0};
  // §6.2: decompress (possibly several frames) until a full cluster is produced.
  while (o.pos < o.size) {
    std::size_t r = ZSTD_decompressStream(ctx, &o, &in);
    if (ZSTD_isError(r)) break;
    if (in.pos == in.size && o.pos < o.size && r != 0) break;
    if (r == 0 && in.pos == in.size) break;
  }
  if (o.pos != o.size) return fail(Error::io("corrupt zstd-compressed cluster"));
  return ok();
}

}  // namespace

Result<std::vector<uint8_t>> compress_cluster(CompressionType type, const uint8_t* src,
                                              std::size_t len, std::size_t max_len) {
  std::vector<uint8_t> out(max_len);
  if (type == CompressionType::kZstd) {
    if (!t_zstd.c) return fail(Error::io("ZSTD_createCCtx failed"));
    const std::size_t n =
        ZSTD_compressCCtx(t_zstd.c, out.data(), max_len, src, len, ZSTD_CLEVEL_DEFAULT);
    if (ZSTD_isError(n)) {
      if (ZSTD_getErrorCode(n) == ZSTD_error_dstSize_tooSmall) return std::vector<uint8_t>{};
      return fail(Error::io("zstd compression failed"));
    }
    out.resize(n);
    return out;
  }
  z_stream& z = t_deflater.z;
  if (!t_deflater.ready || deflateReset(&z) != Z_OK) return fail(Error::io("deflateInit2 failed"));
  z.next_in = const_cast<Bytef*>(src);
  z.avail_in = static_cast<uInt>(len);
  z.next_out = out.data();
  z.avail_out = static_cast<uInt>(max_len);
  const int r = deflate(&z, Z_FINISH);
  const std::size_t produced = max_len - z.avail_out;
  if (r != Z_STREAM_END) return std::vector<uint8_t>{};  // did not fit
  out.resize(produced);
  return out;
}

Status decompress_cluster(CompressionType type, const uint8_t* src, std::size_t src_len,
                          uint8_t* out, std::size_t out_len) {
  if (type == CompressionType::kZstd) return zstd_stream(src, src_len, out, out_len);
  return inflate_raw(src, src_len, out, out_len);
}

}  // namespace qblock::qcow2
