// Unit tests of convert's -l parser against what qemu-img 7.2 accepts and reports (033 holds
// the same cases end to end).
#include "qblock/snapshot_param.h"

#include <gtest/gtest.h>

namespace qblock::tools {
namespace {

TEST(SnapshotParamTest, BareTextIsAnIdOrName) {
  for (const char* text : {"s1", "1", "", "id=1", "s1,x", "snapshot"}) {
    SnapshotParamParse p = parse_snapshot_param(text);
    EXPECT_EQ(p.param.id_or_name, std::optional<std::string>(text));
    EXPECT_FALSE(p.param.id);
    EXPECT_FALSE(p.param.name);
    EXPECT_TRUE(p.bare_keys.empty());
    EXPECT_FALSE(p.invalid_key);
  }
}

TEST(SnapshotParamTest, IdAndName) {
  SnapshotParamParse p = parse_snapshot_param("snapshot.id=3,snapshot.name=1");
  EXPECT_EQ(p.param.id, std::optional<std::string>("3"));
  EXPECT_EQ(p.param.name, std::optional<std::string>("1"));
  EXPECT_FALSE(p.param.id_or_name);
  EXPECT_FALSE(p.invalid_key);

  p = parse_snapshot_param("snapshot.name=s1");
  EXPECT_FALSE(p.param.id);
  EXPECT_EQ(p.param.name, std::optional<std::string>("s1"));

  p = parse_snapshot_param("snapshot.id=1,snapshot.id=2");  // the last one wins
  EXPECT_EQ(p.param.id, std::optional<std::string>("2"));

  p = parse_snapshot_param("snapshot.name=s1,,x");  // ",," is a comma
  EXPECT_EQ(p.param.name, std::optional<std::string>("s1,x"));
  EXPECT_FALSE(p.invalid_key);

  p = parse_snapshot_param("snapshot.id=");
  EXPECT_EQ(p.param.id, std::optional<std::string>(""));
}

TEST(SnapshotParamTest, BareKeysAndInvalidKeysInOrder) {
  SnapshotParamParse p = parse_snapshot_param("snapshot.foo=1");
  EXPECT_EQ(p.invalid_key, std::optional<std::string>("snapshot.foo"));
  EXPECT_TRUE(p.bare_keys.empty());

  // qemu-img: the warning for 'x', then "Invalid parameter 'x'"; nothing about what follows.
  p = parse_snapshot_param("snapshot.name=s1,x,snapshot.id,y=2");
  EXPECT_EQ(p.bare_keys, std::vector<std::string>{"x"});
  EXPECT_EQ(p.invalid_key, std::optional<std::string>("x"));

  // A bare valid key is a deprecated boolean: "on".
  p = parse_snapshot_param("snapshot.id,snapshot.name=s1");
  EXPECT_EQ(p.bare_keys, std::vector<std::string>{"snapshot.id"});
  EXPECT_EQ(p.param.id, std::optional<std::string>("on"));
  EXPECT_EQ(p.param.name, std::optional<std::string>("s1"));
  EXPECT_FALSE(p.invalid_key);
}

}  // namespace
}  // namespace qblock::tools
