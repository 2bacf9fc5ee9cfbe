// Tests of the rbd driver's filename and option parsing against what qemu-img 7.2 accepts,
// rejects and prints (the messages and names were observed with `qemu-img info`).
#include "block/protocols/rbd_address.h"

#include <gtest/gtest.h>

#include "base/test_macros.h"

namespace qblock::rbd_client {
namespace {

Result<RbdAddress> address_of(const std::string& filename) {
  Options o = Options::object();
  o["filename"] = filename;
  return take_rbd_address(o);
}

std::string error_of(const std::string& filename) {
  Result<RbdAddress> a = address_of(filename);
  return a ? std::string("(no error)") : a.error().message();
}

TEST(RbdAddressTest, PoolAndImage) {
  Result<RbdAddress> a = address_of("rbd:rbd/disk1");
  ASSERT_OK(a);
  EXPECT_EQ(a->pool, "rbd");
  EXPECT_EQ(a->image, "disk1");
  EXPECT_EQ(a->ns, "");
  EXPECT_FALSE(a->has_snapshot);
  EXPECT_EQ(a->display(), "rbd/disk1");
  EXPECT_EQ(a->qemu_json(),
            R"({"pool": "rbd", "image": "disk1", "driver": "rbd", "namespace": ""})");
}

TEST(RbdAddressTest, NamespaceSnapshotAndOptions) {
  Result<RbdAddress> a = address_of("rbd:p/ns/img@snap:conf=/etc/c.conf:id=admin:rbd_cache=false");
  ASSERT_OK(a);
  EXPECT_EQ(a->pool, "p");
  EXPECT_EQ(a->ns, "ns");
  EXPECT_EQ(a->image, "img");
  EXPECT_EQ(a->snapshot, "snap");
  EXPECT_EQ(a->conf, "/etc/c.conf");
  EXPECT_EQ(a->user, "admin");
  ASSERT_EQ(a->config.size(), 1u);
  EXPECT_EQ(a->config[0].first, "rbd_cache");
  EXPECT_EQ(a->config[0].second, "false");
  EXPECT_EQ(a->qemu_json(),
            R"({"pool": "p", "image": "img", "snapshot": "snap", "conf": "/etc/c.conf", )"
            R"("driver": "rbd", "namespace": "ns", "user": "admin"})");
}

TEST(RbdAddressTest, EscapesAndEmptySnapshot) {
  Result<RbdAddress> a = address_of(R"(rbd:rbd/r\:x@)");
  ASSERT_OK(a);
  EXPECT_EQ(a->image, "r:x");
  EXPECT_TRUE(a->has_snapshot);
  EXPECT_EQ(a->snapshot, "");
}

TEST(RbdAddressTest, Errors) {
  EXPECT_EQ(error_of("rbd:rbd"), "Pool name is required");
  EXPECT_EQ(error_of("rbd:rbd/x:conf"), "conf option conf has no value");
  Options no_image = Options::object();
  no_image["pool"] = "rbd";
  Result<RbdAddress> a = take_rbd_address(no_image);
  ASSERT_FALSE(a);
  EXPECT_EQ(a.error().message(), "Parameter 'image' is missing");
  Options none = Options::object();
  Result<RbdAddress> b = take_rbd_address(none);
  ASSERT_FALSE(b);
  EXPECT_EQ(b.error().message(), "Parameter 'pool' is missing");
}

TEST(RbdAddressTest, OptionsTreeAndServers) {
  Options o = Options::parse(
      R"({"pool": "rbd", "image": "x", "user": "u",
          "server": [{"host": "127.0.0.1", "port": "3300"}, {"host": "::1"}]})");
  Result<RbdAddress> a = take_rbd_address(o);
  ASSERT_OK(a);
  EXPECT_TRUE(o.empty());
  ASSERT_EQ(a->config.size(), 1u);
  EXPECT_EQ(a->config[0].first, "mon_host");
  EXPECT_EQ(a->config[0].second, "127.0.0.1:3300,[::1]");
}

TEST(RbdAddressTest, Prefix) {
  EXPECT_TRUE(has_rbd_prefix("rbd:rbd/x"));
  EXPECT_FALSE(has_rbd_prefix("rbdx"));
  EXPECT_FALSE(has_rbd_prefix("/tmp/rbd:x"));
}

}  // namespace
}  // namespace qblock::rbd_client
