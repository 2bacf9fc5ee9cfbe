// quorum tests: writes reach every child, reads vote (the majority wins, ties go to the last
// version, no quorum is EIO), rewrite-corrupted repairs the outvoted children, fifo reads the
// first child that answers, blkverify mode reports a difference, events, flags and QEMU's
// open errors.
#include "block/filters/quorum.h"

#include <gtest/gtest.h>

#include "block/filters/filter_test_util.h"
#include "block/protocols/memory.h"

namespace qblock {
namespace {

constexpr uint64_t kKiB = 1024;

class QuorumTest : public testing::FilterTest {
 protected:
  // quorum over `n` memory children of 1 MiB with node names c0, c1, ...
  static std::string graph(unsigned n, const std::string& extra,
                           const std::string& child_extra = "") {
    std::string s = R"({"driver":"quorum",)" + extra + R"("children":[)";
    for (unsigned i = 0; i < n; ++i) {
      if (i) s += ",";
      s += R"({"driver":"memory","size":1048576,"node-name":"c)" + std::to_string(i) + "\"" +
           child_extra + "}";
    }
    return s + "]}";
  }
  static MemoryNode& mem(BlockNode& root, std::size_t i) {
    return static_cast<MemoryNode&>(*root.children()[i].node);
  }
  NodePtr open_quorum(unsigned n, const std::string& extra) {
    NodePtr root = open(graph(n, extra));
    if (root) {
      static_cast<QuorumNode&>(*root).set_mismatch_handler(
          [this](const std::string& m) { messages_.push_back(m); });
    }
    return root;
  }
  std::vector<std::string> messages_;
};

TEST_F(QuorumTest, WritesReachEveryChildAndTheMajorityWinsReads) {
  std::vector<std::pair<std::string, Options>> events;
  ScopedQuorumEventSink sink(
      [&events](const std::string& name, Options data) { events.emplace_back(name, data); });
  NodePtr root = open_quorum(3, R"("vote-threshold":2,"node-name":"q",)");
  ASSERT_TRUE(root);
  ASSERT_OK(write(*root, 0, 64 * kKiB, 0x11));
  for (std::size_t i = 0; i < 3; ++i) EXPECT_EQ(mem(*root, i).data()[100], 0x11);
  EXPECT_TRUE(all(read(*root, 0, 4 * kKiB), 0x11));
  EXPECT_TRUE(events.empty());
  // One child differs: outvoted, reported, not repaired.
  mem(*root, 1).data()[1000] = 0x22;
  EXPECT_TRUE(all(read(*root, 0, 4 * kKiB), 0x11));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].first, "QUORUM_REPORT_BAD");
  EXPECT_EQ(events[0].second.dump(),
            R"({"type":"read","node-name":"c1","sector-num":0,"sectors-count":8})");
  EXPECT_EQ(mem(*root, 1).data()[1000], 0x22);
  // Three versions: no quorum.
  mem(*root, 2).data()[1000] = 0x33;
  events.clear();
  Result<std::vector<uint8_t>> none = try_read(*root, 0, 4 * kKiB);
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().errnum(), EIO);
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().first, "QUORUM_FAILURE");
  EXPECT_EQ(events.back().second.dump(), R"({"reference":"q","sector-num":0,"sectors-count":8})");
  close(*root);
}

TEST_F(QuorumTest, TiesGoToTheLastVersionAndRewriteCorruptedRepairs) {
  NodePtr root = open_quorum(3, R"("vote-threshold":1,"rewrite-corrupted":true,)");
  ASSERT_TRUE(root);
  ASSERT_OK(write(*root, 0, 4 * kKiB, 0x11));
  mem(*root, 1).data()[1000] = 0x22;
  mem(*root, 2).data()[1000] = 0x33;
  // QEMU 7.2 returns the last child's version here (observed with qemu-io read -v).
  std::vector<uint8_t> back = read(*root, 992, 16);
  EXPECT_EQ(back[0], 0x11);
  EXPECT_EQ(back[8], 0x33);
  for (std::size_t i = 0; i < 3; ++i) EXPECT_EQ(mem(*root, i).data()[1000], 0x33) << i;
  close(*root);
}

TEST_F(QuorumTest, FifoReadsTheFirstChildThatAnswers) {
  NodePtr root = open_quorum(2, R"("vote-threshold":2,"read-pattern":"fifo",)");
  ASSERT_TRUE(root);
  ASSERT_OK(write(*root, 0, 4 * kKiB, 0x11));
  mem(*root, 1).data()[0] = 0x22;
  EXPECT_TRUE(all(read(*root, 0, 4 * kKiB), 0x11));
  close(*root);
}

TEST_F(QuorumTest, BlkverifyModeReportsTheFirstDifference) {
  NodePtr root = open_quorum(2, R"("vote-threshold":2,"blkverify":true,)");
  ASSERT_TRUE(root);
  ASSERT_OK(write(*root, 0, 4 * kKiB, 0x11));
  mem(*root, 1).data()[1000] = 0x22;
  EXPECT_FALSE(try_read(*root, 992, 16));
  EXPECT_EQ(
      messages_,
      (std::vector<std::string>{"quorum: offset=992 bytes=16 contents mismatch at offset 1000"}));
  close(*root);
}

TEST_F(QuorumTest, ZeroFlagsAreTheChildrensIntersection) {
  NodePtr root = open(graph(2, R"("vote-threshold":1,)", R"(,"efficient-zeroes":true,"fua":true)"));
  ASSERT_TRUE(root);
  EXPECT_EQ(root->supported_write_flags(), RequestFlags(RequestFlag::kWriteUnchanged));
  EXPECT_EQ(root->supported_zero_flags(), RequestFlags(RequestFlag::kWriteUnchanged) |
                                              RequestFlag::kMayUnmap | RequestFlag::kNoFallback);
  close(*root);
  NodePtr mixed =
      open(R"({"driver":"quorum","vote-threshold":1,"children":[{"driver":"memory",)"
           R"("size":65536,"efficient-zeroes":true},{"driver":"memory","size":65536}]})");
  ASSERT_TRUE(mixed);
  EXPECT_EQ(mixed->supported_zero_flags(), RequestFlags(RequestFlag::kWriteUnchanged));
  close(*mixed);
}

TEST_F(QuorumTest, OpenErrorsAreQemus) {
  // Messages observed with qemu-io 7.2.
  EXPECT_EQ(open_error(R"({"driver":"quorum","vote-threshold":1})"),
            "Number of provided children must be 1 or more");
  EXPECT_EQ(open_error(graph(3, "")), "Parameter 'vote-threshold' expects a value >= 1");
  EXPECT_EQ(open_error(graph(3, R"("vote-threshold":0,)")),
            "Parameter 'vote-threshold' expects a value >= 1");
  EXPECT_EQ(open_error(graph(3, R"("vote-threshold":4,)")),
            "threshold may not exceed children count");
  EXPECT_EQ(open_error(graph(3, R"("vote-threshold":2,"read-pattern":"foo",)")),
            "Please set read-pattern as fifo or quorum");
  EXPECT_EQ(open_error(graph(3, R"("vote-threshold":2,"blkverify":true,)")),
            "blkverify=on can only be set if there are exactly two files and vote-threshold is 2");
  EXPECT_EQ(
      open_error(graph(2, R"("vote-threshold":2,"blkverify":true,"rewrite-corrupted":true,)")),
      "rewrite-corrupted=on cannot be used with blkverify=on");
  EXPECT_EQ(
      open_error(graph(3, R"("vote-threshold":2,"read-pattern":"fifo","rewrite-corrupted":true,)")),
      "(opened)");
  EXPECT_EQ(open_error(R"({"driver":"quorum","vote-threshold":1,"children":[{"driver":"memory",)"
                       R"("size":65536},{"driver":"memory","size":131072}]})"),
            "Could not refresh total sector count: Input/output error");
  // Dotted keys make "children" an object keyed by index.
  EXPECT_EQ(open_error(R"({"driver":"quorum","vote-threshold":1,"children":{"0":{"driver":)"
                       R"("memory","size":65536}}})"),
            "(opened)");
}

}  // namespace
}  // namespace qblock
