// The command line of the image subcommands in one place (qemu-compat.md §1.1, §3): a small
// declarative parser over getopt_long that each subcommand fills with its own options, the
// image options they share (-f, --image-opts, --object, -U, -T) and the one helper that opens
// the image named on the command line the way qemu-img does. `qblock io` and `qblock nbd` use
// the same parser with their tools' error styles.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "qblock/block_backend.h"
#include "qblock/block_node.h"
#include "qblock/error.h"
#include "qblock/event_loop.h"

namespace qblock::tools {

// What an option handler (and OptionParser::parse) returns to go on; any other value is the
// exit status the subcommand ends with.
constexpr int kContinue = -1;

// The names of one option: a short letter, a long name, or both (`{'f', "format"}`).
struct OptionName {
  // Implicit on purpose: a table of options reads best as `'q'`, `"shrink"`.
  OptionName(char short_name) : short_name(short_name) {}
  OptionName(const char* long_name) : long_name(long_name) {}
  OptionName(char short_name, const char* long_name)
      : short_name(short_name), long_name(long_name) {}
  char short_name = 0;              // 0: long only
  const char* long_name = nullptr;  // nullptr: short only; a string literal
};

// getopt_long driven by a table: each option comes with what to do when it is seen, and the
// handlers run in command-line order, so "the last -f wins" and "an error stops at the first
// bad option" hold as in the hand-written getopt loops of QEMU's tools. Arguments are permuted
// (GNU getopt) unless stop_at_first_operand().
//
// Unknown options and missing arguments are reported as qemu-img does by default
// ("qemu-img: unrecognized option '--x'" and "Try 'qemu-img --help' for more information",
// exit 1); on_error() or report_with_getopt() change that for other tools.
class OptionParser {
 public:
  // Called with the option's argument (nullptr for options without one). Returns kContinue or
  // the exit status.
  using Handler = std::function<int(const char* value)>;

  // -h/--help: prints the subcommand's help and exits 0.
  OptionParser& help(std::function<void()> print);
  // An option without argument that sets *target to true.
  OptionParser& flag(OptionName name, bool* target);
  // An option with an argument that is stored in *target (the last one wins).
  OptionParser& value(OptionName name, std::string* target);
  // An option with an argument handled by `handler`.
  OptionParser& with_value(OptionName name, Handler handler);
  // An option without argument handled by `handler` (which gets nullptr).
  OptionParser& without_value(OptionName name, Handler handler);
  // An option that is accepted (with or without argument) and has no effect.
  OptionParser& ignored(OptionName name, bool takes_value);

  // Replaces the default report of an unknown option (`kind` '?') or a missing argument
  // (`kind` ':'); `word` is the argv element getopt stopped at. Returns the exit status.
  OptionParser& on_error(std::function<int(char kind, const char* word)> report);
  // Lets getopt print its own messages ("PROGRAM: invalid option -- 'x'", qemu-io's style),
  // then calls the on_error() report with kind '?' for both kinds of failure.
  OptionParser& report_with_getopt(std::string program);
  // Stops at the first operand instead of permuting (qemu-nbd's "+" getopt string).
  OptionParser& stop_at_first_operand();

  // Parses argv[1..argc). Returns kContinue, with the operands (argv after the options, in
  // order) in operands(), or the exit status a handler or an error report returned.
  // REQUIRES: no option name was registered twice.
  int parse(int argc, char** argv);
  const std::vector<std::string>& operands() const { return operands_; }

 private:
  struct Entry {
    OptionName name;
    bool takes_value;
    Handler handler;
  };
  OptionParser& add(OptionName name, bool takes_value, Handler handler);

  std::vector<Entry> entries_;
  std::function<int(char, const char*)> report_;
  std::optional<std::string> getopt_program_;
  bool stop_at_first_operand_ = false;
  std::vector<std::string> operands_;
};

// The image options the subcommands share. Each subcommand takes the subset qemu-img 7.2
// gives it: the set of long names decides how getopt resolves abbreviations ("--f" is
// --force-share for compare, ambiguous for check), so it must be exactly QEMU's.
enum class ImageOption : unsigned {
  kFormat = 1u << 0,       // -f FMT
  kFormatLong = 1u << 1,   // --format FMT as well (with kFormat)
  kImageOpts = 1u << 2,    // --image-opts: the filename is a key=value list (qemu-compat.md §5.3)
  kObject = 1u << 3,       // --object OBJECTDEF: created in user_objects() as parsed
  kForceShare = 1u << 4,   // -U, --force-share
  kSourceCache = 1u << 5,  // -T SRC_CACHE
};
constexpr ImageOption operator|(ImageOption a, ImageOption b) {
  return static_cast<ImageOption>(static_cast<unsigned>(a) | static_cast<unsigned>(b));
}
constexpr bool has(ImageOption set, ImageOption option) {
  return (static_cast<unsigned>(set) & static_cast<unsigned>(option)) != 0;
}

// What the shared image options said.
struct ImageArgs {
  // -f; set even when empty: qemu-img tests for the option, not for its text.
  std::optional<std::string> format;
  bool image_opts = false;
  bool force_share = false;
  std::vector<std::string> objects;         // --object definitions in order
  const char* tool = "qemu-img";            // names the program in --object errors
  int object_error_exit = 1;                // exit status of a bad --object (compare: 2)
  std::optional<std::string> source_cache;  // -T

  // The driver to open with; empty means probe.
  std::string format_name() const { return format.value_or(""); }
};

// Registers the options in `which` with `parser`, storing into *args.
// REQUIRES: *args outlives parser.parse().
void add_image_options(OptionParser& parser, ImageOption which, ImageArgs* args);

// qemu-img's check before opening: prints "--image-opts and --format are mutually exclusive"
// and returns false when both were given.
bool check_image_opts_exclusive(const ImageArgs& args);

// Validates -T as qemu-img does before it opens the image and applies it to `flags`; prints
// "Invalid source cache option: X" and returns false for an unknown mode.
bool apply_source_cache(const ImageArgs& args, OpenFlags& flags);

// How open_image words an open failure.
enum class OpenMessage {
  kQemuImg,   // "Could not open 'x': " + the error, even when that repeats it (7.2's text)
  kNameOnce,  // the prefix only when the error does not start with it (qemu-compat.md §7)
};

// Opens `filename` as the image subcommands do: checks check_image_opts_exclusive(), parses
// the name as a key=value list with --image-opts (else it is a path, "json:{...}" or
// "blkdebug:..." for BlockBackend), opens it with `flags` and args.format_name(), and prints
// qemu-img's message on every failure. `extra` is merged over the options (e.g. "backing":
// null to open without the backing file). Returns the open backend, or the error (already
// reported).
Result<std::unique_ptr<BlockBackend>> open_image(EventLoop& loop, const std::string& filename,
                                                 const ImageArgs& args, const OpenFlags& flags,
                                                 OpenMessage message = OpenMessage::kQemuImg,
                                                 const Options& extra = Options::object());

// qemu-img's warning (on stderr) for an image whose format was probed as raw, given before a
// command that may write to it.
void warn_probed_raw(const std::string& filename);

}  // namespace qblock::tools
