// Tests of the nbd driver's filename and address parsing against what qemu-img 7.2 accepts
// and rejects (the messages were observed with `qemu-img info`).
#include "block/protocols/nbd_address.h"

#include <gtest/gtest.h>

#include "base/test_macros.h"

namespace qblock::nbd_client {
namespace {

// Parses `filename` the way the driver does and returns the address or the error message.
Result<NbdAddress> address_of(const std::string& filename) {
  Options o = Options::object();
  o["filename"] = filename;
  return take_nbd_address(o);
}

std::string error_of(const std::string& filename) {
  Result<NbdAddress> a = address_of(filename);
  return a ? std::string("(no error)") : a.error().message();
}

TEST(NbdAddressTest, UnixUri) {
  Result<NbdAddress> a = address_of("nbd+unix:///exp?socket=/run/x.sock");
  ASSERT_OK(a);
  EXPECT_EQ(a->type, NbdAddress::Type::kUnix);
  EXPECT_EQ(a->path, "/run/x.sock");
  EXPECT_EQ(a->export_name, "exp");
  EXPECT_EQ(a->uri(), "nbd+unix:///exp?socket=/run/x.sock");
  EXPECT_EQ(a->display(), "/run/x.sock");
}

TEST(NbdAddressTest, TcpUriDefaultsPortAndDecodes) {
  Result<NbdAddress> a = address_of("nbd://127.0.0.1/my%20disk");
  ASSERT_OK(a);
  EXPECT_EQ(a->type, NbdAddress::Type::kInet);
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, "10809");
  EXPECT_EQ(a->export_name, "my disk");
  EXPECT_EQ(a->display(), "127.0.0.1:10809");

  Result<NbdAddress> b = address_of("nbd+tcp://[::1]:10810");
  ASSERT_OK(b);
  EXPECT_EQ(b->host, "::1");
  EXPECT_EQ(b->port, "10810");
  EXPECT_EQ(b->export_name, "");
  EXPECT_EQ(b->uri(), "nbd://[::1]:10810");
}

TEST(NbdAddressTest, LegacySyntax) {
  Result<NbdAddress> a = address_of("nbd:unix:/x.sock:exportname=e");
  ASSERT_OK(a);
  EXPECT_EQ(a->type, NbdAddress::Type::kUnix);
  EXPECT_EQ(a->path, "/x.sock");
  EXPECT_EQ(a->export_name, "e");
  Result<NbdAddress> b = address_of("nbd:localhost:1");
  ASSERT_OK(b);
  EXPECT_EQ(b->display(), "localhost:1");
  EXPECT_EQ(error_of("nbd:localhost"), "error parsing address 'localhost'");
}

TEST(NbdAddressTest, BadUrisAsQemu) {
  EXPECT_EQ(error_of("nbd://"), "No valid URL specified");
  EXPECT_EQ(error_of("nbd+unix:///"), "No valid URL specified");
  EXPECT_EQ(error_of("nbd:///?foo=bar"), "No valid URL specified");
  EXPECT_EQ(error_of("nbd+unix:///exp?socket=/x&foo=1"), "No valid URL specified");
  EXPECT_EQ(error_of("nbd://host:abc/"), "No valid URL specified");
  EXPECT_EQ(error_of("nbd+unix://host/?socket=/x"), "No valid URL specified");
  EXPECT_EQ(error_of("nbd+bogus://x/"), "Unknown protocol 'nbd+bogus'");
  // 7.2 has no nbds:// (TLS is asked for with tls-creds).
  EXPECT_EQ(error_of("nbds+unix:///?socket=/x"), "Unknown protocol 'nbds+unix'");
}

TEST(NbdAddressTest, OptionTree) {
  Options o = Options::parse(R"({"server":{"type":"inet","host":"h","port":"99"},"export":"e"})");
  Result<NbdAddress> a = take_nbd_address(o);
  ASSERT_OK(a);
  EXPECT_EQ(a->uri(), "nbd://h:99/e");
  EXPECT_TRUE(o.empty());

  Options legacy = Options::parse(R"({"path":"/s","export":"e"})");
  Result<NbdAddress> b = take_nbd_address(legacy);
  ASSERT_OK(b);
  EXPECT_EQ(b->uri(), "nbd+unix:///e?socket=/s");
}

TEST(NbdAddressTest, OptionTreeErrorsAsQemu) {
  auto error = [](const char* json) {
    Options o = Options::parse(json);
    Result<NbdAddress> a = take_nbd_address(o);
    return a ? std::string("(no error)") : a.error().message();
  };
  EXPECT_EQ(error("{}"), "NBD server address missing");
  EXPECT_EQ(error(R"({"server":{"type":"unix"}})"), "Parameter 'path' is missing");
  EXPECT_EQ(error(R"({"server":{"type":"inet"}})"), "Parameter 'host' is missing");
  EXPECT_EQ(error(R"({"server":{"type":"inet","host":"h"}})"), "Parameter 'port' is missing");
  EXPECT_EQ(error(R"({"server":{"host":"h"}})"), "Parameter 'type' is missing");
  EXPECT_EQ(error(R"({"server":{"type":"bogus"}})"),
            "Parameter 'type' does not accept value 'bogus'");
  EXPECT_EQ(error(R"({"server":{"type":"unix","path":"/x"},"host":"y"})"),
            "Cannot use 'server' and path/host/port at the same time");
}

TEST(NbdAddressTest, Prefixes) {
  EXPECT_TRUE(has_nbd_prefix("nbd://h/"));
  EXPECT_TRUE(has_nbd_prefix("nbd+unix:///?socket=/x"));
  EXPECT_TRUE(has_nbd_prefix("nbds://h/"));
  EXPECT_TRUE(has_nbd_prefix("nbd:unix:/x"));
  EXPECT_FALSE(has_nbd_prefix("nbd.img"));
  EXPECT_FALSE(has_nbd_prefix("dir/nbd:x"));
  EXPECT_FALSE(has_nbd_prefix("nbdx:y"));
}

}  // namespace
}  // namespace qblock::nbd_client
