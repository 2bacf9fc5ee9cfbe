// Power cuts while a qcow2 image grows over a longer backing file. The grow zeroes the new
// area (zero clusters, and a COW of the old last cluster) before the header gets the new size,
// so whatever reaches the disk, the image passes qemu-img check and either keeps its old size
// or reads the new area as zeros: never as the backing file's data.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "block/filters/powercut.h"
#include "block/formats/qcow2/create.h"
#include "block/test_util.h"
#include "qblock/block_backend.h"

namespace qblock::qcow2 {
namespace {

using testing::LoopTest;
using testing::TempDir;

constexpr uint64_t kBackingSize = 2 << 20;
constexpr uint64_t kOldSize = 300032;  // inside the fifth 64 KiB cluster
constexpr uint64_t kNewSize = 2 << 20;
constexpr uint8_t kBackingByte = 0xaa;

class Qcow2GrowPowerCutTest : public LoopTest {
 protected:
  void SetUp() override {
    LoopTest::SetUp();
    if (std::system("qemu-img --version >/dev/null 2>&1") != 0) GTEST_SKIP() << "no qemu-img";
    backing_ = dir_.file("backing.raw");
    std::ofstream(backing_, std::ios::binary)
        .write(std::string(kBackingSize, static_cast<char>(kBackingByte)).data(), kBackingSize);
    // The overlay names no backing file: the tests attach it through the "backing" option,
    // so that qemu-img check judges the crash images on their own.
    top_ = dir_.file("top.qcow2");
    Qcow2CreateOptions opts;
    opts.filename = top_;
    opts.size = kOldSize;
    ASSERT_OK(run_sync(*loop_, create_qcow2(*loop_, opts)));
  }

  std::string backing_json() const {
    return R"("backing":{"driver":"raw","file":{"driver":"file","filename":")" + backing_ + "\"}}";
  }

  // Grows the overlay with the power gone after `cut_after` modifying requests and returns a
  // failure description or "" for the crash image drawn with `rng`.
  std::string cut_and_judge(uint64_t cut_after, std::mt19937_64& rng) {
    NodePtr node = open(R"({"driver":"qcow2",)" + backing_json() +
                        R"(,"file":{"driver":"powercut","cut-after":)" + std::to_string(cut_after) +
                        R"(,"file":{"driver":"memory","async":true,"image":")" + top_ + "\"}}}");
    if (!node) return "open failed";
    auto& filter = static_cast<PowerCutFilter&>(*node->primary_child());
    Status grown = run_sync(*loop_, node->truncate(kNewSize, PreallocMode::kOff));
    if (grown) (void)run_sync(*loop_, node->flush());
    std::vector<uint8_t> image = filter.crash_image(rng, 0.5);
    (void)run_sync(*loop_, node->close());
    if (!filter.cut() && !grown)
      return "grow failed without a power cut: " + grown.error().message();

    const std::string crashed = dir_.file("crash.qcow2");
    std::ofstream(crashed, std::ios::binary | std::ios::trunc)
        .write(reinterpret_cast<const char*>(image.data()),
               static_cast<std::streamsize>(image.size()));
    const int rc = std::system(("qemu-img check -q '" + crashed + "' >/dev/null 2>&1").c_str());
    const int code = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
    if (code != 0 && code != 3) return "qemu-img check exit " + std::to_string(code);

    BackendOptions opts;
    opts.filename = "json:{\"driver\":\"qcow2\"," + backing_json() +
                    R"(,"file":{"driver":"file","filename":")" + crashed + "\"}}";
    opts.flags.read_only = true;
    auto backend = run_sync(*loop_, BlockBackend::open(*loop_, opts));
    if (!backend) return "reopen failed: " + backend.error().message();
    const uint64_t size = (*backend)->length();
    std::vector<uint8_t> back(size);
    Status r = run_sync(*loop_, (*backend)->read(0, IoVec(back.data(), back.size())));
    (void)run_sync(*loop_, (*backend)->close());
    if (!r) return "read failed: " + r.error().message();
    if (size != kOldSize && size != kNewSize) return "size " + std::to_string(size);
    const auto old_end = back.begin() + static_cast<std::ptrdiff_t>(kOldSize);
    if (!std::all_of(back.begin(), old_end, [](uint8_t b) { return b == kBackingByte; })) {
      return "the old area does not read the backing file's data";
    }
    if (!std::all_of(old_end, back.end(), [](uint8_t b) { return b == 0; })) {
      return "the grown area reads something other than zeros";
    }
    return "";
  }

  TempDir dir_;
  std::string backing_;
  std::string top_;
};

TEST_F(Qcow2GrowPowerCutTest, GrowWithoutPowerCutReadsZerosPastTheOldEnd) {
  std::mt19937_64 rng(1);
  EXPECT_EQ(cut_and_judge(1000, rng), "");
}

// Every cut point of the grow, each with several subsets of the unflushed writes.
TEST_F(Qcow2GrowPowerCutTest, CutAnywhereLeavesTheOldSizeOrZerosPastIt) {
  std::mt19937_64 rng(7);
  for (uint64_t cut_after = 0; cut_after < 16; ++cut_after) {
    for (int draw = 0; draw < 4; ++draw) {
      EXPECT_EQ(cut_and_judge(cut_after, rng), "")
          << "cut after " << cut_after << ", draw " << draw;
    }
  }
}

}  // namespace
}  // namespace qblock::qcow2
