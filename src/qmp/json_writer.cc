// QMP output; see json_writer.h.
#include "qmp/json_writer.h"

namespace qblock::qmp {

namespace {

void write(const Options& v, std::string& out) {
  if (v.is_object()) {
    out += '{';
    bool first = true;
    for (auto it = v.begin(); it != v.end(); ++it) {
      if (!first) out += ", ";
      first = false;
      write(Options(it.key()), out);
      out += ": ";
      write(it.value(), out);
    }
    out += '}';
  } else if (v.is_array()) {
    out += '[';
    bool first = true;
    for (const Options& e : v) {
      if (!first) out += ", ";
      first = false;
      write(e, out);
    }
    out += ']';
  } else {
    out += v.dump(-1, ' ', true, Options::error_handler_t::replace);
  }
}

}  // namespace

std::string to_qmp_text(const Options& value) {
  std::string out;
  write(value, out);
  return out;
}

}  // namespace qblock::qmp
