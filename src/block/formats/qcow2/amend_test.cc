// Tests of qemu-img amend's qcow2 operations (amend.cc, zero_expand.cc, refcount_rewrite.cc)
// on the memory protocol driver: the downgrade's zero-cluster expansion, the refcount width
// at every size and back, and power cuts at every point of both (the image left behind has
// no corruption, and its data reads back). qemu-img check judges the results when installed.
#include <gtest/gtest.h>

#include <bit>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "base/byte_order.h"
#include "block/filters/powercut.h"
#include "block/formats/qcow2/create.h"
#include "block/formats/qcow2/l2_entry.h"
#include "block/formats/qcow2/qcow2.h"
#include "block/protocols/memory.h"
#include "block/test_util.h"
#include "qblock/block_backend.h"
#include "qblock/image.h"
#include "qblock/messages.h"
#include "qblock/snapshot.h"

namespace qblock::qcow2 {
namespace {

using testing::LoopTest;
using testing::TempDir;

constexpr uint64_t kGuestSize = 4 << 20;
constexpr uint64_t kCluster = 65536;

class Qcow2AmendTest : public LoopTest {
 protected:
  void SetUp() override {
    LoopTest::SetUp();
    base_ = dir_.file("base.qcow2");
    Qcow2CreateOptions opts;
    opts.filename = base_;
    opts.size = kGuestSize;
    ASSERT_OK(run_sync(*loop_, create_qcow2(*loop_, opts)));
    // Data, a preallocated zero cluster, plain zero clusters, a compressed cluster: written
    // through qblock into the file, which the tests then load into memory.
    NodePtr node =
        open(R"({"driver":"qcow2","file":{"driver":"file","filename":")" + base_ + "\"}}");
    ASSERT_TRUE(node);
    write(*node, 0, 2 * kCluster, 0x11, {});
    ASSERT_OK(run_sync(*loop_, node->write_zeroes(kCluster, kCluster)));  // keeps the cluster
    ASSERT_OK(run_sync(*loop_, node->write_zeroes(3 * kCluster, 2 * kCluster)));
    write(*node, 6 * kCluster, kCluster, 0x22, RequestFlag::kWriteCompressed);
    write(*node, 7 * kCluster, kCluster, 0x33, RequestFlag::kWriteCompressed);
    write(*node, (1 << 20) + 4096, 8192, 0x44, {});
    ASSERT_OK(run_sync(*loop_, node->close()));
    expected_.assign(kGuestSize, 0);
    std::fill_n(expected_.begin(), kCluster, 0x11);
    std::fill_n(expected_.begin() + 6 * kCluster, kCluster, 0x22);
    std::fill_n(expected_.begin() + 7 * kCluster, kCluster, 0x33);
    std::fill_n(expected_.begin() + (1 << 20) + 4096, 8192, 0x44);
  }

  void write(BlockNode& node, uint64_t offset, uint64_t bytes, uint8_t byte, RequestFlags flags) {
    std::vector<uint8_t> data(bytes, byte);
    ASSERT_OK(run_sync(*loop_, node.write(offset, IoVec(data.data(), data.size()), flags)));
  }

  std::string memory_json(const std::string& inner_prefix = "", const std::string& suffix = "") {
    return R"({"driver":"qcow2","file":)" + inner_prefix +
           R"({"driver":"memory","async":true,"efficient-zeroes":true,"image":")" + base_ + "\"}" +
           suffix + "}";
  }

  Status amend(BlockNode& node, Qcow2AmendOptions options) {
    return run_sync(*loop_, amend_qcow2_node(node, std::move(options), {}));
  }

  // Writes `bytes` to a file and judges it: qblock's check (and qemu-img's, when installed)
  // finds no corruption and, unless leaks are allowed, no leaks; the guest data is
  // expected_. Returns a failure description or "".
  std::string judge(const std::vector<uint8_t>& bytes, bool leaks_allowed) {
    const std::string path = dir_.file("judged.qcow2");
    std::ofstream(path, std::ios::binary | std::ios::trunc)
        .write(reinterpret_cast<const char*>(bytes.data()),
               static_cast<std::streamsize>(bytes.size()));
    OpenFlags check;
    check.check = true;
    check.read_only = true;
    NodePtr checked =
        open(R"({"driver":"qcow2","file":{"driver":"file","filename":")" + path + "\"}}", check);
    if (!checked) return "check open failed";
    // The check's diagnostics (leaks after a cut) would only clutter the test's output.
    MessageSink previous = discard_messages();
    auto r = run_sync(*loop_, qblock::check_image(*checked, 0));
    set_message_sink(std::move(previous));
    (void)run_sync(*loop_, checked->close());
    if (!r) return "check failed: " + r.error().message();
    if (r->corruptions) return std::to_string(r->corruptions) + " corruptions";
    if (r->leaks && !leaks_allowed) return std::to_string(r->leaks) + " leaks";
    if (std::system("qemu-img --version >/dev/null 2>&1") == 0) {
      const int rc = std::system(("qemu-img check -q '" + path + "' >/dev/null 2>&1").c_str());
      const int code = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
      if (code != 0 && !(leaks_allowed && code == 3)) {
        return "qemu-img check exit " + std::to_string(code);
      }
    }
    BackendOptions opts;
    opts.filename = path;
    opts.format = "qcow2";
    opts.flags.read_only = true;
    auto backend = run_sync(*loop_, BlockBackend::open(*loop_, opts));
    if (!backend) return "reopen failed: " + backend.error().message();
    std::vector<uint8_t> back(kGuestSize);
    Status s = run_sync(*loop_, (*backend)->read(0, IoVec(back.data(), back.size())));
    (void)run_sync(*loop_, (*backend)->close());
    if (!s) return "read failed: " + s.error().message();
    for (uint64_t i = 0; i < kGuestSize; ++i) {
      if (back[i] != expected_[i]) return "data differs at guest offset " + std::to_string(i);
    }
    return "";
  }

  static std::vector<uint8_t>& memory(BlockNode& qcow2) {
    return static_cast<MemoryNode&>(*qcow2.primary_child()).data();
  }

  // The L2 entries of the guest clusters [0, n) of the active table.
  static std::vector<uint64_t> l2_entries(const std::vector<uint8_t>& file, uint64_t n) {
    const uint64_t l1 = load_be64(&file[40]);
    const uint64_t l2 = load_be64(&file[l1]) & kOffsetMask;
    std::vector<uint64_t> out;
    for (uint64_t i = 0; i < n; ++i) out.push_back(load_be64(&file[l2 + i * 8]));
    return out;
  }

  TempDir dir_;
  std::string base_;
  std::vector<uint8_t> expected_;
};

TEST_F(Qcow2AmendTest, DowngradeExpandsZeroClustersAndWritesV2Header) {
  NodePtr node = open(memory_json());
  ASSERT_TRUE(node);
  const std::vector<uint64_t> before = l2_entries(memory(*node), 5);
  ASSERT_EQ(cluster_type(before[1]), ClusterType::kZeroAlloc);
  ASSERT_EQ(cluster_type(before[3]), ClusterType::kZeroPlain);
  Qcow2AmendOptions o;
  o.compat = "0.10";
  ASSERT_OK(amend(*node, o));
  ASSERT_OK(run_sync(*loop_, node->close()));
  const std::vector<uint8_t>& file = memory(*node);
  EXPECT_EQ(load_be32(&file[4]), 2u);
  // Without a backing file a plain zero cluster becomes unallocated; a preallocated one keeps
  // its cluster (now zeroed), without the flag.
  const std::vector<uint64_t> after = l2_entries(file, 5);
  EXPECT_EQ(after[1], (before[1] & ~kZeroFlag) | kCopied);
  EXPECT_EQ(after[3], 0u);
  EXPECT_EQ(after[4], 0u);
  for (uint64_t i = 0; i < kCluster; ++i) ASSERT_EQ(file[(after[1] & kOffsetMask) + i], 0);
  // The header is 72 bytes and the end-of-extensions marker; the rest of cluster 0 is clear.
  for (uint64_t i = 72; i < kCluster; ++i) ASSERT_EQ(file[i], 0) << i;
  EXPECT_EQ(judge(file, false), "");
}

TEST_F(Qcow2AmendTest, DowngradeWithBackingFileAllocatesZeroedClusters) {
  const std::string backing = dir_.file("backing.raw");
  std::ofstream(backing, std::ios::binary)
      .write(std::string(kGuestSize, '\x5a').data(), kGuestSize);
  NodePtr node = open(memory_json("", R"(,"backing":{"driver":"raw","file":{"driver":"file",)"
                                      R"("filename":")" +
                                          backing + "\"}}"));
  ASSERT_TRUE(node);
  Qcow2AmendOptions o;
  o.compat = "v2";
  ASSERT_OK(amend(*node, o));
  ASSERT_OK(run_sync(*loop_, node->close()));
  const std::vector<uint64_t> after = l2_entries(memory(*node), 5);
  for (uint64_t i : {3, 4}) {
    EXPECT_EQ(cluster_type(after[i]), ClusterType::kNormal) << i;
    EXPECT_TRUE(after[i] & kCopied);
  }
  EXPECT_NE(after[3] & kOffsetMask, after[4] & kOffsetMask);
  // Judged on its own (no backing attached): the zero clusters read as zeros as before.
  EXPECT_EQ(judge(memory(*node), false), "");
}

// A preallocated zero cluster whose host cluster a snapshot still maps with its data: the
// downgrade must not zero that host cluster (QEMU 7.2 does, and the snapshot then reads
// zeros; found by tests/interop/lifecycle_interleave.sh).
TEST_F(Qcow2AmendTest, DowngradeLeavesASnapshotsSharedClusterAlone) {
  constexpr uint64_t kShared = 8 * kCluster;
  {
    NodePtr node =
        open(R"({"driver":"qcow2","file":{"driver":"file","filename":")" + base_ + "\"}}");
    ASSERT_TRUE(node);
    write(*node, kShared, kCluster, 0x55, {});
    ASSERT_OK(run_sync(*loop_, create_snapshot(*node, "s")));
    write(*node, kShared + kCluster, kCluster, 0x66, {});  // the active L2 table is copied
    ASSERT_OK(run_sync(*loop_, node->close()));
  }
  std::fill_n(expected_.begin() + kShared + kCluster, kCluster, 0x66);
  NodePtr node = open(memory_json());
  ASSERT_TRUE(node);
  // What qemu-io's `write -z` (no unmap) leaves on a cluster a snapshot shares: the zero flag
  // on the shared host cluster (refcount 2, so not COPIED).
  std::vector<uint8_t>& image = memory(*node);
  const uint64_t l2 = load_be64(&image[load_be64(&image[40])]) & kOffsetMask;
  const uint64_t host = load_be64(&image[l2 + 8 * 8]) & kOffsetMask;
  store_be64(&image[l2 + 8 * 8], host | kZeroFlag);
  const uint64_t before = l2_entries(image, 9)[8];
  ASSERT_EQ(cluster_type(before), ClusterType::kZeroAlloc);
  Qcow2AmendOptions o;
  o.compat = "0.10";
  ASSERT_OK(amend(*node, o));
  ASSERT_OK(run_sync(*loop_, node->close()));
  const std::vector<uint8_t> file = memory(*node);
  // The active table no longer maps the shared cluster (no backing file: unallocated), whose
  // data the snapshot still has.
  EXPECT_EQ(l2_entries(file, 9)[8], 0u);
  for (uint64_t i = 0; i < kCluster; ++i) ASSERT_EQ(file[(before & kOffsetMask) + i], 0x55);
  EXPECT_EQ(judge(file, false), "");
  const std::string path = dir_.file("judged.qcow2");  // judge() left the image there
  OpenFlags ro;
  ro.read_only = true;
  NodePtr snap =
      open(R"({"driver":"qcow2","file":{"driver":"file","filename":")" + path + "\"}}", ro);
  ASSERT_TRUE(snap);
  ASSERT_OK(run_sync(*loop_, load_snapshot_tmp(*snap, std::nullopt, "s")));
  std::vector<uint8_t> back(kCluster);
  ASSERT_OK(run_sync(*loop_, snap->read(kShared, IoVec(back.data(), back.size()))));
  EXPECT_EQ(back, std::vector<uint8_t>(kCluster, 0x55));
  ASSERT_OK(run_sync(*loop_, snap->close()));
}

TEST_F(Qcow2AmendTest, UpgradeAfterDowngradeRestoresV3Header) {
  NodePtr node = open(memory_json());
  ASSERT_TRUE(node);
  const std::vector<uint8_t> original(memory(*node).begin(), memory(*node).begin() + 512);
  Qcow2AmendOptions down;
  down.compat = "0.10";
  ASSERT_OK(amend(*node, down));
  Qcow2AmendOptions up;
  up.compat = "1.1";
  ASSERT_OK(amend(*node, up));
  ASSERT_OK(run_sync(*loop_, node->close()));
  const std::vector<uint8_t>& file = memory(*node);
  EXPECT_TRUE(std::equal(original.begin(), original.end(), file.begin()));
  EXPECT_EQ(judge(file, false), "");
}

TEST_F(Qcow2AmendTest, RefcountBitsEveryWidthAndBack) {
  NodePtr node = open(memory_json());
  ASSERT_TRUE(node);
  for (uint64_t bits : {1, 2, 4, 8, 16, 32, 64, 32, 8, 2, 1, 16}) {
    Qcow2AmendOptions o;
    o.refcount_bits = bits;
    // Compressed clusters share a host cluster: its refcount (2) does not fit in one bit.
    Status s = amend(*node, o);
    if (bits == 1) {
      ASSERT_FALSE(s);
      EXPECT_NE(s.error().message().find("Cannot decrease refcount entry width to 1 bits"),
                std::string::npos)
          << s.error().message();
      continue;
    }
    ASSERT_OK(s);
    ASSERT_OK(run_sync(*loop_, node->flush()));
    EXPECT_EQ(load_be32(&memory(*node)[96]), static_cast<uint32_t>(std::countr_zero(bits)));
    EXPECT_EQ(judge(memory(*node), false), "") << bits << " bits";
  }
  // The image stays usable: a write after the changes allocates through the new structures.
  write(*node, 2 * kCluster, kCluster, 0x55, {});
  std::fill_n(expected_.begin() + 2 * kCluster, kCluster, 0x55);
  ASSERT_OK(run_sync(*loop_, node->close()));
  EXPECT_EQ(judge(memory(*node), false), "");
}

TEST_F(Qcow2AmendTest, RefusalsLeaveTheImageAlone) {
  NodePtr node = open(memory_json());
  ASSERT_TRUE(node);
  const std::vector<uint8_t> before = memory(*node);
  struct Case {
    Qcow2AmendOptions options;
    const char* message;
  };
  std::vector<Case> cases(6);
  cases[0].options.compat = "0.9";
  cases[0].message = "Unknown compatibility level 0.9";
  cases[1].options.refcount_bits = 3;
  cases[1].message = "Refcount width must be a power of two and may not exceed 64 bits";
  cases[2].options.backing_file = "x";
  cases[2].message = "Cannot amend the backing file\nYou can use 'qemu-img rebase' instead.";
  cases[3].options.encryption = true;
  cases[3].message = "Can't amend encryption options - encryption not present";
  cases[4].options.compat = "0.10";
  cases[4].options.lazy_refcounts = true;
  cases[4].message =
      "Lazy refcounts only supported with compatibility level 1.1 and above (use compat=1.1 or "
      "greater)";
  cases[5].options.data_file = "d";
  cases[5].message = "data-file can only be set for images that use an external data file";
  for (const Case& c : cases) {
    Status s = amend(*node, c.options);
    ASSERT_FALSE(s);
    EXPECT_EQ(s.error().message(), c.message);
  }
  ASSERT_OK(run_sync(*loop_, node->close()));
  EXPECT_EQ(memory(*node), before);
}

// Power cuts at every request of a downgrade and of refcount width changes: the disk left
// behind (the last flushed state plus any subset of later writes) has no corruption, and the
// guest data is intact.
TEST_F(Qcow2AmendTest, PowerCutAtAnyPointLeavesAConsistentImage) {
  struct Step {
    const char* name;
    Qcow2AmendOptions options;
  };
  std::vector<Step> steps(4);
  steps[0].name = "compat=0.10";
  steps[0].options.compat = "0.10";
  steps[1].name = "refcount_bits=64";
  steps[1].options.refcount_bits = 64;
  steps[2].name = "refcount_bits=2";
  steps[2].options.refcount_bits = 2;
  steps[3].name = "compat=0.10,lazy_refcounts=off";
  steps[3].options.compat = "0.10";
  steps[3].options.lazy_refcounts = false;
  std::mt19937_64 rng(2026);
  for (const Step& step : steps) {
    for (uint64_t cut_after = 0;; ++cut_after) {
      NodePtr node = open(memory_json(
          R"({"driver":"powercut","cut-after":)" + std::to_string(cut_after) + ",\"file\":", "}"));
      ASSERT_TRUE(node);
      auto& filter = static_cast<PowerCutFilter&>(*node->primary_child());
      Status s = amend(*node, step.options);
      if (s) s = run_sync(*loop_, node->flush());
      const bool cut = filter.cut();
      for (int draw = 0; draw < 4; ++draw) {
        std::vector<uint8_t> image = filter.crash_image(rng, 0.5);
        std::string problem = judge(image, true);
        ASSERT_EQ(problem, "") << step.name << ", cut after " << cut_after << " requests";
      }
      (void)run_sync(*loop_, node->close());
      if (!cut) {
        ASSERT_OK(s);
        // The step wrote something worth cutting: several cut points were tried.
        EXPECT_GE(cut_after, 4u) << step.name;
        break;
      }
      ASSERT_LT(cut_after, 200u) << step.name;
    }
  }
}

}  // namespace
}  // namespace qblock::qcow2
