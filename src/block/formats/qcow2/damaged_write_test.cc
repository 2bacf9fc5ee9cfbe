// Writes into images whose refcounts are damaged (issue 18, "silent data loss"): what a write
// frees when it replaces a cluster must never be a cluster that has meanwhile been handed out,
// and a replaced cluster is discarded only as QEMU's pass-discard-other says (off by default).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/byte_order.h"
#include "block/formats/qcow2/check.h"
#include "block/formats/qcow2/create.h"
#include "block/formats/qcow2/qcow2.h"
#include "block/test_util.h"

namespace qblock::qcow2 {
namespace {

using testing::LoopTest;
using testing::TempDir;

constexpr uint64_t kCluster = 65536;

class Qcow2DamagedWriteTest : public LoopTest {
 protected:
  // A 1 GiB image (64 KiB clusters: header 0, refcount table 1, refcount block 2, L1 table 3,
  // L2 table 4) with guest cluster `guest` written with 0x5a (its data in cluster 5).
  void make_image(uint64_t guest) {
    Qcow2CreateOptions opts;
    opts.filename = path_;
    opts.size = uint64_t{1} << 30;
    ASSERT_OK(run_sync(*loop_, create_qcow2(*loop_, opts)));
    NodePtr node = open(json());
    ASSERT_TRUE(node);
    std::vector<uint8_t> buf(kCluster, 0x5a);
    ASSERT_OK(run_sync(*loop_, node->write(guest, IoVec(buf.data(), buf.size()))));
    close(*node);
  }
  void poke(off_t offset, const std::vector<uint8_t>& bytes) {
    int fd = ::open(path_.c_str(), O_WRONLY);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::pwrite(fd, bytes.data(), bytes.size(), offset), ssize_t(bytes.size()));
    ::close(fd);
  }
  void poke64(off_t offset, uint64_t value) {
    std::vector<uint8_t> raw(8);
    store_be64(raw.data(), value);
    poke(offset, raw);
  }
  std::vector<uint8_t> peek(off_t offset, std::size_t len) {
    std::vector<uint8_t> out(len, 0xee);
    int fd = ::open(path_.c_str(), O_RDONLY);
    EXPECT_GE(fd, 0);
    EXPECT_EQ(::pread(fd, out.data(), len, offset), ssize_t(len));
    ::close(fd);
    return out;
  }
  std::string json(const std::string& extra = "") const {
    return R"({"driver":"qcow2",)" + extra + R"("file":{"driver":"file","filename":")" + path_ +
           "\"}}";
  }
  OpenFlags unmap() const {
    OpenFlags f;
    f.discard = DiscardMode::kUnmap;
    return f;
  }
  CheckResult check() {
    OpenFlags f;
    f.check = true;
    f.read_only = true;
    NodePtr node = open(json(), f);
    EXPECT_TRUE(node);
    Result<CheckResult> r = run_sync(*loop_, check_qcow2_node(*node, 0));
    EXPECT_TRUE(r);
    close(*node);
    return r ? *r : CheckResult{};
  }

  TempDir dir_;
  std::string path_ = dir_.file("t.qcow2");
};

// The last guest cluster of the first L2 table points at cluster 7, past the end of the file,
// with refcount 0 (no COPIED). A write over it and into the next L2 table: the COW step gives
// it cluster 6, the next step takes cluster 7 (free by its refcount) for the new L2 table. The
// reference the COW dropped was never counted, so nothing is freed for it: the new L2 table
// keeps its refcount (and, before, its contents: it was discarded, and the data written
// through it read back as zeros).
TEST_F(Qcow2DamagedWriteTest, ADroppedUncountedReferenceFreesNothing) {
  const uint64_t last_of_table0 = (uint64_t{512} << 20) - kCluster;
  make_image(last_of_table0);
  poke64(4 * kCluster + 8191 * 8, 7 * kCluster);  // cluster 5 is now leaked
  NodePtr node = open(json(), unmap());
  ASSERT_TRUE(node);
  std::vector<uint8_t> data(2 * kCluster, 0x01);
  ASSERT_OK(run_sync(*loop_, node->write(last_of_table0, IoVec(data.data(), data.size()))));
  std::vector<uint8_t> back(2 * kCluster, 0xee);
  ASSERT_OK(run_sync(*loop_, node->read(last_of_table0, IoVec(back.data(), back.size()))));
  EXPECT_EQ(back, data);
  close(*node);
  // Reopened: still there, and the refcounts count every cluster in use.
  node = open(json());
  ASSERT_TRUE(node);
  std::fill(back.begin(), back.end(), 0xee);
  ASSERT_OK(run_sync(*loop_, node->read(last_of_table0, IoVec(back.data(), back.size()))));
  EXPECT_EQ(back, data);
  close(*node);
  const CheckResult r = check();
  EXPECT_EQ(r.corruptions, 0u);
  EXPECT_EQ(r.leaks, 1u);  // cluster 5, leaked by the poke
}

// Guest cluster 0 in cluster 5 without COPIED (refcount 1): a write over it goes to a new
// cluster and frees cluster 5. As QEMU's default pass-discard-other=off, the freed cluster is
// not discarded, even with discard=unmap; with pass-discard-other=on it is.
TEST_F(Qcow2DamagedWriteTest, AClusterFreedByACowIsDiscardedOnlyWithPassDiscardOther) {
  for (bool pass_other : {false, true}) {
    SCOPED_TRACE(pass_other);
    make_image(0);
    poke64(4 * kCluster, 5 * kCluster);  // COPIED cleared
    NodePtr node = open(json(pass_other ? R"("pass-discard-other":true,)" : ""), unmap());
    ASSERT_TRUE(node);
    std::vector<uint8_t> data(kCluster, 0x01);
    ASSERT_OK(run_sync(*loop_, node->write(0, IoVec(data.data(), data.size()))));
    ASSERT_OK(run_sync(*loop_, node->flush()));
    std::vector<uint8_t> back(kCluster, 0xee);
    ASSERT_OK(run_sync(*loop_, node->read(0, IoVec(back.data(), back.size()))));
    EXPECT_EQ(back, data);
    close(*node);
    EXPECT_EQ(peek(5 * kCluster, 16), std::vector<uint8_t>(16, pass_other ? 0x00 : 0x5a));
  }
}

// A truncated file: guest clusters 0 and 1 are in clusters 5 and 6, which the refcounts still
// count, but the file ends inside cluster 5. As QEMU's, a write over them goes in place and
// grows the file; an L2 entry pointing far past the end at a cluster with refcount 0 (a
// damaged pointer) is still refused.
TEST_F(Qcow2DamagedWriteTest, InPlaceWritesPastTheEndOfATruncatedFileGoWhereTheRefcountsSay) {
  make_image(0);
  {
    NodePtr node = open(json());
    ASSERT_TRUE(node);
    std::vector<uint8_t> more(kCluster, 0x5b);
    ASSERT_OK(run_sync(*loop_, node->write(kCluster, IoVec(more.data(), more.size()))));
    close(*node);
  }
  ASSERT_EQ(::truncate(path_.c_str(), 5 * kCluster + 100), 0);
  NodePtr node = open(json());
  ASSERT_TRUE(node);
  std::vector<uint8_t> data(2 * kCluster, 0x01);
  ASSERT_OK(run_sync(*loop_, node->write(0, IoVec(data.data(), data.size()))));
  close(*node);
  EXPECT_EQ(peek(6 * kCluster, 16), std::vector<uint8_t>(16, 0x01));
  const CheckResult r = check();
  EXPECT_EQ(r.corruptions, 0u);
  EXPECT_EQ(r.leaks, 0u);

  poke64(4 * kCluster, (uint64_t{1000} * kCluster) | kCopied);
  node = open(json());
  ASSERT_TRUE(node);
  EXPECT_ERRNO(run_sync(*loop_, node->write(0, IoVec(data.data(), kCluster))), EIO);
  close(*node);
  struct stat st {};
  ASSERT_EQ(::stat(path_.c_str(), &st), 0);
  EXPECT_LT(uint64_t(st.st_size), uint64_t{100} * kCluster);
}

}  // namespace
}  // namespace qblock::qcow2
