// Unit tests of the image subcommands' option parser (tools/qblock/image_options.h): handler
// order, operands, getopt failures and the shared image options with qemu-img's semantics.
#include "qblock/image_options.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace qblock::tools {
namespace {

// argv for OptionParser::parse from string literals; argv[0] is the subcommand's name.
class Argv {
 public:
  Argv(std::initializer_list<const char*> words) {
    for (const char* w : words) words_.emplace_back(w);
    for (std::string& w : words_) pointers_.push_back(w.data());
    pointers_.push_back(nullptr);
  }
  int argc() const { return static_cast<int>(words_.size()); }
  char** argv() { return pointers_.data(); }

 private:
  std::vector<std::string> words_;
  std::vector<char*> pointers_;
};

TEST(OptionParser, RunsHandlersInCommandLineOrderAndCollectsOperands) {
  std::vector<std::string> seen;
  OptionParser parser;
  parser.with_value('o', [&seen](const char* v) {
    seen.push_back(std::string("o=") + v);
    return kContinue;
  });
  parser.without_value({'q', "quiet"}, [&seen](const char*) {
    seen.push_back("q");
    return kContinue;
  });
  Argv args{"check", "first", "-o", "a", "--quiet", "second", "-oB", "--", "-x"};
  ASSERT_EQ(parser.parse(args.argc(), args.argv()), kContinue);
  EXPECT_EQ(seen, (std::vector<std::string>{"o=a", "q", "o=B"}));
  EXPECT_EQ(parser.operands(), (std::vector<std::string>{"first", "second", "-x"}));
}

TEST(OptionParser, StopsAtTheFirstHandlerThatReturnsAStatus) {
  bool later = false;
  OptionParser parser;
  parser.with_value('r', [](const char*) { return 7; }).flag('q', &later);
  Argv args{"check", "-r", "x", "-q"};
  EXPECT_EQ(parser.parse(args.argc(), args.argv()), 7);
  EXPECT_FALSE(later);
}

TEST(OptionParser, ReportsUnknownOptionsAndMissingArgumentsToTheErrorHandler) {
  std::vector<std::string> reports;
  std::string output;
  auto make = [&reports, &output] {
    OptionParser parser;
    parser.value("output", &output).ignored('T', true);
    parser.on_error([&reports](char kind, const char* word) {
      reports.push_back(std::string(1, kind) + word);
      return 3;
    });
    return parser;
  };
  Argv unknown{"map", "--bogus"};
  EXPECT_EQ(make().parse(unknown.argc(), unknown.argv()), 3);
  Argv missing{"map", "-T"};
  EXPECT_EQ(make().parse(missing.argc(), missing.argv()), 3);
  Argv missing_long{"map", "--output"};
  EXPECT_EQ(make().parse(missing_long.argc(), missing_long.argv()), 3);
  EXPECT_EQ(reports, (std::vector<std::string>{"?--bogus", ":-T", ":--output"}));
}

TEST(OptionParser, HelpPrintsAndExitsZero) {
  bool printed = false;
  OptionParser parser;
  parser.help([&printed] { printed = true; });
  Argv args{"info", "--help", "--bogus"};
  EXPECT_EQ(parser.parse(args.argc(), args.argv()), 0);
  EXPECT_TRUE(printed);
}

TEST(OptionParser, StopAtFirstOperandLeavesLaterOptionsAsOperands) {
  bool read_only = false;
  OptionParser parser;
  parser.stop_at_first_operand().flag('r', &read_only);
  Argv args{"nbd", "img", "-r"};
  ASSERT_EQ(parser.parse(args.argc(), args.argv()), kContinue);
  EXPECT_FALSE(read_only);
  EXPECT_EQ(parser.operands(), (std::vector<std::string>{"img", "-r"}));
}

TEST(OptionParser, ParsesAgainFromTheStart) {
  std::string format;
  for (int round = 0; round < 2; ++round) {
    OptionParser parser;
    parser.value('f', &format);
    Argv args{"info", "-f", round ? "raw" : "qcow2", "x"};
    ASSERT_EQ(parser.parse(args.argc(), args.argv()), kContinue);
    EXPECT_EQ(format, round ? "raw" : "qcow2");
    EXPECT_EQ(parser.operands(), std::vector<std::string>{"x"});
  }
}

// The long names decide abbreviations: "--f" is --force-share where there is no --format
// (compare), and ambiguous, hence unknown, where there is (check).
TEST(ImageOptions, LongNamesFollowTheChosenSet) {
  ImageArgs compare_args;
  OptionParser compare;
  add_image_options(compare, ImageOption::kFormat | ImageOption::kForceShare, &compare_args);
  Argv a{"compare", "--f", "x", "y"};
  ASSERT_EQ(compare.parse(a.argc(), a.argv()), kContinue);
  EXPECT_TRUE(compare_args.force_share);
  EXPECT_FALSE(compare_args.format);

  ImageArgs check_args;
  OptionParser check;
  add_image_options(check,
                    ImageOption::kFormat | ImageOption::kFormatLong | ImageOption::kForceShare,
                    &check_args);
  check.on_error([](char, const char*) { return 1; });
  Argv c{"check", "--f", "x"};
  EXPECT_EQ(check.parse(c.argc(), c.argv()), 1);
}

TEST(ImageOptions, StoresEveryOption) {
  ImageArgs image;
  OptionParser parser;
  add_image_options(parser,
                    ImageOption::kFormat | ImageOption::kFormatLong | ImageOption::kImageOpts |
                        ImageOption::kObject | ImageOption::kForceShare | ImageOption::kSourceCache,
                    &image);
  Argv args{"check",
            "-f",
            "raw",
            "--format=qcow2",
            "--image-opts",
            "--object",
            "secret,id=options-test-a,data=x",
            "--object",
            "iothread,id=options-test-b",
            "-U",
            "-T",
            "none",
            "file"};
  ASSERT_EQ(parser.parse(args.argc(), args.argv()), kContinue);
  EXPECT_EQ(image.format, "qcow2");  // the last one wins
  EXPECT_TRUE(image.image_opts);
  EXPECT_EQ(image.objects, (std::vector<std::string>{"secret,id=options-test-a,data=x",
                                                     "iothread,id=options-test-b"}));
  EXPECT_TRUE(image.force_share);
  EXPECT_EQ(image.source_cache, "none");
  EXPECT_EQ(parser.operands(), std::vector<std::string>{"file"});
}

TEST(ImageOptions, AnEmptyFormatStillCountsAsGiven) {
  ImageArgs image;
  image.image_opts = true;
  EXPECT_TRUE(check_image_opts_exclusive(image));
  image.format = "";
  EXPECT_FALSE(check_image_opts_exclusive(image));  // as qemu-img: -f '' --image-opts fails
  EXPECT_EQ(image.format_name(), "");
}

TEST(ImageOptions, SourceCacheIsValidatedAndApplied) {
  ImageArgs image;
  OpenFlags flags;
  EXPECT_TRUE(apply_source_cache(image, flags));  // no -T: nothing to do
  image.source_cache = "none";
  EXPECT_TRUE(apply_source_cache(image, flags));
  EXPECT_TRUE(flags.direct);
  image.source_cache = "bogus";
  EXPECT_FALSE(apply_source_cache(image, flags));
}

}  // namespace
}  // namespace qblock::tools
