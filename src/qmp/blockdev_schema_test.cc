// Tests for blockdev-add's schema check (schema.h, check_blockdev_options): QEMU 7.2's messages
// and order for wrong types, enum values, missing and unexpected members, nested and in lists.
// tests/qmp/blockdev_types.qmp compares the same against qemu-storage-daemon.
#include <gtest/gtest.h>

#include "qblock/driver/driver.h"
#include "qmp/schema.h"

namespace qblock::qmp {
namespace {

// The check's message for `json`, or "" when it passes.
std::string check(const char* json) {
  std::optional<QmpError> e = check_blockdev_options(Options::parse(json), "");
  return e ? e->desc : "";
}

TEST(BlockdevSchemaTest, ValidArgumentsPass) {
  EXPECT_EQ(check(R"({"driver":"file","filename":"a","cache":{"direct":true},"aio":"native"})"),
            "");
  EXPECT_EQ(check(R"({"driver":"qcow2","file":"f","backing":null,"l2-cache-size":1048576,
                      "overlap-check":"cached","encrypt":{"format":"luks","key-secret":"s"}})"),
            "");
  EXPECT_EQ(check(R"({"driver":"quorum","children":["a",{"driver":"file","filename":"b"}],
                      "vote-threshold":1})"),
            "");
  EXPECT_EQ(check(R"({"driver":"nbd","server":{"type":"unix","path":"/s"},"reconnect-delay":5})"),
            "");
  // Members qblock ignores are still part of QEMU's schema.
  EXPECT_EQ(check(R"({"driver":"file","filename":"a","drop-cache":false,"aio-max-batch":3})"), "");
}

TEST(BlockdevSchemaTest, TypesAndEnums) {
  EXPECT_EQ(check(R"({"driver":"file","filename":"a","cache":{"direct":"yes"}})"),
            "Invalid parameter type for 'cache.direct', expected: boolean");
  EXPECT_EQ(check(R"({"driver":"file","filename":42})"),
            "Invalid parameter type for 'filename', expected: string");
  EXPECT_EQ(check(R"({"driver":"qcow2","file":"f","l2-cache-size":"1M"})"),
            "Invalid parameter type for 'l2-cache-size', expected: integer");
  EXPECT_EQ(check(R"({"driver":"qcow2","file":"f","l2-cache-size":9223372036854775808})"),
            "Invalid parameter type for 'l2-cache-size', expected: integer");
  EXPECT_EQ(check(R"({"driver":"file","filename":"a","aio":"bogus"})"),
            "Parameter 'aio' does not accept value 'bogus'");
  EXPECT_EQ(check(R"({"driver":"qcow2","file":{"driver":"file","filename":"a","aio":"x"}})"),
            "Parameter 'aio' does not accept value 'x'");
  EXPECT_EQ(check(R"({"driver":"file","filename":"a","discard":"on"})"),
            "Parameter 'discard' does not accept value 'on'");
  EXPECT_EQ(check(R"({"driver":"qcow2","file":3})"),
            "Invalid parameter type for 'file', expected: BlockdevRef");
  EXPECT_EQ(check(R"({"driver":"qcow2","file":"f","backing":3})"),
            "Invalid parameter type for 'backing', expected: BlockdevRefOrNull");
  EXPECT_EQ(check(R"({"driver":"qcow2","file":"f","overlap-check":3})"),
            "Invalid parameter type for 'overlap-check', expected: Qcow2OverlapChecks");
  EXPECT_EQ(check(R"({"driver":"null-co","latency-ns":"5"})"),
            "Parameter 'latency-ns' expects uint64");
  EXPECT_EQ(check(R"({"driver":"null-co","latency-ns":-5})"), "");  // QEMU wraps it
  EXPECT_EQ(check(R"({"driver":"nbd","server":{"type":"inet","host":"h","port":"1","to":70000}})"),
            "Parameter 'to' expects uint16_t");
}

TEST(BlockdevSchemaTest, ListsNameTheirElements) {
  EXPECT_EQ(check(R"({"driver":"quorum","children":[3],"vote-threshold":1})"),
            "Invalid parameter type for 'null', expected: BlockdevRef");
  EXPECT_EQ(check(R"({"driver":"quorum","children":[{"driver":"file","filename":"a","x":1}],
                      "vote-threshold":1})"),
            "Parameter 'children[0].x' is unexpected");
  EXPECT_EQ(check(R"({"driver":"blkdebug","image":"i","inject-error":[{"event":"l2_load",
                      "errno":"5"}]})"),
            "Invalid parameter type for 'inject-error[0].errno', expected: integer");
  EXPECT_EQ(check(R"({"driver":"blkdebug","image":"i","take-child-perms":["bogus"]})"),
            "Parameter 'null' does not accept value 'bogus'");
}

TEST(BlockdevSchemaTest, OrderMissingAndUnexpected) {
  // Base members come first, then the driver's, then keys neither names.
  EXPECT_EQ(check(R"({"driver":"file","node-name":"n","filename":3,"read-only":"x"})"),
            "Invalid parameter type for 'read-only', expected: boolean");
  EXPECT_EQ(check(R"({"driver":"qcow2","file":"f","lazy-refcounts":1,"bogus":2})"),
            "Invalid parameter type for 'lazy-refcounts', expected: boolean");
  EXPECT_EQ(check(R"({"driver":"qcow2","file":{"driver":"file","filename":"a","x":3},
                      "lazy-refcounts":1})"),
            "Parameter 'file.x' is unexpected");
  EXPECT_EQ(check(R"({"driver":"file","filename":"a","cache":{"bogus":true}})"),
            "Parameter 'cache.bogus' is unexpected");
  EXPECT_EQ(check(R"({"driver":"file"})"), "Parameter 'filename' is missing");
  EXPECT_EQ(check(R"({"driver":"qcow2","file":{"filename":"a"}})"),
            "Parameter 'file.driver' is missing");
  EXPECT_EQ(check(R"({"driver":"qcow2","file":{"driver":"bogus"}})"),
            "Parameter 'driver' does not accept value 'bogus'");
  EXPECT_EQ(check(R"({"driver":"nbd","server":{"path":"/s"}})"),
            "Parameter 'server.type' is missing");
  EXPECT_EQ(check(R"({"driver":"nbd","server":{"type":"unix","path":"/s","x":1}})"),
            "Parameter 'server.x' is unexpected");
}

// Every registered driver that QEMU's schema knows has a member table: an unknown key is
// reported as unexpected (or a required member as missing), never the driver as unknown.
TEST(BlockdevSchemaTest, EveryRegisteredDriverHasMembers) {
  for (const DriverEntry& d : driver_registry()) {
    Options args = {{"driver", std::string(d.name)}, {"x-not-a-member", 1}};
    std::optional<QmpError> e = check_blockdev_options(args, "");
    if (!e) continue;  // qblock's own drivers (memory, passthrough, powercut) take any key
    EXPECT_EQ(e->desc.find("does not accept value"), std::string::npos)
        << d.name << ": " << e->desc;
  }
}

}  // namespace
}  // namespace qblock::qmp
