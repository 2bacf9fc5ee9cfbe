// raw format tests: the offset/size window (reads and writes land inside it, QEMU 7.2's open
// checks and messages, resizing), flags inherited from the file.
#include "block/formats/raw.h"

#include <gtest/gtest.h>

#include "block/protocols/memory.h"
#include "block/test_util.h"
#include "qblock/options.h"

namespace qblock {
namespace {

class RawWindowTest : public testing::LoopTest {
 protected:
  std::string graph(const std::string& window, const std::string& memory_extra = "") {
    return R"({"driver":"raw",)" + window + R"("file":{"driver":"memory","size":1048576)" +
           memory_extra + "}}";
  }
  std::string open_error(const std::string& json) {
    Result<NodePtr> node = run_sync(*loop_, open_node(*loop_, Options::parse(json), {}, ""));
    if (node) {
      close(**node);
      return "(opened)";
    }
    return node.error().message();
  }
};

TEST_F(RawWindowTest, RequestsLandInsideTheWindow) {
  NodePtr root = open(graph(R"("offset":4096,"size":8192,)"));
  ASSERT_TRUE(root);
  EXPECT_EQ(root->length(), 8192u);
  std::vector<uint8_t> buf(4096, 0x11);
  ASSERT_OK(run_sync(*loop_, root->write(0, IoVec(buf.data(), buf.size()))));
  auto& mem = static_cast<MemoryNode&>(*root->primary_child());
  EXPECT_EQ(mem.data()[4095], 0);
  EXPECT_EQ(mem.data()[4096], 0x11);
  EXPECT_EQ(mem.data()[8191], 0x11);
  EXPECT_EQ(mem.data()[8192], 0);
  Status resize = run_sync(*loop_, root->truncate(16384));
  ASSERT_FALSE(resize);
  EXPECT_EQ(resize.error().message(), "Cannot resize fixed-size raw disks");
  close(*root);
}

TEST_F(RawWindowTest, AWindowWithOnlyAnOffsetMovesItsEnd) {
  NodePtr root = open(graph(R"("offset":1048576,)"));
  ASSERT_TRUE(root);
  EXPECT_EQ(root->length(), 0u);
  ASSERT_OK(run_sync(*loop_, root->truncate(16384)));
  EXPECT_EQ(root->length(), 16384u);
  EXPECT_EQ(root->primary_child()->length(), 1048576u + 16384u);
  close(*root);
}

TEST_F(RawWindowTest, OpenChecksAreQemus) {
  // Messages observed with qemu-io 7.2 (the double space is QEMU's).
  EXPECT_EQ(open_error(graph(R"("offset":4096,"size":2097152,)")),
            "The sum of offset (4096) and size (2097152) has to be smaller or equal to the  "
            "actual size of the containing file (1048576)");
  EXPECT_EQ(open_error(graph(R"("offset":2097152,"size":512,)")),
            "Offset (2097152) cannot be greater than size of the containing file (1048576)");
  EXPECT_EQ(open_error(graph(R"("offset":2097152,)")),
            "Offset (2097152) cannot be greater than size of the containing file (1048576)");
  EXPECT_EQ(open_error(graph(R"("size":100,)")), "Specified size is not multiple of 512");
  EXPECT_EQ(open_error(graph(R"("offset":"-1",)")),
            "Parameter 'offset' expects a non-negative number below 2^64");
  EXPECT_EQ(open_error(graph(R"("offset":100,)")), "(opened)");
  EXPECT_EQ(open_error(graph(R"("offset":1048576,"size":0,)")), "(opened)");
}

TEST_F(RawWindowTest, InheritsTheFilesFlags) {
  NodePtr root = open(graph(R"("offset":512,)", R"(,"efficient-zeroes":true,"fua":true)"));
  ASSERT_TRUE(root);
  EXPECT_EQ(root->supported_write_flags(), RequestFlag::kWriteUnchanged | RequestFlag::kFua);
  EXPECT_TRUE(root->supported_zero_flags().has(RequestFlag::kNoFallback));
  EXPECT_TRUE(root->supported_zero_flags().has(RequestFlag::kMayUnmap));
  close(*root);
}

TEST(NullDriver, NamesAndStatusAreQemus) {
  auto loop = EventLoop::create();
  ASSERT_TRUE(loop);
  for (const char* name : {"null-co", "null-aio"}) {
    Result<NodePtr> node =
        run_sync(**loop, open_node(**loop,
                                   Options::parse(std::string(R"({"driver":")") + name +
                                                  R"(","size":1048576,"read-zeroes":true})"),
                                   {}, ""));
    ASSERT_TRUE(node);
    EXPECT_EQ((*node)->driver_name(), name);
    // Named by the options given, in QEMU's key order.
    EXPECT_EQ((*node)->filename(), std::string(R"(json:{"read-zeroes": true, "driver": ")") + name +
                                       R"(", "size": 1048576})");
    NodeInfo info = (*node)->info();
    EXPECT_EQ(info.format_name, name);
    EXPECT_EQ(info.protocol_name, name);
    EXPECT_TRUE(info.name_only);
    Result<BlockStatus> st = run_sync(**loop, (*node)->block_status(4096, 8192, WantZero::kYes));
    ASSERT_TRUE(st);
    EXPECT_EQ(st->flags, uint32_t{kStatusZero | kStatusOffsetValid | kStatusAllocated});
    EXPECT_EQ(st->host_offset, 4096u);
    EXPECT_TRUE(run_sync(**loop, (*node)->close()));
  }
}

}  // namespace
}  // namespace qblock
