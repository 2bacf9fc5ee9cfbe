// Option-tree parsing: json: filenames, key=value strings and sizes.
#include "qblock/options.h"

#include <cmath>
#include <cstdlib>

namespace qblock {

namespace {

// QEMU's JSON parser accepts single-quoted strings; turn them into standard JSON strings.
std::string single_to_double_quotes(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  char quote = 0;
  for (std::size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (!quote) {
      if (c == '\'' || c == '"') {
        quote = c;
        out += '"';
      } else {
        out += c;
      }
      continue;
    }
    if (c == '\\' && i + 1 < in.size()) {
      char n = in[++i];
      if (n == '\'') {
        out += '\'';
      } else {
        out += '\\';
        out += n;
      }
      continue;
    }
    if (c == quote) {
      quote = 0;
      out += '"';
    } else if (c == '"') {
      out += "\\\"";  // a double quote inside a single-quoted string
    } else {
      out += c;
    }
  }
  return out;
}

Status insert_dotted(Options& root, const std::string& key, const Options& value) {
  Options* node = &root;
  std::size_t pos = 0;
  for (;;) {
    std::size_t dot = key.find('.', pos);
    std::string part = key.substr(pos, dot == std::string::npos ? std::string::npos : dot - pos);
    if (dot == std::string::npos) {
      if (node->contains(part) && (*node)[part].is_object() && value.is_object()) {
        for (auto& [k, v] : value.items()) {
          Status s = insert_dotted((*node)[part], k, v);
          if (!s) return s;
        }
      } else if (node->contains(part) && ((*node)[part].is_object() != value.is_object())) {
        return fail(Error::invalid("Value for parameter '" + key + "' conflicts"));
      } else {
        (*node)[part] = value;
      }
      return ok();
    }
    Options& next = (*node)[part];
    if (next.is_null()) next = Options::object();
    if (!next.is_object()) {
      return fail(Error::with_message(
          EINVAL, "Cannot mix '" + key.substr(0, dot) + "' with dotted options"));
    }
    node = &next;
    pos = dot + 1;
  }
}

}  // namespace

Result<Options> unflatten_options(const Options& options) {
  Options out = Options::object();
  for (auto& [k, v] : options.items()) {
    Options value = v;
    if (v.is_object()) {
      Result<Options> nested = unflatten_options(v);
      if (!nested) return nested;
      value = std::move(*nested);
    }
    Status s = insert_dotted(out, k, value);
    if (!s) return fail(s.error());
  }
  return out;
}

namespace {

// True if `text` stops inside a string or with an object or array still open: QEMU's JSON
// parser calls that "premature EOI".
bool ends_prematurely(std::string_view text) {
  int depth = 0;
  bool in_string = false;
  char quote = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == quote) {
        in_string = false;
      }
    } else if (c == '"' || c == '\'') {
      in_string = true;
      quote = c;
    } else if (c == '{' || c == '[') {
      ++depth;
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return in_string || depth > 0;
}

}  // namespace

Result<Options> parse_json_options(std::string_view json_text) {
  Options parsed = Options::parse(single_to_double_quotes(json_text), nullptr, false);
  if (parsed.is_discarded()) {
    return fail(Error::with_message(
        EINVAL, ends_prematurely(json_text)
                    ? "Could not parse the JSON options: JSON parse error, premature EOI"
                    : "Could not parse the JSON options"));
  }
  if (!parsed.is_object()) {
    return fail(Error::with_message(EINVAL, "Invalid JSON object given"));
  }
  return unflatten_options(parsed);
}

Result<Options> parse_key_value_options(std::string_view text, std::string_view implied_key) {
  Options flat = Options::object();
  std::size_t i = 0;
  bool first = true;
  while (i <= text.size()) {
    std::string key;
    std::string value;
    bool has_eq = false;
    // Key up to '=' or ','.
    while (i < text.size() && text[i] != '=' && text[i] != ',') key += text[i++];
    if (i < text.size() && text[i] == '=') {
      has_eq = true;
      ++i;
      // Value up to a single ','; ",," is a literal comma.
      while (i < text.size()) {
        if (text[i] == ',') {
          if (i + 1 < text.size() && text[i + 1] == ',') {
            value += ',';
            i += 2;
            continue;
          }
          break;
        }
        value += text[i++];
      }
    }
    if (!has_eq) {
      if (first && !implied_key.empty() && !key.empty()) {
        value = key;
        key = std::string(implied_key);
      } else if (!key.empty()) {
        // qemu-compat.md §2.7 (open -o): a bare word is a deprecated short-form boolean.
        value = "on";
      }
    }
    if (!key.empty()) flat[key] = value;
    first = false;
    if (i >= text.size()) break;
    ++i;  // skip ','
  }
  return unflatten_options(flat);
}

Result<uint64_t> parse_size(std::string_view text) {
  std::string s(text);
  std::size_t start = 0;
  while (start < s.size() && (s[start] == ' ' || s[start] == '\t')) ++start;
  const char* begin = s.c_str() + start;
  if (*begin == '-' || *begin == '\0') return fail(Error::invalid());
  char* end = nullptr;
  errno = 0;
  bool hex = (begin[0] == '0' && (begin[1] == 'x' || begin[1] == 'X'));
  unsigned long long integer = std::strtoull(begin, &end, hex ? 16 : 10);
  if (end == begin || errno == ERANGE) return fail(Error::from_errno(errno ? errno : EINVAL));
  double fraction = 0;
  if (!hex && *end == '.') {
    char* fend = nullptr;
    fraction = std::strtod(end, &fend);
    end = fend;
  }
  uint64_t mult = 1;
  if (*end) {
    switch (*end) {
      case 'b':
      case 'B': mult = 1; break;
      case 'k':
      case 'K': mult = 1ULL << 10; break;
      case 'm':
      case 'M': mult = 1ULL << 20; break;
      case 'g':
      case 'G': mult = 1ULL << 30; break;
      case 't':
      case 'T': mult = 1ULL << 40; break;
      case 'p':
      case 'P': mult = 1ULL << 50; break;
      case 'e':
      case 'E': mult = 1ULL << 60; break;
      default: return fail(Error::invalid());
    }
    ++end;
    if (*end) return fail(Error::invalid());
    // qemu-compat.md §1.2: a hex number with a suffix is deprecated in 7.2; qblock rejects it.
    if (hex) return fail(Error::invalid());
  } else if (fraction != 0 || (end > begin && end[-1] == '.')) {
    return fail(Error::invalid());  // a fraction needs a suffix
  }
  long double value = (static_cast<long double>(integer) + fraction) * mult;
  if (value >= 9223372036854775808.0L) return fail(Error::from_errno(ERANGE));
  return static_cast<uint64_t>(value);
}

std::string options_to_json_filename(const Options& options) {
  std::string out = "json:{";
  bool first = true;
  for (auto& [k, v] : options.items()) {
    if (!first) out += ", ";
    first = false;
    out += Options(k).dump() + ": ";
    if (v.is_object()) {
      out += options_to_json_filename(v).substr(5);
    } else {
      out += v.dump();
    }
  }
  return out + "}";
}

}  // namespace qblock
