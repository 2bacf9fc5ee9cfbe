// The rbd driver's filename and option parsing (see rbd_address.h).
#include "block/protocols/rbd_address.h"

#include <optional>

namespace qblock::rbd_client {

namespace {

// Splits `s` at the first unescaped character of `delims`: returns the unescaped token before
// it, leaves in `s` what follows the delimiter, and the delimiter found in `*found` (0 at the
// end of the string). A backslash escapes any character, as in QEMU's rbd filenames.
std::string next_token(std::string_view& s, std::string_view delims, char* found) {
  std::string token;
  std::size_t i = 0;
  *found = 0;
  for (; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '\\' && i + 1 < s.size()) {
      token.push_back(s[++i]);
      continue;
    }
    if (delims.find(c) != std::string_view::npos) {
      *found = c;
      s.remove_prefix(i + 1);
      return token;
    }
    token.push_back(c);
  }
  s = {};
  return token;
}

// JSON string quoting for the names qemu-img shows.
std::string quoted(const std::string& s) { return Options(s).dump(); }

}  // namespace

std::string RbdAddress::display() const {
  std::string out = pool + "/";
  if (!ns.empty()) out += ns + "/";
  out += image;
  if (!snapshot.empty()) out += "@" + snapshot;
  return out;
}

std::string RbdAddress::qemu_json() const {
  // QEMU 7.2 prints the rbd node's options in its QDict's order, observed with qemu-img info.
  std::string out = "{\"pool\": " + quoted(pool) + ", \"image\": " + quoted(image);
  if (has_snapshot) out += ", \"snapshot\": " + quoted(snapshot);
  if (!conf.empty()) out += ", \"conf\": " + quoted(conf);
  out += ", \"driver\": \"rbd\", \"namespace\": " + quoted(ns);
  if (!user.empty()) out += ", \"user\": " + quoted(user);
  return out + "}";
}

bool has_rbd_prefix(std::string_view filename) { return filename.rfind("rbd:", 0) == 0; }

Status parse_rbd_filename(std::string_view filename, Options& options) {
  if (!has_rbd_prefix(filename))
    return fail(Error::with_message(EINVAL, "File name must start with 'rbd:'"));
  std::string_view rest = filename.substr(4);
  char found = 0;
  std::string pool = next_token(rest, "/", &found);
  if (found != '/' || pool.empty()) {
    return fail(Error::with_message(EINVAL, "Pool name is required"));
  }
  // [namespace/]image: a second '/' before any '@' or ':' starts the image name.
  std::string image = next_token(rest, "/@:", &found);
  std::optional<std::string> ns;
  if (found == '/') {
    ns = std::move(image);
    image = next_token(rest, "@:", &found);
  }
  std::optional<std::string> snapshot;
  if (found == '@') snapshot = next_token(rest, ":", &found);
  options["pool"] = pool;
  if (ns) options["namespace"] = *ns;
  options["image"] = image;
  if (snapshot) options["snapshot"] = *snapshot;
  Options pairs = Options::array();
  while (found == ':') {
    std::string key = next_token(rest, "=:", &found);
    if (found != '=') {
      return fail(Error::with_message(EINVAL, "conf option " + key + " has no value"));
    }
    std::string value = next_token(rest, ":", &found);
    if (key == "conf") {
      options["conf"] = value;
    } else if (key == "id") {
      options["user"] = value;
    } else {
      pairs.push_back(key);
      pairs.push_back(value);
    }
  }
  if (!pairs.empty()) options["=keyvalue-pairs"] = pairs.dump();
  return ok();
}

Result<RbdAddress> take_rbd_address(Options& options) {
  if (auto it = options.find("filename"); it != options.end()) {
    if (!it->is_string()) {
      return fail(
          Error::with_message(EINVAL, "Invalid parameter type for 'filename', expected: string"));
    }
    const std::string filename = it->get<std::string>();
    options.erase(it);
    if (Status s = parse_rbd_filename(filename, options); !s) return fail(s.error());
  }
  RbdAddress a;
  auto take = [&options](const char* key, std::string& out, bool* present) -> Status {
    auto it = options.find(key);
    if (it == options.end()) return ok();
    if (!it->is_string()) {
      return fail(Error::with_message(
          EINVAL, std::string("Invalid parameter type for '") + key + "', expected: string"));
    }
    out = it->get<std::string>();
    if (present) *present = true;
    options.erase(it);
    return ok();
  };
  bool has_pool = false;
  bool has_image = false;
  for (auto [key, out, present] :
       {std::tuple{"pool", &a.pool, &has_pool}, std::tuple{"image", &a.image, &has_image},
        std::tuple{"namespace", &a.ns, static_cast<bool*>(nullptr)},
        std::tuple{"snapshot", &a.snapshot, &a.has_snapshot},
        std::tuple{"conf", &a.conf, static_cast<bool*>(nullptr)},
        std::tuple{"user", &a.user, static_cast<bool*>(nullptr)}}) {
    if (Status s = take(key, *out, present); !s) return fail(s.error());
  }
  // "server": [{"host": H, "port": P}, ...] names the monitors (mon_host), as in QEMU.
  if (auto it = options.find("server"); it != options.end()) {
    std::string hosts;
    const Options list = *it;
    options.erase(it);
    if (!list.is_array() && !list.is_object()) {  // server.0.host=... unflattens to an object
      return fail(
          Error::with_message(EINVAL, "Invalid parameter type for 'server', expected: array"));
    }
    for (const Options& s : list) {
      if (!s.is_object() || !s.contains("host") || !s["host"].is_string()) {
        return fail(Error::with_message(EINVAL, "Parameter 'server.host' is missing"));
      }
      std::string host = s["host"].get<std::string>();
      if (host.find(':') != std::string::npos) host = "[" + host + "]";
      if (s.contains("port")) {
        host += ":" + (s["port"].is_string() ? s["port"].get<std::string>() : s["port"].dump());
      }
      hosts += (hosts.empty() ? "" : ",") + host;
    }
    a.config.emplace_back("mon_host", hosts);
  }
  if (auto it = options.find("=keyvalue-pairs"); it != options.end()) {
    Options pairs =
        it->is_string() ? Options::parse(it->get<std::string>(), nullptr, false) : Options();
    options.erase(it);
    if (!pairs.is_array() || pairs.size() % 2 != 0) {
      return fail(Error::with_message(EINVAL, "Invalid '=keyvalue-pairs'"));
    }
    for (std::size_t i = 0; i + 1 < pairs.size(); i += 2) {
      if (!pairs[i].is_string() || !pairs[i + 1].is_string()) {
        return fail(Error::with_message(EINVAL, "Invalid '=keyvalue-pairs'"));
      }
      a.config.emplace_back(pairs[i].get<std::string>(), pairs[i + 1].get<std::string>());
    }
  }
  // QEMU checks the pool first (observed: a tree with neither names 'pool').
  if (!has_pool) return fail(Error::with_message(EINVAL, "Parameter 'pool' is missing"));
  if (!has_image) return fail(Error::with_message(EINVAL, "Parameter 'image' is missing"));
  return a;
}

}  // namespace qblock::rbd_client
