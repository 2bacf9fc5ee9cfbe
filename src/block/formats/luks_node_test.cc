// The luks format node: create_luks_image, then open with the secret, unaligned reads and
// writes (the request layer pads them to sectors), large requests en/decrypted on the worker
// threads, reopen (the data survives), resize, a wrong password, and a no_io open without one.
#include <gtest/gtest.h>

#include <vector>

#include "block/test_util.h"
#include "qblock/luks_image.h"
#include "qblock/user_objects.h"

namespace qblock {
namespace {

class LuksNodeTest : public testing::LoopTest {
 protected:
  void SetUp() override {
    LoopTest::SetUp();
    if (!user_objects().contains("luks-test-pw")) {
      ASSERT_TRUE(user_objects().add("secret,id=luks-test-pw,data=hunter2").has_value());
      ASSERT_TRUE(user_objects().add("secret,id=luks-test-bad,data=hunter3").has_value());
    }
    path_ = dir_.file("v.luks");
    LuksImageOptions o;
    o.filename = path_;
    o.size = 4 << 20;
    o.key_secret = "luks-test-pw";
    o.iter_time_ms = 1;
    Status s = run_sync(*loop_, create_luks_image(*loop_, o));
    ASSERT_TRUE(s.has_value()) << s.error().message();
  }
  std::string json(const std::string& secret) {
    return R"({"driver":"luks","key-secret":")" + secret +
           R"(","file":{"driver":"file","filename":")" + path_ + R"("}})";
  }

  testing::TempDir dir_;
  std::string path_;
};

TEST_F(LuksNodeTest, WritesReadBackAcrossReopen) {
  std::vector<uint8_t> big(3 << 20), small(777, 0xa5), back(3 << 20);
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<uint8_t>(i * 7 + (i >> 12));
  {
    NodePtr node = open(json("luks-test-pw"));
    ASSERT_TRUE(node);
    EXPECT_EQ(node->length(), 4u << 20);
    ASSERT_TRUE(run_sync(*loop_, node->write(4096, IoVec(big.data(), big.size()))).has_value());
    ASSERT_TRUE(run_sync(*loop_, node->write(1000, IoVec(small.data(), small.size()))).has_value());
    close(*node);
  }
  NodePtr node = open(json("luks-test-pw"));
  ASSERT_TRUE(node);
  ASSERT_TRUE(run_sync(*loop_, node->read(4096, IoVec(back.data(), back.size()))).has_value());
  EXPECT_EQ(back, big);
  std::vector<uint8_t> got(777);
  ASSERT_TRUE(run_sync(*loop_, node->read(1000, IoVec(got.data(), got.size()))).has_value());
  EXPECT_EQ(got, small);
  ASSERT_TRUE(run_sync(*loop_, node->truncate(8 << 20, PreallocMode::kOff)).has_value());
  EXPECT_EQ(node->length(), 8u << 20);
  close(*node);
}

TEST_F(LuksNodeTest, WrongPasswordAndNoIo) {
  Result<NodePtr> bad =
      run_sync(*loop_, open_node(*loop_, Options::parse(json("luks-test-bad")), {}, ""));
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().message(), "Invalid password, cannot unlock any keyslot");
  const std::string no_secret =
      R"({"driver":"luks","file":{"driver":"file","filename":")" + path_ + R"("}})";
  Result<NodePtr> none = run_sync(*loop_, open_node(*loop_, Options::parse(no_secret), {}, ""));
  ASSERT_FALSE(none.has_value());
  EXPECT_EQ(none.error().message(), "Parameter 'key-secret' is required for cipher");
  OpenFlags no_io;
  no_io.no_io = true;
  NodePtr described = open(no_secret, no_io);
  ASSERT_TRUE(described);
  EXPECT_EQ(described->info().format_name, "luks");
  close(*described);
}

}  // namespace
}  // namespace qblock
