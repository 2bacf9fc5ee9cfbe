// JSON as qemu-img prints it (see json_output.h).
#include "qblock/json_output.h"

#include <cctype>

namespace qblock::tools {

namespace {

// nlohmann writes \u escapes in lower case; QEMU in upper case. A backslash starts an escape
// of two characters (or six for \u), so escaped backslashes are stepped over whole.
std::string upper_case_escapes(const std::string& text) {
  std::string out = text;
  for (std::size_t i = 0; i + 1 < out.size(); ++i) {
    if (out[i] != '\\') continue;
    if (out[i + 1] == 'u') {
      for (std::size_t k = i + 2; k < i + 6 && k < out.size(); ++k) {
        out[k] = static_cast<char>(std::toupper(static_cast<unsigned char>(out[k])));
      }
      i += 5;
    } else {
      ++i;
    }
  }
  return out;
}

// QEMU's pretty printer puts an empty array's brackets on two lines.
std::string split_empty_arrays(const std::string& dumped) {
  std::string out;
  std::size_t start = 0;
  while (start < dumped.size()) {
    std::size_t end = dumped.find('\n', start);
    if (end == std::string::npos) end = dumped.size();
    std::string line = dumped.substr(start, end - start);
    // Only an empty array ends a line: a string value always ends in its quote.
    const std::size_t open = line.rfind("[]");
    if (open != std::string::npos && (line.ends_with("[]") || line.ends_with("[],"))) {
      const std::size_t indent = line.find_first_not_of(' ');
      out += line.substr(0, open + 1) + "\n" + std::string(indent, ' ') + line.substr(open + 1);
    } else {
      out += line;
    }
    if (end < dumped.size()) out += '\n';
    start = end + 1;
  }
  return out;
}

}  // namespace

std::string qemu_json(const nlohmann::ordered_json& value) {
  return split_empty_arrays(upper_case_escapes(
      value.dump(4, ' ', true, nlohmann::ordered_json::error_handler_t::replace)));
}

}  // namespace qblock::tools
