// Compressed clusters (qcow2-format.md §6): compression and decompression of one cluster for
// zlib (raw deflate, window bits -12) and zstd. Both functions are pure and may run on any
// thread at once (each thread keeps its own library contexts).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "qblock/error.h"

namespace qblock::qcow2 {

enum class CompressionType : uint8_t { kZlib = 0, kZstd = 1 };

// Decompresses from `src` (up to `src_len` bytes; trailing bytes beyond the stream are
// ignored, §6.1) until exactly `out_len` bytes were produced into `out`. Errors: EIO when the
// stream is malformed or ends early.
Status decompress_cluster(CompressionType type, const uint8_t* src, std::size_t src_len,
                          uint8_t* out, std::size_t out_len);

// Compresses `len` bytes. Returns the compressed stream, or an empty vector when it would not
// be shorter than `max_len` bytes (the caller then stores the cluster uncompressed, as QEMU
// does). Errors: EIO if the library fails.
Result<std::vector<uint8_t>> compress_cluster(CompressionType type, const uint8_t* src,
                                              std::size_t len, std::size_t max_len);

}  // namespace qblock::qcow2
