#include "block/node_reference.h"

#include <gtest/gtest.h>

#include <vector>

#include "block/test_util.h"

namespace qblock {
namespace {

class NodeReferenceTest : public testing::LoopTest {};

TEST_F(NodeReferenceTest, StringChildIsRefusedWithoutAResolver) {
  Result<NodePtr> node = run_sync(
      *loop_, open_node(*loop_, Options::parse(R"({"driver":"raw","file":"proto"})"), {}, ""));
  ASSERT_FALSE(node.has_value());
  EXPECT_EQ(node.error().message(), "Cannot find device='proto' nor node-name='proto'");
}

TEST_F(NodeReferenceTest, TwoParentsShareOneNodeThatOutlivesThem) {
  NodePtr proto = open(R"({"driver":"memory","size":65536})");
  ASSERT_TRUE(proto);
  ScopedNodeResolver resolver(
      [&](const std::string& name) { return name == "proto" ? proto.get() : nullptr; });
  NodePtr a = open(R"({"driver":"raw","file":"proto"})");
  NodePtr b = open(R"({"driver":"raw","file":"proto","read-only":true})");
  ASSERT_TRUE(a && b);
  EXPECT_EQ(referenced_node(*a->primary_child()), proto.get());
  EXPECT_EQ(a->length(), 65536u);

  std::vector<uint8_t> data(4096, 0x5a);
  ASSERT_OK(run_sync(*loop_, a->write(4096, IoVec(data.data(), data.size()))));
  std::vector<uint8_t> back(4096);
  ASSERT_OK(run_sync(*loop_, b->read(4096, IoVec(back.data(), back.size()))));
  EXPECT_EQ(back, data);

  // Closing the parents leaves the shared node open and usable.
  close(*a);
  close(*b);
  a.reset();
  b.reset();
  std::fill(back.begin(), back.end(), 0);
  ASSERT_OK(run_sync(*loop_, proto->read(4096, IoVec(back.data(), back.size()))));
  EXPECT_EQ(back, data);
  close(*proto);
}

}  // namespace
}  // namespace qblock
