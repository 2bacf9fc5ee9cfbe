// Unit tests of qblock io's formatting and number parsing (qemu-compat.md §1.2, §1.3, §2.8).
#include "qblock/io_format.h"

#include <gtest/gtest.h>

namespace qblock::tools {
namespace {

TEST(IoFormatTest, CvtstrMatchesQemuIo) {
  EXPECT_EQ(cvtstr(0), "0 bytes");
  EXPECT_EQ(cvtstr(512), "512 bytes");
  EXPECT_EQ(cvtstr(1023), "1023 bytes");
  EXPECT_EQ(cvtstr(1024), "1 KiB");
  EXPECT_EQ(cvtstr(1025), "1.001 KiB");
  EXPECT_EQ(cvtstr(1500), "1.465 KiB");
  EXPECT_EQ(cvtstr(1047552), "1023 KiB");
  EXPECT_EQ(cvtstr(1048064), "1023.500 KiB");
  EXPECT_EQ(cvtstr(1179648), "1.125 MiB");
  EXPECT_EQ(cvtstr(4194303), "4 MiB");
  EXPECT_EQ(cvtstr(84.192562), "84.192562 bytes");
}

TEST(IoFormatTest, Timestr) {
  EXPECT_EQ(timestr(0.0, false), "00.00 sec");
  EXPECT_EQ(timestr(0.011, false), "00.01 sec");
  EXPECT_EQ(timestr(2087.18, false), "0:34:47.18");
  EXPECT_EQ(timestr(0.0, true), "0:00:00.00");
}

TEST(IoFormatTest, HexdumpIsNotPadded) {
  const char text[] = "Hello, World! 123 abc";
  std::string dump = hexdump(reinterpret_cast<const uint8_t*>(text), 21, 0x10003);
  EXPECT_EQ(dump,
            "00010003:  48 65 6c 6c 6f 2c 20 57 6f 72 6c 64 21 20 31 32  Hello..World..12\n"
            "00010013:  33 20 61 62 63  3.abc\n");
}

TEST(IoFormatTest, ReportLines) {
  EXPECT_EQ(format_report("wrote", 0.5, 0, 512, 512, 1, false),
            "wrote 512/512 bytes at offset 0\n"
            "512 bytes, 1 ops; 00.50 sec (1 KiB/sec and 2.0000 ops/sec)\n");
  EXPECT_EQ(format_report("read", 0.5, 0, 512, 512, 1, true), "512,1,0:00:00.50,1024.000,2.000\n");
}

TEST(IoFormatTest, PatternsAndNumbers) {
  EXPECT_EQ(*parse_pattern("010"), 8);
  EXPECT_EQ(*parse_pattern("0xff"), 255);
  EXPECT_FALSE(parse_pattern("256"));
  EXPECT_FALSE(parse_pattern("08"));
  EXPECT_EQ(parse_pattern("abc").error().message(), "abc is not a valid pattern byte");
  EXPECT_EQ(*parse_number("1k"), 1024);
  EXPECT_EQ(*parse_number("010"), 10);
  Result<int64_t> bad = parse_number("abc");
  ASSERT_FALSE(bad);
  EXPECT_EQ(number_error_text(bad.error(), "abc"),
            "Parsing error: non-numeric argument, or extraneous/unrecognized suffix -- abc");
  EXPECT_EQ(*parse_c_long("0x1"), 1);
  EXPECT_FALSE(parse_c_long("1k"));
}

}  // namespace
}  // namespace qblock::tools
