// Power cuts while qemu-img commit empties a qcow2 top image (make_empty: the rebuild as a
// fresh image for v3, the cleared L2 entries for v2) and while rebase rewrites the backing
// file name. Whatever reaches the disk, the image passes qemu-img check (a dirty image after
// its repair), every cluster reads either as before or from the backing file, and the header
// names the old backing file or the new one (read back by read_image_info, which parses the
// whole header cluster).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "block/filters/powercut.h"
#include "block/formats/qcow2/create.h"
#include "block/formats/qcow2/qcow2.h"
#include "block/test_util.h"
#include "qblock/block_backend.h"
#include "qblock/image.h"

namespace qblock::qcow2 {
namespace {

using testing::LoopTest;
using testing::TempDir;

constexpr uint64_t kSize = 2 << 20;
constexpr uint64_t kCluster = 65536;
constexpr uint8_t kBackingByte = 0xaa;

class Qcow2MakeEmptyPowerCutTest : public LoopTest, public ::testing::WithParamInterface<uint32_t> {
 protected:
  void SetUp() override {
    LoopTest::SetUp();
    if (std::system("qemu-img --version >/dev/null 2>&1") != 0) GTEST_SKIP() << "no qemu-img";
    backing_ = dir_.file("backing.raw");
    std::ofstream(backing_, std::ios::binary)
        .write(std::string(kSize, static_cast<char>(kBackingByte)).data(), kSize);
    // The top names no backing file: the tests attach it through the "backing" option, so
    // that qemu-img check judges the crash images on their own.
    top_ = dir_.file("top.qcow2");
    Qcow2CreateOptions opts;
    opts.filename = top_;
    opts.size = kSize;
    opts.version = GetParam();
    ASSERT_OK(run_sync(*loop_, create_qcow2(*loop_, opts)));
    NodePtr node = open(R"({"driver":"qcow2",)" + backing_json() +
                        R"(,"file":{"driver":"file","filename":")" + top_ + "\"}}");
    ASSERT_NE(node, nullptr);
    std::vector<uint8_t> data(200 << 10, 0x55);
    ASSERT_OK(run_sync(*loop_, node->write(kCluster, IoVec(data.data(), data.size()))));
    ASSERT_OK(run_sync(*loop_, node->write_zeroes(512 << 10, kCluster)));
    ASSERT_OK(run_sync(*loop_, node->write((1 << 20) + 1000, IoVec(data.data(), 3000))));
    before_.resize(kSize);
    ASSERT_OK(run_sync(*loop_, node->read(0, IoVec(before_.data(), before_.size()))));
    close(*node);
  }

  std::string backing_json() const {
    return R"("backing":{"driver":"raw","file":{"driver":"file","filename":")" + backing_ + "\"}}";
  }

  // qemu-img check of the crash image: clean or leaks only; a dirty image (the rebuild sets
  // the dirty bit) must be repairable as QEMU's open repairs it. "" or what went wrong.
  std::string check(const std::string& image) {
    int rc = std::system(("qemu-img check -q '" + image + "' >/dev/null 2>&1").c_str());
    int code = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
    if (code == 0 || code == 3) return "";
    std::ifstream in(image, std::ios::binary);
    char header[80] = {};
    in.read(header, sizeof(header));
    if (!(header[79] & 1)) return "qemu-img check exit " + std::to_string(code);
    rc = std::system(("qemu-img check -q -r all '" + image + "' >/dev/null 2>&1").c_str());
    code = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
    return code == 0
               ? ""
               : "dirty image not repaired: qemu-img check -r all exit " + std::to_string(code);
  }

  // Empties the top with the power gone after `cut_after` modifying requests; returns a
  // failure description or "" for the crash image drawn with `rng`.
  std::string cut_and_judge(uint64_t cut_after, std::mt19937_64& rng) {
    NodePtr node = open(R"({"driver":"qcow2",)" + backing_json() +
                        R"(,"file":{"driver":"powercut","cut-after":)" + std::to_string(cut_after) +
                        R"(,"file":{"driver":"memory","async":true,"image":")" + top_ + "\"}}}");
    if (!node) return "open failed";
    auto& filter = static_cast<PowerCutFilter&>(*node->primary_child());
    Status emptied = run_sync(*loop_, make_qcow2_empty(*node));
    if (emptied) emptied = run_sync(*loop_, node->flush());
    std::vector<uint8_t> image = filter.crash_image(rng, 0.5);
    (void)run_sync(*loop_, node->close());
    if (!filter.cut() && !emptied)
      return "failed without a power cut: " + emptied.error().message();

    const std::string crashed = dir_.file("crash.qcow2");
    std::ofstream(crashed, std::ios::binary | std::ios::trunc)
        .write(reinterpret_cast<const char*>(image.data()),
               static_cast<std::streamsize>(image.size()));
    if (std::string c = check(crashed); !c.empty()) return c;

    BackendOptions opts;
    opts.filename = "json:{\"driver\":\"qcow2\"," + backing_json() +
                    R"(,"file":{"driver":"file","filename":")" + crashed + "\"}}";
    opts.flags.read_only = true;
    auto backend = run_sync(*loop_, BlockBackend::open(*loop_, opts));
    if (!backend) return "reopen failed: " + backend.error().message();
    std::vector<uint8_t> back(kSize);
    Status r = run_sync(*loop_, (*backend)->read(0, IoVec(back.data(), back.size())));
    (void)run_sync(*loop_, (*backend)->close());
    if (!r) return "read failed: " + r.error().message();
    bool all_empty = true;
    for (uint64_t c = 0; c < kSize; c += kCluster) {
      const auto from = back.begin() + static_cast<std::ptrdiff_t>(c);
      const auto to = from + static_cast<std::ptrdiff_t>(kCluster);
      const bool empty = std::all_of(from, to, [](uint8_t b) { return b == kBackingByte; });
      all_empty = all_empty && empty;
      if (!empty && !std::equal(from, to, before_.begin() + static_cast<std::ptrdiff_t>(c))) {
        return "cluster at " + std::to_string(c) + " reads neither as before nor as the backing";
      }
    }
    if (!filter.cut() && !all_empty) return "not emptied without a power cut";
    return "";
  }

  TempDir dir_;
  std::string backing_;
  std::string top_;
  std::vector<uint8_t> before_;
};

TEST_P(Qcow2MakeEmptyPowerCutTest, CutAnywhereReadsAsBeforeOrAsTheBackingFile) {
  std::mt19937_64 rng(GetParam());
  EXPECT_EQ(cut_and_judge(1000, rng), "");
  for (uint64_t cut_after = 0; cut_after < 16; ++cut_after) {
    for (int draw = 0; draw < 4; ++draw) {
      EXPECT_EQ(cut_and_judge(cut_after, rng), "")
          << "cut after " << cut_after << ", draw " << draw;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Versions, Qcow2MakeEmptyPowerCutTest, ::testing::Values(2u, 3u));

class Qcow2BackingChangePowerCutTest : public LoopTest {
 protected:
  TempDir dir_;
};

TEST_F(Qcow2BackingChangePowerCutTest, TheHeaderNamesTheOldOrTheNewBackingFile) {
  const std::string top = dir_.file("top.qcow2");
  Qcow2CreateOptions opts;
  opts.filename = top;
  opts.size = kSize;
  opts.backing_file = "old.qcow2";
  opts.backing_fmt = "qcow2";
  opts.unsafe_backing = true;
  ASSERT_OK(run_sync(*loop_, create_qcow2(*loop_, opts)));
  std::mt19937_64 rng(5);
  for (uint64_t cut_after = 0; cut_after < 6; ++cut_after) {
    for (int draw = 0; draw < 4; ++draw) {
      NodePtr node = open(R"({"driver":"qcow2","backing":null,"file":{"driver":"powercut",)"
                          R"("cut-after":)" +
                          std::to_string(cut_after) +
                          R"(,"file":{"driver":"memory","async":true,"image":")" + top + "\"}}}");
      ASSERT_NE(node, nullptr);
      auto& filter = static_cast<PowerCutFilter&>(*node->primary_child());
      Status changed =
          run_sync(*loop_, change_qcow2_backing_file(*node, "a-longer-name.raw", "raw"));
      std::vector<uint8_t> image = filter.crash_image(rng, 0.5);
      (void)run_sync(*loop_, node->close());
      EXPECT_TRUE(changed || filter.cut());
      const std::string crashed = dir_.file("crash.qcow2");
      std::ofstream(crashed, std::ios::binary | std::ios::trunc)
          .write(reinterpret_cast<const char*>(image.data()),
                 static_cast<std::streamsize>(image.size()));
      Result<ImageInfo> info = run_sync(*loop_, read_image_info(*loop_, crashed, "qcow2"));
      ASSERT_OK(info);
      const std::string name = info->qcow2->backing_file;
      const std::string format = info->qcow2->backing_format;
      EXPECT_TRUE((name == "old.qcow2" && format == "qcow2") ||
                  (name == "a-longer-name.raw" && format == "raw"))
          << name << " " << format << ", cut after " << cut_after;
      if (!filter.cut()) {
        EXPECT_EQ(name, "a-longer-name.raw");
      }
    }
  }
}

}  // namespace
}  // namespace qblock::qcow2
