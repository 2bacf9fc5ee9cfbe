// Text formatting and number parsing of `qblock io` (qemu-compat.md §1.2, §1.3(a), §2.8).
#include "io_format.h"

#include <cctype>
#include <cerrno>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "qblock/options.h"

namespace qblock::tools {

std::string cvtstr(double value) {
  struct Unit {
    double size;
    const char* name;
  };
  static constexpr Unit kUnits[] = {
      {1152921504606846976.0, "EiB"}, {1125899906842624.0, "PiB"}, {1099511627776.0, "TiB"},
      {1073741824.0, "GiB"},          {1048576.0, "MiB"},          {1024.0, "KiB"},
  };
  char buf[128];
  const char* unit = "bytes";
  bool found = false;
  for (const Unit& u : kUnits) {
    if (value >= u.size) {
      std::snprintf(buf, sizeof(buf), "%.3f", value / u.size);
      unit = u.name;
      found = true;
      break;
    }
  }
  if (!found) std::snprintf(buf, sizeof(buf), "%f", value);
  std::string text = buf;
  // §1.3(a) step 3: a ".000" fraction is cut.
  std::size_t pos = text.find(".000");
  if (pos != std::string::npos) text.resize(pos);
  return text + " " + unit;
}

std::string timestr(double seconds, bool fixed) {
  char buf[64];
  uint64_t whole = static_cast<uint64_t>(seconds);
  double frac = seconds - static_cast<double>(whole);
  if (!fixed && whole == 0) {
    std::snprintf(buf, sizeof(buf), "%05.2f sec", seconds);
    return buf;
  }
  unsigned hours = static_cast<unsigned>(whole / 3600);
  unsigned minutes = static_cast<unsigned>((whole % 3600) / 60);
  double secs = static_cast<double>(whole % 60) + frac;
  std::snprintf(buf, sizeof(buf), "%u:%02u:%05.2f", hours, minutes, secs);
  return buf;
}

std::string format_report(std::string_view verb, double seconds, uint64_t offset, uint64_t count,
                          uint64_t total, int ops, bool csv) {
  double byte_rate = static_cast<double>(total) / seconds;
  double op_rate = static_cast<double>(ops) / seconds;
  std::string time = timestr(seconds, csv);
  char buf[512];
  if (csv) {
    std::snprintf(buf, sizeof(buf), "%" PRIu64 ",%d,%s,%.3f,%.3f\n", total, ops, time.c_str(),
                  byte_rate, op_rate);
    return buf;
  }
  std::string line1 = std::string(verb);
  std::snprintf(buf, sizeof(buf), " %" PRIu64 "/%" PRIu64 " bytes at offset %" PRIu64 "\n", total,
                count, offset);
  line1 += buf;
  std::snprintf(buf, sizeof(buf), "%s, %d ops; %s (%s/sec and %.4f ops/sec)\n",
                cvtstr(static_cast<double>(total)).c_str(), ops, time.c_str(),
                cvtstr(byte_rate).c_str(), op_rate);
  return line1 + buf;
}

std::string hexdump(const uint8_t* data, std::size_t len, uint64_t offset) {
  std::string out;
  char buf[32];
  for (std::size_t i = 0; i < len; i += 16) {
    std::snprintf(buf, sizeof(buf), "%08" PRIx64 ":  ", offset + i);
    out += buf;
    std::size_t n = len - i < 16 ? len - i : 16;
    for (std::size_t j = 0; j < n; ++j) {
      std::snprintf(buf, sizeof(buf), "%02x ", data[i + j]);
      out += buf;
    }
    out += ' ';
    for (std::size_t j = 0; j < n; ++j) {
      unsigned char c = data[i + j];
      out += std::isalnum(c) ? static_cast<char>(c) : '.';
    }
    out += '\n';
  }
  return out;
}

Result<int64_t> parse_number(std::string_view text) {
  Result<uint64_t> value = parse_size(text);
  if (!value) return fail(value.error());
  if (*value > static_cast<uint64_t>(INT64_MAX)) return fail(Error(ERANGE, ""));
  return static_cast<int64_t>(*value);
}

std::string number_error_text(const Error& error, std::string_view text) {
  std::string arg(text);
  if (error.errnum() == EINVAL) {
    return "Parsing error: non-numeric argument, or extraneous/unrecognized suffix -- " + arg;
  }
  if (error.errnum() == ERANGE) return "Parsing error: argument too large -- " + arg;
  return "Parsing error: " + arg;
}

Result<uint8_t> parse_pattern(std::string_view text) {
  std::string s(text);
  char* end = nullptr;
  errno = 0;
  long v = std::strtol(s.c_str(), &end, 0);
  if (s.empty() || errno != 0 || *end != '\0' || v < 0 || v > 255) {
    return fail(Error::with_message(EINVAL, s + " is not a valid pattern byte"));
  }
  return static_cast<uint8_t>(v);
}

Result<long> parse_c_long(std::string_view text) {
  std::string s(text);
  char* end = nullptr;
  errno = 0;
  long v = std::strtol(s.c_str(), &end, 0);
  if (s.empty() || errno != 0 || *end != '\0' || v < 0) {
    return fail(Error::with_message(EINVAL, s + " is not a valid number"));
  }
  return v;
}

}  // namespace qblock::tools
