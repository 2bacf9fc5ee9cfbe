// A recursive-descent parser for QMP's JSON dialect; see json_parser.h.
#include "qmp/json_parser.h"

#include <cerrno>
#include <charconv>
#include <cstdint>
#include <string>

namespace qblock::qmp {

namespace {

Error parse_error(std::string what) {
  return Error::with_message(EINVAL, "JSON parse error, " + std::move(what));
}

class Parser {
 public:
  explicit Parser(std::string_view text) : text_(text) {}

  Result<Options> parse_document() {
    Result<Options> value = parse_value(0);
    if (!value) return value;
    skip_space();
    if (pos_ != text_.size()) return fail(parse_error("expecting value"));
    return value;
  }

 private:
  void skip_space() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t' ||
                                   text_[pos_] == '\n' || text_[pos_] == '\r')) {
      ++pos_;
    }
  }
  bool at(char c) {
    skip_space();
    return pos_ < text_.size() && text_[pos_] == c;
  }

  Result<Options> parse_value(std::size_t depth) {
    skip_space();
    if (pos_ >= text_.size()) return fail(parse_error("expecting value"));
    const char c = text_[pos_];
    if (c == '{' || c == '[') {
      if (depth + 1 > kMaxJsonNesting) {
        return fail(Error::with_message(EINVAL, "JSON nesting depth limit exceeded"));
      }
      return c == '{' ? parse_object(depth + 1) : parse_array(depth + 1);
    }
    if (c == '"' || c == '\'') {
      Result<std::string> s = parse_string();
      if (!s) return fail(s.error());
      return Options(std::move(*s));
    }
    if (c == '-' || (c >= '0' && c <= '9')) return parse_number();
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return parse_keyword();
    if (c == '}' || c == ']' || c == ',' || c == ':') return fail(parse_error("expecting value"));
    return fail(parse_error(std::string("stray '") + c + "'"));
  }

  Result<Options> parse_object(std::size_t depth) {
    ++pos_;  // '{'
    Options object = Options::object();
    if (at('}')) {
      ++pos_;
      return object;
    }
    for (;;) {
      skip_space();
      if (pos_ >= text_.size()) return fail(parse_error("expecting value"));
      if (text_[pos_] != '"' && text_[pos_] != '\'') {
        if (text_[pos_] == '}' || text_[pos_] == ',') return fail(parse_error("expecting value"));
        return fail(parse_error("key is not a string in object"));
      }
      Result<std::string> key = parse_string();
      if (!key) return fail(key.error());
      if (!at(':')) return fail(parse_error("missing : in object pair"));
      ++pos_;
      Result<Options> value = parse_value(depth);
      if (!value) return value;
      if (object.contains(*key)) return fail(parse_error("duplicate key"));
      object[*key] = std::move(*value);
      if (at(',')) {
        ++pos_;
        continue;
      }
      if (at('}')) {
        ++pos_;
        return object;
      }
      return fail(parse_error("expected separator in dict"));
    }
  }

  Result<Options> parse_array(std::size_t depth) {
    ++pos_;  // '['
    Options array = Options::array();
    if (at(']')) {
      ++pos_;
      return array;
    }
    for (;;) {
      Result<Options> value = parse_value(depth);
      if (!value) return value;
      array.push_back(std::move(*value));
      if (at(',')) {
        ++pos_;
        continue;
      }
      if (at(']')) {
        ++pos_;
        return array;
      }
      return fail(parse_error("expected separator in list"));
    }
  }

  static void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  // Takes one UTF-8 sequence at pos_ into `out`; false when it is invalid (overlong forms,
  // surrogates, beyond U+10FFFF), except the two-byte NUL that QEMU accepts.
  bool take_utf8(std::string& out) {
    const auto lead = static_cast<unsigned char>(text_[pos_]);
    std::size_t n = 0;
    uint32_t cp = 0;
    if (lead >= 0xC0 && lead < 0xE0) {
      n = 1;
      cp = lead & 0x1F;
    } else if (lead >= 0xE0 && lead < 0xF0) {
      n = 2;
      cp = lead & 0x0F;
    } else if (lead >= 0xF0 && lead < 0xF8) {
      n = 3;
      cp = lead & 0x07;
    } else {
      return false;
    }
    if (text_.size() - pos_ <= n) return false;
    for (std::size_t i = 1; i <= n; ++i) {
      const auto b = static_cast<unsigned char>(text_[pos_ + i]);
      if ((b & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (b & 0x3F);
    }
    const uint32_t min = n == 1 ? 0x80 : n == 2 ? 0x800 : 0x10000;
    if (n == 1 && cp == 0) {
      out += '\0';
      pos_ += 2;
      return true;
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp < 0xE000)) return false;
    out.append(text_.substr(pos_, n + 1));
    pos_ += n + 1;
    return true;
  }

  bool hex4(uint32_t& out) {
    if (text_.size() - pos_ < 4) return false;
    out = 0;
    for (int i = 0; i < 4; ++i) {
      const char h = text_[pos_++];
      out <<= 4;
      if (h >= '0' && h <= '9') {
        out |= static_cast<uint32_t>(h - '0');
      } else if (h >= 'a' && h <= 'f') {
        out |= static_cast<uint32_t>(h - 'a' + 10);
      } else if (h >= 'A' && h <= 'F') {
        out |= static_cast<uint32_t>(h - 'A' + 10);
      } else {
        return false;
      }
    }
    return true;
  }

  Result<std::string> parse_string() {
    const char quote = text_[pos_++];
    std::string out;
    while (pos_ < text_.size()) {
      const char c = text_[pos_++];
      if (c == quote) return out;
      if (static_cast<unsigned char>(c) < 0x20) {
        return fail(parse_error("invalid character in string"));
      }
      if (static_cast<unsigned char>(c) >= 0x80) {
        --pos_;
        if (!take_utf8(out)) return fail(parse_error("invalid UTF-8 sequence in string"));
        continue;
      }
      if (c != '\\') {
        out += c;
        continue;
      }
      if (pos_ >= text_.size()) break;
      const char e = text_[pos_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\'': out += '\''; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          // QEMU names the escape as written: backslash, 'u' and the next four characters.
          // The string's closing quote ends it early.
          std::string bad = "\\u";
          for (std::size_t i = pos_; i < text_.size() && i < pos_ + 4; ++i) {
            bad += text_[i];
            if (text_[i] == quote) break;
          }
          bad += " is not a valid Unicode character";
          uint32_t cp = 0;
          if (!hex4(cp)) return fail(parse_error(bad));
          if (cp >= 0xDC00 && cp < 0xE000) return fail(parse_error(bad));
          if (cp >= 0xD800 && cp < 0xDC00) {
            uint32_t low = 0;
            if (text_.substr(pos_, 2) != "\\u") return fail(parse_error(bad));
            pos_ += 2;
            if (!hex4(low) || low < 0xDC00 || low >= 0xE000) return fail(parse_error(bad));
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          }
          append_utf8(out, cp);
          break;
        }
        default: return fail(parse_error("invalid escape sequence in string"));
      }
    }
    return fail(parse_error("expecting value"));  // unterminated: framing never passes this
  }

  Result<Options> parse_number() {
    const std::size_t start = pos_;
    bool is_float = false;
    if (text_[pos_] == '-') ++pos_;
    while (pos_ < text_.size()) {
      const char c = text_[pos_];
      if (c >= '0' && c <= '9') {
        ++pos_;
      } else if (c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-') {
        is_float = true;
        ++pos_;
      } else {
        break;
      }
    }
    const std::string_view digits = text_.substr(start, pos_ - start);
    const char* first = digits.data();
    const char* last = digits.data() + digits.size();
    if (!is_float) {
      if (digits[0] == '-') {
        int64_t v = 0;
        if (std::from_chars(first, last, v).ec == std::errc()) return Options(v);
      } else {
        uint64_t v = 0;
        if (std::from_chars(first, last, v).ec == std::errc()) {
          if (v <= static_cast<uint64_t>(INT64_MAX)) return Options(static_cast<int64_t>(v));
          return Options(v);
        }
      }
    }
    // Floats and integers too large for 64 bits become doubles, as in QEMU.
    const std::string copy(digits);
    char* end = nullptr;
    const double d = std::strtod(copy.c_str(), &end);
    if (end != copy.c_str() + copy.size()) return fail(parse_error("expecting value"));
    return Options(d);
  }

  Result<Options> parse_keyword() {
    const std::size_t start = pos_;
    while (pos_ < text_.size() && ((text_[pos_] >= 'a' && text_[pos_] <= 'z') ||
                                   (text_[pos_] >= 'A' && text_[pos_] <= 'Z'))) {
      ++pos_;
    }
    const std::string_view word = text_.substr(start, pos_ - start);
    if (word == "true") return Options(true);
    if (word == "false") return Options(false);
    if (word == "null") return Options(nullptr);
    return fail(parse_error("invalid keyword '" + std::string(word) + "'"));
  }

  std::string_view text_;
  std::size_t pos_ = 0;
};

}  // namespace

Result<Options> parse_qmp_json(std::string_view text) { return Parser(text).parse_document(); }

}  // namespace qblock::qmp
