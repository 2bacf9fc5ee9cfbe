// compress_cluster/decompress_cluster: round trips for zlib and zstd, the "does not shrink"
// answer, streams QEMU reads (raw deflate with a 4 KiB window), and use from several threads
// at once (each keeps its own contexts).
#include "block/formats/qcow2/compress.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <cstring>
#include <random>
#include <thread>
#include <vector>

namespace qblock::qcow2 {
namespace {

constexpr std::size_t kCluster = 65536;

std::vector<uint8_t> text_cluster(int seed) {
  std::vector<uint8_t> v(kCluster);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<uint8_t>('a' + (i * 7 + seed) % 23);
  return v;
}

std::vector<uint8_t> noise_cluster(unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> v(kCluster);
  for (uint8_t& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

TEST(Compress, RoundTripsBothTypes) {
  for (CompressionType type : {CompressionType::kZlib, CompressionType::kZstd}) {
    const std::vector<uint8_t> plain = text_cluster(3);
    Result<std::vector<uint8_t>> packed =
        compress_cluster(type, plain.data(), kCluster, kCluster - 1);
    ASSERT_TRUE(packed.has_value());
    ASSERT_FALSE(packed->empty());
    EXPECT_LT(packed->size(), kCluster / 4);
    // Trailing bytes after the stream (the rest of its last sector) are ignored.
    std::vector<uint8_t> in = *packed;
    in.resize(in.size() + 300, 0xee);
    std::vector<uint8_t> out(kCluster);
    ASSERT_TRUE(decompress_cluster(type, in.data(), in.size(), out.data(), kCluster));
    EXPECT_EQ(out, plain);
  }
}

TEST(Compress, NoiseDoesNotShrink) {
  const std::vector<uint8_t> plain = noise_cluster(1);
  for (CompressionType type : {CompressionType::kZlib, CompressionType::kZstd}) {
    Result<std::vector<uint8_t>> packed =
        compress_cluster(type, plain.data(), kCluster, kCluster - 1);
    ASSERT_TRUE(packed.has_value());
    EXPECT_TRUE(packed->empty());
  }
}

TEST(Compress, ZlibStreamInflatesWithAFourKiBWindow) {
  const std::vector<uint8_t> plain = text_cluster(5);
  Result<std::vector<uint8_t>> packed =
      compress_cluster(CompressionType::kZlib, plain.data(), kCluster, kCluster - 1);
  ASSERT_TRUE(packed.has_value() && !packed->empty());
  z_stream z{};
  ASSERT_EQ(inflateInit2(&z, -12), Z_OK);
  std::vector<uint8_t> out(kCluster);
  z.next_in = packed->data();
  z.avail_in = static_cast<uInt>(packed->size());
  z.next_out = out.data();
  z.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(inflate(&z, Z_FINISH), Z_STREAM_END);
  inflateEnd(&z);
  EXPECT_EQ(out, plain);
}

TEST(Compress, CorruptStreamsFail) {
  std::vector<uint8_t> junk(100, 0xff);
  std::vector<uint8_t> out(kCluster);
  for (CompressionType type : {CompressionType::kZlib, CompressionType::kZstd}) {
    Status s = decompress_cluster(type, junk.data(), junk.size(), out.data(), kCluster);
    ASSERT_FALSE(s);
    EXPECT_EQ(s.error().errnum(), EIO);
  }
}

TEST(Compress, SeveralThreadsAtOnce) {
  std::vector<std::jthread> threads;
  std::vector<int> good(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([t, &good] {
      for (int i = 0; i < 20; ++i) {
        const auto type = (i + t) % 2 ? CompressionType::kZstd : CompressionType::kZlib;
        const std::vector<uint8_t> plain = text_cluster(t * 100 + i);
        Result<std::vector<uint8_t>> packed =
            compress_cluster(type, plain.data(), kCluster, kCluster - 1);
        if (!packed || packed->empty()) continue;
        std::vector<uint8_t> out(kCluster);
        if (decompress_cluster(type, packed->data(), packed->size(), out.data(), kCluster) &&
            out == plain) {
          ++good[t];
        }
      }
    });
  }
  threads.clear();
  for (int g : good) EXPECT_EQ(g, 20);
}

}  // namespace
}  // namespace qblock::qcow2
