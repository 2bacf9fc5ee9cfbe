// Power-cut test for the qcow2 driver (issue acceptance: crash safety). Seeded random
// workloads run over a filter that loses power after a random number of requests; the disk
// left behind (the last flushed state plus a random subset of later writes) must pass
// `qemu-img check` without corruption (leaks are allowed), and every byte written before the
// last completed flush and not touched since must read back.
#include "block/filters/powercut.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>

#include "block/formats/qcow2/create.h"
#include "block/test_util.h"
#include "qblock/block_backend.h"

namespace qblock::qcow2 {
namespace {

using testing::LoopTest;
using testing::TempDir;

constexpr uint64_t kGuestSize = 8 << 20;
constexpr uint64_t kSector = 512;

class Qcow2PowerCutTest : public LoopTest,
                          public ::testing::WithParamInterface<std::pair<uint64_t, int>> {
 protected:
  void SetUp() override {
    LoopTest::SetUp();
    if (std::system("qemu-img --version >/dev/null 2>&1") != 0) GTEST_SKIP() << "no qemu-img";
  }

  // One workload; returns a failure description or "".
  std::string run_seed(uint64_t seed, const std::string& base, uint64_t cluster_size) {
    std::mt19937_64 rng(seed);
    const uint64_t cut_after = std::uniform_int_distribution<uint64_t>(3, 400)(rng);
    std::string json = R"({"driver":"qcow2","file":{"driver":"powercut","cut-after":)" +
                       std::to_string(cut_after) +
                       R"(,"file":{"driver":"memory","efficient-zeroes":true,"image":")" + base +
                       "\"}}}";
    NodePtr node = open(json);
    if (!node) return "open failed";
    auto& filter = static_cast<PowerCutFilter&>(*node->primary_child());

    std::vector<uint8_t> model(kGuestSize, 0), flushed(kGuestSize, 0);
    std::vector<bool> dirty(kGuestSize / kSector, false);
    std::uniform_int_distribution<uint64_t> sector(0, kGuestSize / kSector - 1);
    std::uniform_int_distribution<uint64_t> length(1, 256);
    std::uniform_int_distribution<int> kind(0, 9);
    for (int op = 0; op < 80; ++op) {
      const uint64_t off = sector(rng) * kSector;
      const uint64_t len = std::min(length(rng) * kSector, kGuestSize - off);
      const int k = kind(rng);
      Status s;
      if (k <= 5) {
        std::vector<uint8_t> buf(len, static_cast<uint8_t>(rng() | 1));
        s = run_sync(*loop_, node->write(off, IoVec(buf.data(), len)));
        if (s) std::copy(buf.begin(), buf.end(), model.begin() + static_cast<std::ptrdiff_t>(off));
      } else if (k <= 7) {
        RequestFlags flags = k == 7 ? RequestFlags(RequestFlag::kMayUnmap) : RequestFlags();
        s = run_sync(*loop_, node->write_zeroes(off, len, flags));
        if (s) std::fill_n(model.begin() + static_cast<std::ptrdiff_t>(off), len, 0);
      } else {
        s = run_sync(*loop_, node->flush());
        if (s) {
          flushed = model;
          std::fill(dirty.begin(), dirty.end(), false);
        }
        continue;
      }
      // A failed request may still have changed the disk in part: treat its range as dirty.
      for (uint64_t i = off / kSector; i < (off + len) / kSector; ++i) dirty[i] = true;
      if (!s) break;  // the power is gone
    }
    const bool was_cut = filter.cut();
    std::vector<uint8_t> image = filter.crash_image(rng, 0.5);
    (void)run_sync(*loop_, node->close());  // fails after the cut: nothing more reaches "disk"
    (void)was_cut;

    const std::string crashed = dir_.file("crash.qcow2");
    {
      std::ofstream out(crashed, std::ios::binary | std::ios::trunc);
      out.write(reinterpret_cast<const char*>(image.data()),
                static_cast<std::streamsize>(image.size()));
    }
    const std::string cmd = "qemu-img check -q '" + crashed + "' >/dev/null 2>&1";
    const int rc = std::system(cmd.c_str());
    const int code = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
    // qemu-img check: 0 clean, 3 leaks only; 2 means corruption.
    if (code != 0 && code != 3) {
      return "qemu-img check exit " + std::to_string(code) + " (cluster size " +
             std::to_string(cluster_size) + ", cut after " + std::to_string(cut_after) + ")";
    }
    BackendOptions opts;
    opts.filename = crashed;
    opts.format = "qcow2";
    opts.flags.read_only = true;
    auto backend = run_sync(*loop_, BlockBackend::open(*loop_, opts));
    if (!backend) return "reopen failed: " + backend.error().message();
    std::vector<uint8_t> back(kGuestSize);
    Status r = run_sync(*loop_, (*backend)->read(0, IoVec(back.data(), back.size())));
    (void)run_sync(*loop_, (*backend)->close());
    if (!r) return "read failed: " + r.error().message();
    for (uint64_t i = 0; i < dirty.size(); ++i) {
      if (dirty[i]) continue;
      if (!std::equal(back.begin() + static_cast<std::ptrdiff_t>(i * kSector),
                      back.begin() + static_cast<std::ptrdiff_t>((i + 1) * kSector),
                      flushed.begin() + static_cast<std::ptrdiff_t>(i * kSector))) {
        return "flushed data lost at guest offset " + std::to_string(i * kSector);
      }
    }
    return "";
  }

  TempDir dir_;
};

TEST_P(Qcow2PowerCutTest, CrashAtRandomPointKeepsImageConsistentAndFlushedDataIntact) {
  const auto [cluster_size, seeds] = GetParam();
  Qcow2CreateOptions opts;
  opts.filename = dir_.file("base.qcow2");
  opts.size = kGuestSize;
  opts.cluster_size = cluster_size;
  ASSERT_OK(run_sync(*loop_, create_qcow2(*loop_, opts)));
  int failures = 0;
  for (int seed = 0; seed < seeds; ++seed) {
    std::string problem =
        run_seed(static_cast<uint64_t>(seed) * 7919 + cluster_size, opts.filename, cluster_size);
    if (!problem.empty()) {
      ADD_FAILURE() << "seed " << seed << ": " << problem;
      if (++failures >= 5) break;
    }
  }
}

// 2 x 250 = 500 seeded workloads.
INSTANTIATE_TEST_SUITE_P(ClusterSizes, Qcow2PowerCutTest,
                         ::testing::Values(std::pair<uint64_t, int>{65536, 250},
                                           std::pair<uint64_t, int>{4096, 250}));

}  // namespace
}  // namespace qblock::qcow2
