// qemu_json_filename: key orders observed in qemu-img 7.2's "image:" lines.
#include "block/qemu_json_name.h"

#include <gtest/gtest.h>

namespace qblock {
namespace {

TEST(QemuJsonName, KeysComeInQemusBucketOrder) {
  Options raw = Options::parse(
      R"({"driver":"raw","offset":32768,"size":65536,"file":{"driver":"file","filename":"q0.raw"}})");
  EXPECT_EQ(
      qemu_json_filename(raw),
      R"(json:{"offset": 32768, "driver": "raw", "size": 65536, "file": {"driver": "file", "filename": "q0.raw"}})");
  Options null = Options::parse(R"({"driver":"null-co","size":1048576,"read-zeroes":true})");
  EXPECT_EQ(qemu_json_filename(null),
            R"(json:{"read-zeroes": true, "driver": "null-co", "size": 1048576})");
  Options quorum = Options::parse(
      R"({"driver":"quorum","vote-threshold":2,"children":[{"driver":"raw","file":{"driver":"file","filename":"q0.raw"}}]})");
  EXPECT_EQ(
      qemu_json_filename(quorum),
      R"(json:{"children": [{"driver": "raw", "file": {"driver": "file", "filename": "q0.raw"}}], "driver": "quorum", "vote-threshold": 2})");
}

}  // namespace
}  // namespace qblock
