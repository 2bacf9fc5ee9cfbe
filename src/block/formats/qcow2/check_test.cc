// qcow2 check and repair: on a dirty image (qcow2-format.md §11), what qblock does on purpose
// differently from QEMU 7.2 (a failed `-r leaks` keeps the dirty bit) and the automatic
// repair of a read-write open; what a repair leaves of the clusters it frees. Output compatibility
// is covered by tests/iotests/img/013-check.
#include "block/formats/qcow2/check.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/falloc.h>
#include <unistd.h>

#include "base/byte_order.h"
#include "block/formats/qcow2/create.h"
#include "block/formats/qcow2/qcow2.h"
#include "block/test_util.h"

namespace qblock::qcow2 {
namespace {

using testing::LoopTest;
using testing::TempDir;

class Qcow2CheckTest : public LoopTest {
 protected:
  // A 64 MiB image (64 KiB clusters) with guest cluster 0 written, then left as a crash with
  // lazy refcounts leaves it: dirty bit set, refcount of the data cluster (5) never written.
  void make_dirty_image() {
    Qcow2CreateOptions opts;
    opts.filename = path_;
    opts.size = 64 << 20;
    opts.lazy_refcounts = true;
    ASSERT_OK(run_sync(*loop_, create_qcow2(*loop_, opts)));
    NodePtr node = open(json());
    ASSERT_TRUE(node);
    std::vector<uint8_t> buf(65536, 0x5a);
    ASSERT_OK(run_sync(*loop_, node->write(0, IoVec(buf.data(), buf.size()))));
    close(*node);
    poke(72, {0, 0, 0, 0, 0, 0, 0, 1});  // incompatible features: dirty
    poke(0x20000 + 5 * 2, {0, 0});       // refcount of cluster 5
  }
  void poke(off_t offset, std::vector<uint8_t> bytes) {
    int fd = ::open(path_.c_str(), O_WRONLY);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::pwrite(fd, bytes.data(), bytes.size(), offset), ssize_t(bytes.size()));
    ::close(fd);
  }
  std::vector<uint8_t> peek(off_t offset, std::size_t bytes) {
    std::vector<uint8_t> raw(bytes);
    int fd = ::open(path_.c_str(), O_RDONLY);
    EXPECT_EQ(::pread(fd, raw.data(), bytes, offset), ssize_t(bytes));
    ::close(fd);
    return raw;
  }
  uint64_t incompatible_features() {
    uint8_t raw[8] = {};
    int fd = ::open(path_.c_str(), O_RDONLY);
    EXPECT_EQ(::pread(fd, raw, 8, 72), 8);
    ::close(fd);
    return load_be64(raw);
  }
  std::string json() const {
    return R"({"driver":"qcow2","file":{"driver":"file","filename":")" + path_ + "\"}}";
  }
  OpenFlags check_flags() const {
    OpenFlags f;
    f.check = true;
    return f;
  }

  TempDir dir_;
  std::string path_ = dir_.file("t.qcow2");
};

// qcow2-format.md §19: QEMU clears the dirty bit although `-r leaks` could not rebuild the
// refcounts; qblock keeps it, so the next read-write open still repairs the image.
TEST_F(Qcow2CheckTest, FailedLeakRepairKeepsTheDirtyBit) {
  make_dirty_image();
  NodePtr node = open(json(), check_flags());
  ASSERT_TRUE(node);
  EXPECT_ERRNO(run_sync(*loop_, check_qcow2_node(*node, kFixLeaks)), EIO);
  close(*node);
  EXPECT_EQ(incompatible_features() & kIncompatDirty, kIncompatDirty);
}

TEST_F(Qcow2CheckTest, RepairAllRebuildsRefcountsAndClearsTheDirtyBit) {
  make_dirty_image();
  NodePtr node = open(json(), check_flags());
  ASSERT_TRUE(node);
  Result<CheckResult> r = run_sync(*loop_, check_qcow2_node(*node, kFixLeaks | kFixErrors));
  ASSERT_OK(r);
  EXPECT_EQ(r->corruptions_fixed, 1u);
  EXPECT_EQ(r->corruptions, 0u);
  Result<CheckResult> again = run_sync(*loop_, check_qcow2_node(*node, 0));
  ASSERT_OK(again);
  EXPECT_EQ(again->corruptions, 0u);
  EXPECT_EQ(again->leaks, 0u);
  close(*node);
  EXPECT_EQ(incompatible_features() & kIncompatDirty, 0u);
}

// §11: a read-write open rebuilds the refcounts first, so a new allocation cannot reuse the
// data cluster whose refcount the crash lost.
TEST_F(Qcow2CheckTest, ReadWriteOpenRepairsADirtyImage) {
  make_dirty_image();
  NodePtr node = open(json());
  ASSERT_TRUE(node);
  std::vector<uint8_t> other(65536, 0x77);
  ASSERT_OK(run_sync(*loop_, node->write(1 << 20, IoVec(other.data(), other.size()))));
  std::vector<uint8_t> back(65536);
  ASSERT_OK(run_sync(*loop_, node->read(0, IoVec(back.data(), back.size()))));
  EXPECT_EQ(back, std::vector<uint8_t>(65536, 0x5a));
  close(*node);
  EXPECT_EQ(incompatible_features() & kIncompatDirty, 0u);
  NodePtr checked = open(json(), check_flags());
  ASSERT_TRUE(checked);
  Result<CheckResult> r = run_sync(*loop_, check_qcow2_node(*checked, 0));
  ASSERT_OK(r);
  EXPECT_EQ(r->corruptions, 0u);
  EXPECT_EQ(r->leaks, 0u);
  close(*checked);
}

// QEMU's repair discards the clusters whose refcount it takes to 0: a repaired leak no longer
// takes space in the file, and what stays referenced keeps its data.
TEST_F(Qcow2CheckTest, LeakRepairDiscardsTheFreedClusters) {
  {
    // Whether this file system punches holes at all.
    int fd = ::open(dir_.file("probe").c_str(), O_RDWR | O_CREAT, 0644);
    ASSERT_GE(fd, 0);
    std::vector<uint8_t> ones(65536, 1);
    ASSERT_EQ(::pwrite(fd, ones.data(), ones.size(), 0), ssize_t(ones.size()));
    const int r = ::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 65536);
    ::close(fd);
    if (r != 0) GTEST_SKIP() << "no hole punching here";
  }
  Qcow2CreateOptions opts;
  opts.filename = path_;
  opts.size = 64 << 20;
  ASSERT_OK(run_sync(*loop_, create_qcow2(*loop_, opts)));
  NodePtr node = open(json());
  ASSERT_TRUE(node);
  std::vector<uint8_t> buf(3 * 65536, 0x5a);
  ASSERT_OK(run_sync(*loop_, node->write(0, IoVec(buf.data(), buf.size()))));
  close(*node);
  // Guest clusters 0-2 are host clusters 5-7 (L2 table at 0x40000); unlink cluster 6.
  ASSERT_EQ(peek(0x60000, 1)[0], 0x5a);
  poke(0x40000 + 8, {0, 0, 0, 0, 0, 0, 0, 0});
  NodePtr checked = open(json(), check_flags());
  ASSERT_TRUE(checked);
  Result<CheckResult> r = run_sync(*loop_, check_qcow2_node(*checked, kFixLeaks));
  ASSERT_OK(r);
  EXPECT_EQ(r->leaks_fixed, 1u);
  Result<CheckResult> again = run_sync(*loop_, check_qcow2_node(*checked, 0));
  ASSERT_OK(again);
  EXPECT_EQ(again->leaks, 0u);
  EXPECT_EQ(again->corruptions, 0u);
  close(*checked);
  EXPECT_EQ(peek(0x60000, 65536), std::vector<uint8_t>(65536, 0));
  EXPECT_EQ(peek(0x50000, 65536), std::vector<uint8_t>(65536, 0x5a));
  EXPECT_EQ(peek(0x70000, 65536), std::vector<uint8_t>(65536, 0x5a));
  int fd = ::open(path_.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(::lseek(fd, 0x60000, SEEK_HOLE), 0x60000);
  ::close(fd);
}

TEST_F(Qcow2CheckTest, ReadOnlyOpenOfADirtyImageLeavesItDirty) {
  make_dirty_image();
  OpenFlags ro;
  ro.read_only = true;
  NodePtr node = open(json(), ro);
  ASSERT_TRUE(node);
  close(*node);
  EXPECT_EQ(incompatible_features() & kIncompatDirty, kIncompatDirty);
}

}  // namespace
}  // namespace qblock::qcow2
