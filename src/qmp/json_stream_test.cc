// Tests for QMP input framing and the JSON dialect (json_stream.h, json_parser.h): messages
// split across reads or packed into one, QEMU's parse errors, the limits, resynchronisation.
#include "qmp/json_stream.h"

#include <gtest/gtest.h>

#include <string>

#include "qmp/json_parser.h"
#include "qmp/json_writer.h"

namespace qblock::qmp {
namespace {

std::string error_of(const Result<Options>& r) { return r ? "ok" : r.error().message(); }

TEST(JsonStream, SplitsAndJoinsMessagesAcrossReads) {
  JsonStream s;
  EXPECT_TRUE(s.feed("{\"execute\":").empty());
  auto out = s.feed("\"a}\"}  {\"execute\":\"b\"}\n[1,");
  ASSERT_EQ(out.size(), 2u);
  ASSERT_TRUE(out[0]);
  EXPECT_EQ((*out[0])["execute"], "a}");
  EXPECT_EQ((*out[1])["execute"], "b");
  out = s.feed("2]");
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(*out[0], Options::parse("[1,2]"));
}

TEST(JsonStream, TopLevelScalarsEndAtADelimiter) {
  JsonStream s;
  EXPECT_TRUE(s.feed("123").empty());  // more digits may follow, as in QEMU
  auto out = s.feed(" \"x\"");
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(*out[0], 123);
  EXPECT_EQ(*out[1], "x");
}

TEST(JsonStream, StrayCloserIsOneErrorAndTheNextMessageIsServed) {
  JsonStream s;
  auto out = s.feed("{\"a\":1}}{\"b\":2}");
  ASSERT_EQ(out.size(), 3u);
  EXPECT_TRUE(out[0]);
  EXPECT_EQ(error_of(out[1]), "JSON parse error, expecting value");
  EXPECT_EQ((*out[2])["b"], 2);
}

TEST(JsonStream, OversizedMessageIsDroppedWithOneError) {
  JsonStream s(64);
  auto out = s.feed("{\"a\":\"" + std::string(1000, 'x') + "\"}{\"b\":1}");
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(error_of(out[0]), "JSON token size limit exceeded");
  EXPECT_EQ((*out[1])["b"], 1);
}

TEST(JsonStream, BracesInsideStringsDoNotCount) {
  JsonStream s;
  auto out = s.feed("{\"a\":\"{[\\\"\"}{'b':'}'}");
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ((*out[0])["a"], "{[\"");
  EXPECT_EQ((*out[1])["b"], "}");
}

TEST(JsonParser, QemuErrorMessages) {
  EXPECT_EQ(error_of(parse_qmp_json("{\"execute\" \"x\"}")),
            "JSON parse error, missing : in object pair");
  EXPECT_EQ(error_of(parse_qmp_json("{1:2}")), "JSON parse error, key is not a string in object");
  EXPECT_EQ(error_of(parse_qmp_json("[1,]")), "JSON parse error, expecting value");
  EXPECT_EQ(error_of(parse_qmp_json("{\"a\":1,}")), "JSON parse error, expecting value");
  EXPECT_EQ(error_of(parse_qmp_json("{\"a\":tru}")), "JSON parse error, invalid keyword 'tru'");
  EXPECT_EQ(error_of(parse_qmp_json("{\"a\":\"\\q\"}")),
            "JSON parse error, invalid escape sequence in string");
  EXPECT_EQ(error_of(parse_qmp_json(std::string(1025, '[') + std::string(1025, ']'))),
            "JSON nesting depth limit exceeded");
  EXPECT_TRUE(parse_qmp_json(std::string(1024, '[') + std::string(1024, ']')));
}

TEST(JsonParser, ValuesAndEscapes) {
  Result<Options> v = parse_qmp_json(
      "{'s': 'it\\'s', \"u\": \"\\u00e9\\ud83d\\ude00\", \"n\": -5, \"big\": 18446744073709551615, "
      "\"f\": 1.5, \"t\": true, \"z\": null}");
  ASSERT_TRUE(v) << v.error().message();
  EXPECT_EQ((*v)["s"], "it's");
  EXPECT_EQ((*v)["u"], "\xc3\xa9\xf0\x9f\x98\x80");
  EXPECT_EQ((*v)["n"], -5);
  EXPECT_EQ((*v)["big"].get<uint64_t>(), UINT64_MAX);
  EXPECT_EQ((*v)["f"], 1.5);
  EXPECT_EQ((*v)["t"], true);
  EXPECT_TRUE((*v)["z"].is_null());
}

TEST(JsonWriter, WritesLikeQemuAndSurvivesInvalidUtf8) {
  Options v = Options::object();
  v["a"] = Options::array({1, "x"});
  v["b"] = Options::object();
  EXPECT_EQ(to_qmp_text(v), "{\"a\": [1, \"x\"], \"b\": {}}");
  EXPECT_EQ(to_qmp_text(Options("\xff")), "\"\\ufffd\"");
  EXPECT_EQ(to_qmp_text(Options("\xc3\xa9")), "\"\\u00e9\"");
}

}  // namespace
}  // namespace qblock::qmp
