// Stress test for allocating writes (issue acceptance for cluster-space preallocation): 64
// random, overlapping writes of 512 B to 256 KiB at a time into a fresh qcow2 image on a real
// file, with the default features on (the preallocate filter, zero COW through ALLOCATE,
// writes straight into clusters still being linked), with and without a backing file, through
// the page cache and with O_DIRECT (where writes not aligned to the file system block go
// through the file node's WriteCoalescer, held back and merged).
// Overlapping writes in flight together may land in either order, so after each batch every
// byte must hold the value of one of the writes covering it (or its old value if none does);
// then the image must check clean and equal the model in QEMU's eyes.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <tuple>

#include "block/formats/qcow2/create.h"
#include "block/test_util.h"
#include "qblock/block_backend.h"

namespace qblock::qcow2 {
namespace {

using testing::LoopTest;
using testing::TempDir;

constexpr uint64_t kSize = 64 << 20;
constexpr int kDepth = 64;
constexpr int kBatches = 30;

struct Piece {
  uint64_t offset;
  std::vector<uint8_t> data;  // filled with the piece's id (1..kDepth)
};

Task<void> write_piece(BlockNode& node, Piece* piece, int* failures) {
  Status s = co_await node.write(piece->offset, IoVec(piece->data.data(), piece->data.size()));
  if (!s) ++*failures;
}

// Parameters: with a backing file; cache=none (O_DIRECT).
class Qcow2StressTest : public LoopTest,
                        public ::testing::WithParamInterface<std::tuple<bool, bool>> {
 protected:
  void SetUp() override {
    LoopTest::SetUp();
    if (std::system("qemu-img --version >/dev/null 2>&1") != 0) GTEST_SKIP() << "no qemu-img";
  }
  TempDir dir_;
};

TEST_P(Qcow2StressTest, Depth64OverlappingWritesMatchTheModel) {
  const auto [with_backing, direct] = GetParam();
  const std::string image = dir_.file("stress.qcow2");
  const std::string base = dir_.file("base.raw");
  std::vector<uint8_t> model(kSize, 0);
  Qcow2CreateOptions opts;
  opts.filename = image;
  opts.size = kSize;
  if (with_backing) {
    for (uint64_t i = 0; i < kSize; ++i) model[i] = static_cast<uint8_t>(0x80 | (i >> 12));
    std::ofstream(base, std::ios::binary)
        .write(reinterpret_cast<const char*>(model.data()), static_cast<std::streamsize>(kSize));
    opts.backing_file = base;
    opts.backing_fmt = "raw";
  }
  ASSERT_OK(run_sync(*loop_, create_qcow2(*loop_, opts)));
  OpenFlags flags;
  flags.direct = direct;
  NodePtr node =
      open(R"({"driver":"qcow2","file":{"driver":"file","filename":")" + image + R"("}})", flags);
  ASSERT_TRUE(node);
  ASSERT_EQ(node->primary_child()->driver_name(), "preallocate");  // on by default

  std::mt19937_64 rng((with_backing ? 7 : 3) + (direct ? 10 : 0));
  // Writes cluster around a few hot spots so that many land in the same new clusters.
  std::uniform_int_distribution<uint64_t> sectors(1, 512);  // 512 B .. 256 KiB
  for (int batch = 0; batch < kBatches; ++batch) {
    const uint64_t hot = (rng() % (kSize / (4 << 20))) * (4 << 20);
    std::vector<Piece> pieces(kDepth);
    for (int i = 0; i < kDepth; ++i) {
      const uint64_t len = sectors(rng) * 512;
      const uint64_t off = std::min(hot + (rng() % 4096) * 512, kSize - len);
      pieces[i].offset = off;
      pieces[i].data.assign(len, static_cast<uint8_t>(i + 1));
    }
    int failures = 0;
    std::vector<Task<void>> tasks;
    for (Piece& p : pieces) tasks.push_back(write_piece(*node, &p, &failures));
    run_sync(*loop_, when_all(std::move(tasks)));
    ASSERT_EQ(failures, 0);
    // Every byte of the hot area: one of the covering writes, or unchanged.
    const uint64_t lo = hot, hi = std::min(hot + (4 << 20) + (256 << 10), kSize);
    std::vector<uint8_t> back(hi - lo);
    ASSERT_OK(run_sync(*loop_, node->read(lo, IoVec(back.data(), back.size()))));
    // Pieces are sector-aligned, so which pieces cover a byte is a property of its sector.
    std::vector<uint64_t> covering((hi - lo) / 512, 0);  // bit i: piece i covers the sector
    for (int i = 0; i < kDepth; ++i) {
      const uint64_t first = (pieces[i].offset - lo) / 512;
      for (uint64_t k = 0; k < pieces[i].data.size() / 512; ++k) {
        covering[first + k] |= uint64_t{1} << i;
      }
    }
    for (uint64_t b = 0; b < back.size(); ++b) {
      const uint8_t v = back[b];
      const uint64_t c = covering[b / 512];
      const bool ok = c == 0 ? v == model[lo + b] : v >= 1 && v <= kDepth && (c >> (v - 1)) & 1;
      if (!ok) FAIL() << "batch " << batch << " byte " << lo + b << " holds " << int(v);
    }
    std::copy(back.begin(), back.end(), model.begin() + static_cast<std::ptrdiff_t>(lo));
    if (batch % 10 == 9) ASSERT_OK(run_sync(*loop_, node->flush()));
  }
  // The rest of the image was not touched.
  std::vector<uint8_t> all(kSize);
  ASSERT_OK(run_sync(*loop_, node->read(0, IoVec(all.data(), all.size()))));
  ASSERT_TRUE(all == model);
  close(*node);

  const std::string model_file = dir_.file("model.raw");
  std::ofstream(model_file, std::ios::binary)
      .write(reinterpret_cast<const char*>(model.data()), static_cast<std::streamsize>(kSize));
  EXPECT_EQ(std::system(("qemu-img check -q " + image).c_str()), 0);
  EXPECT_EQ(std::system(("qemu-img compare -q -F raw " + image + " " + model_file).c_str()), 0);
}

INSTANTIATE_TEST_SUITE_P(BackingAndCache, Qcow2StressTest,
                         ::testing::Combine(::testing::Bool(), ::testing::Bool()),
                         [](const ::testing::TestParamInfo<std::tuple<bool, bool>>& info) {
                           return std::string(std::get<0>(info.param) ? "RawBacking"
                                                                      : "NoBacking") +
                                  (std::get<1>(info.param) ? "Direct" : "Cached");
                         });

}  // namespace
}  // namespace qblock::qcow2
