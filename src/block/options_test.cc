// Option-tree and size parsing (qemu-compat.md §1.2, §5.2, §5.3).
#include "qblock/options.h"

#include <gtest/gtest.h>

namespace qblock {
namespace {

TEST(ParseSize, AcceptsQemuSyntax) {
  EXPECT_EQ(*parse_size("512"), 512u);
  EXPECT_EQ(*parse_size("010"), 10u);  // not octal
  EXPECT_EQ(*parse_size("0x10"), 16u);
  EXPECT_EQ(*parse_size("1k"), 1024u);
  EXPECT_EQ(*parse_size("1K"), 1024u);
  EXPECT_EQ(*parse_size("1.5k"), 1536u);
  EXPECT_EQ(*parse_size("0.5M"), 524288u);
  EXPECT_EQ(*parse_size("1.25k"), 1280u);
  EXPECT_EQ(*parse_size(" 1k"), 1024u);
  EXPECT_EQ(*parse_size("2G"), 2ULL << 30);
  EXPECT_EQ(*parse_size("7E"), 7ULL << 60);
}

TEST(ParseSize, RejectsMalformedAndHugeValues) {
  for (const char* bad : {"1.5", "1kb", "1KiB", "0x", "abc", "", "-1", "0x1k"}) {
    EXPECT_FALSE(parse_size(bad)) << bad;
  }
  auto huge = parse_size("9E");
  ASSERT_FALSE(huge);
  EXPECT_EQ(huge.error().errnum(), ERANGE);
}

TEST(KeyValueOptions, NestsDottedKeysAndUnescapesCommas) {
  auto o = parse_key_value_options("driver=raw,file.driver=file,file.filename=a,,b.img", "file");
  ASSERT_TRUE(o);
  EXPECT_EQ((*o)["driver"], "raw");
  EXPECT_EQ((*o)["file"]["driver"], "file");
  EXPECT_EQ((*o)["file"]["filename"], "a,b.img");
}

TEST(KeyValueOptions, FirstBareWordIsTheImpliedKey) {
  auto o = parse_key_value_options("pf.qcow2,read-only=on", "file");
  ASSERT_TRUE(o);
  EXPECT_EQ((*o)["file"], "pf.qcow2");
  EXPECT_EQ((*o)["read-only"], "on");
}

TEST(JsonOptions, AcceptsSingleQuotesAndMixedDottedKeys) {
  auto o = parse_json_options(
      "{'driver':'raw','file':{'driver':'blkdebug','image.filename':'t.raw',"
      "'inject-error':[{'event':'write_aio','state':2}]}}");
  ASSERT_TRUE(o) << o.error().message();
  EXPECT_EQ((*o)["file"]["image"]["filename"], "t.raw");
  EXPECT_EQ((*o)["file"]["inject-error"][0]["state"], 2);
}

TEST(JsonOptions, RejectsNonObjects) {
  EXPECT_FALSE(parse_json_options("[1,2]"));
  EXPECT_FALSE(parse_json_options("{'driver':"));
}

TEST(JsonFilename, PrintsLikeQemu) {
  Options o = Options::parse(R"({"driver":"raw","file":{"driver":"file","filename":"x"}})");
  EXPECT_EQ(options_to_json_filename(o),
            R"(json:{"driver": "raw", "file": {"driver": "file", "filename": "x"}})");
}

}  // namespace
}  // namespace qblock
