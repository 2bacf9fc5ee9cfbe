// Secrets in the --object registry: data/file/format/keyid/iv as qemu-img 7.2 takes them,
// with its messages (the values below were checked against qemu-io 7.2).
#include <gtest/gtest.h>

#include <string>

#include "qblock/user_objects.h"

namespace qblock {
namespace {

std::string value_of(ObjectRegistry& r, std::string_view id) {
  Result<SecretBytes> s = r.secret(id);
  if (!s) return "error: " + s.error().message();
  return std::string(reinterpret_cast<const char*>(s->data()), s->size());
}

std::string add_error(ObjectRegistry& r, std::string_view definition) {
  Status s = r.add(definition);
  return s ? "ok" : s.error().message();
}

TEST(SecretObjects, RawAndBase64) {
  ObjectRegistry r;
  ASSERT_TRUE(r.add("secret,id=a,data=abc").has_value());
  ASSERT_TRUE(r.add("secret,id=b,data=YWJj,format=base64").has_value());
  ASSERT_TRUE(r.add("secret,id=c,data=YWI=,format=base64").has_value());
  ASSERT_TRUE(r.add("secret,id=d,data=,format=raw").has_value());
  EXPECT_EQ(value_of(r, "a"), "abc");
  EXPECT_EQ(value_of(r, "b"), "abc");
  EXPECT_EQ(value_of(r, "c"), "ab");
  EXPECT_EQ(value_of(r, "d"), "");
  EXPECT_EQ(value_of(r, "x"), "error: No secret with id 'x'");
  ASSERT_TRUE(r.add("iothread,id=io").has_value());
  EXPECT_EQ(value_of(r, "io"), "error: Object with id 'io' is not a secret");
}

TEST(SecretObjects, QemuMessages) {
  ObjectRegistry r;
  EXPECT_EQ(add_error(r, "secret,id=s"), "Either 'file' or 'data' must be provided");
  EXPECT_EQ(add_error(r, "secret,id=s,data=a,file=/x"), "'file' and 'data' are mutually exclusive");
  EXPECT_EQ(add_error(r, "secret,id=s,data=a,format=hex"),
            "Parameter 'format' does not accept value 'hex'");
  EXPECT_EQ(add_error(r, "secret,id=s,data=a,bogus=1"), "Parameter 'bogus' is unexpected");
  EXPECT_EQ(add_error(r, "secret,id=s,data=@@@,format=base64"),
            "Base64 data contains invalid characters");
  EXPECT_EQ(add_error(r, "secret,id=s,file=/nonexistent"),
            "Unable to read /nonexistent: Failed to open file \u201c/nonexistent\u201d: No such "
            "file or directory");
  EXPECT_EQ(add_error(r, "secret,id=s,data=a,keyid=k"), "No secret with id 'k'");
  ASSERT_EQ(add_error(r, "secret,id=short,data=a"), "ok");
  EXPECT_EQ(add_error(r, "secret,id=s,data=a,keyid=short"), "Key should be 32 bytes in length");
  ASSERT_EQ(add_error(r, "secret,id=k,data=0123456789abcdef0123456789abcdef"), "ok");
  EXPECT_EQ(add_error(r, "secret,id=s,data=a,keyid=k"), "IV is required to decrypt secret");
  EXPECT_EQ(add_error(r, "secret,id=s,data=a,keyid=k,iv=abc"),
            "IV should be 16 bytes in length not 0");
  EXPECT_EQ(add_error(r, "secret,id=s,data=YWJj,keyid=k,iv=MDEyMzQ1Njc4OWFiY2RlZg=="),
            "Length 4 must be a multiple of block size 16");
  EXPECT_FALSE(r.contains("s"));
}

TEST(SecretObjects, KeyIdDecrypts) {
  ObjectRegistry r;
  ASSERT_TRUE(r.add("secret,id=k,data=0123456789abcdef0123456789abcdef").has_value());
  // printf abc | openssl enc -aes-256-cbc -K <hex of k> -iv <hex of 0123456789abcdef> | base64
  Status s = r.add(
      "secret,id=s,data=8i/78fXGKXul18RKAZ88kw==,format=base64,keyid=k,"
      "iv=MDEyMzQ1Njc4OWFiY2RlZg==");
  ASSERT_TRUE(s.has_value()) << s.error().message();
  EXPECT_EQ(value_of(r, "s"), "abc");
}

}  // namespace
}  // namespace qblock
