// QEMU's nbd filenames and address options (see nbd_address.h).
#include "block/protocols/nbd_address.h"

#include <cctype>

#include "qblock/driver/driver.h"

namespace qblock::nbd_client {

namespace {

Error invalid_url() { return Error::with_message(EINVAL, "No valid URL specified"); }

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// RFC 3986 percent-decoding; a malformed escape is kept as it is.
std::string percent_decode(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hex_value(s[i + 1]) >= 0 && hex_value(s[i + 2]) >= 0) {
      out += static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

bool all_digits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

// nbd[+tcp|+unix]://[host[:port]]/[export][?socket=path]
Status parse_uri(std::string_view scheme, std::string_view rest, Options& options) {
  bool is_unix;
  if (scheme == "nbd" || scheme == "nbd+tcp") {
    is_unix = false;
  } else if (scheme == "nbd+unix") {
    is_unix = true;
  } else {
    return fail(Error::with_message(EINVAL, "Unknown protocol '" + std::string(scheme) + "'"));
  }
  std::string_view query;
  if (std::size_t q = rest.find('?'); q != std::string_view::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }
  if (std::size_t f = rest.find('#'); f != std::string_view::npos) rest = rest.substr(0, f);
  std::size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? "" : rest.substr(slash);
  // The authority: [user@]host[:port], host possibly a bracketed IPv6 literal.
  if (std::size_t at = authority.rfind('@'); at != std::string_view::npos) {
    authority = authority.substr(at + 1);
  }
  std::string_view host = authority, port;
  if (!authority.empty() && authority.front() == '[') {
    std::size_t close = authority.find(']');
    if (close == std::string_view::npos) return fail(invalid_url());
    host = authority.substr(1, close - 1);
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return fail(invalid_url());
      port = after.substr(1);
    }
  } else if (std::size_t colon = authority.rfind(':'); colon != std::string_view::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
  }
  if (!port.empty() && !all_digits(port)) return fail(invalid_url());
  // Exactly one query parameter, "socket", for nbd+unix; none otherwise.
  std::vector<std::pair<std::string, std::string>> params;
  for (std::size_t pos = 0; pos < query.size();) {
    std::size_t amp = query.find_first_of("&;", pos);
    std::string_view param = query.substr(pos, amp == std::string_view::npos ? amp : amp - pos);
    if (!param.empty()) {
      std::size_t eq = param.find('=');
      params.emplace_back(percent_decode(param.substr(0, eq)),
                          eq == std::string_view::npos ? "" : percent_decode(param.substr(eq + 1)));
    }
    if (amp == std::string_view::npos) break;
    pos = amp + 1;
  }
  if (params.size() > 1 || (is_unix && params.empty()) || (!is_unix && !params.empty())) {
    return fail(invalid_url());
  }
  Options server = Options::object();
  if (is_unix) {
    if (!host.empty() || !port.empty() || params[0].first != "socket") return fail(invalid_url());
    server["type"] = "unix";
    server["path"] = params[0].second;
  } else {
    if (host.empty()) return fail(invalid_url());
    server["type"] = "inet";
    server["host"] = percent_decode(host);
    server["port"] = port.empty() ? std::string(kDefaultPort) : std::string(port);
  }
  options["server"] = server;
  if (!path.empty() && path.front() == '/') path.remove_prefix(1);
  if (!path.empty()) options["export"] = percent_decode(path);
  return ok();
}

// The legacy form: nbd:unix:PATH[:exportname=NAME] or nbd:HOST:PORT[:exportname=NAME].
Status parse_legacy(std::string_view rest, Options& options) {
  constexpr std::string_view kExport = ":exportname=";
  if (std::size_t e = rest.find(kExport); e != std::string_view::npos) {
    options["export"] = std::string(rest.substr(e + kExport.size()));
    rest = rest.substr(0, e);
  }
  Options server = Options::object();
  if (rest.substr(0, 5) == "unix:") {
    server["type"] = "unix";
    server["path"] = std::string(rest.substr(5));
  } else {
    std::size_t colon = rest.rfind(':');
    std::string_view host = rest.substr(0, colon);
    if (!host.empty() && host.front() == '[' && host.back() == ']') {
      host = host.substr(1, host.size() - 2);
    }
    if (colon == std::string_view::npos || host.empty()) {
      return fail(Error::with_message(EINVAL, "error parsing address '" + std::string(rest) + "'"));
    }
    server["type"] = "inet";
    server["host"] = std::string(host);
    server["port"] = std::string(rest.substr(colon + 1));
  }
  options["server"] = server;
  return ok();
}

}  // namespace

std::string NbdAddress::uri() const {
  // QEMU 7.2 leaves out the export's "/" when there is no export name.
  const std::string slash_export = export_name.empty() ? "" : "/" + export_name;
  if (type == Type::kUnix) return "nbd+unix://" + slash_export + "?socket=" + path;
  std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  return "nbd://" + h + ":" + port + slash_export;
}

std::string NbdAddress::display() const { return type == Type::kUnix ? path : host + ":" + port; }

bool has_nbd_prefix(std::string_view filename) {
  std::size_t colon = filename.find(':');
  if (colon == std::string_view::npos) return false;
  std::string_view scheme = filename.substr(0, colon);
  if (scheme.find('/') != std::string_view::npos) return false;
  return scheme == "nbd" || scheme.substr(0, 4) == "nbd+" || scheme.substr(0, 4) == "nbds";
}

Status parse_nbd_filename(std::string_view filename, Options& options) {
  std::size_t sep = filename.find("://");
  if (sep != std::string_view::npos) {
    return parse_uri(filename.substr(0, sep), filename.substr(sep + 3), options);
  }
  std::size_t colon = filename.find(':');
  std::string_view scheme = filename.substr(0, colon);
  if (scheme != "nbd" || colon == std::string_view::npos) {
    return fail(Error::with_message(EINVAL, "Unknown protocol '" + std::string(scheme) + "'"));
  }
  return parse_legacy(filename.substr(colon + 1), options);
}

Result<NbdAddress> take_nbd_address(Options& options) {
  auto filename = take_string(options, "filename");
  if (!filename) return fail(filename.error());
  bool has_legacy =
      options.contains("host") || options.contains("port") || options.contains("path");
  if (*filename) {
    if (options.contains("server") || has_legacy) {
      return fail(Error::with_message(
          EINVAL, "host/port/path and a file name may not be specified at the same time"));
    }
    if (Status s = parse_nbd_filename(**filename, options); !s) return fail(s.error());
  }
  if (options.contains("server") && has_legacy) {
    return fail(
        Error::with_message(EINVAL, "Cannot use 'server' and path/host/port at the same time"));
  }
  if (has_legacy) {
    // The legacy top-level keys: path means unix, host (and port) inet.
    Options server = Options::object();
    auto path = take_string(options, "path");
    if (!path) return fail(path.error());
    auto host = take_string(options, "host");
    if (!host) return fail(host.error());
    auto port = take_string(options, "port");
    if (!port) return fail(port.error());
    if (*path && *host) {
      return fail(Error::with_message(EINVAL, "path and host may not be used at the same time"));
    }
    if (*path) {
      server["type"] = "unix";
      server["path"] = **path;
    } else {
      if (!*host) return fail(Error::with_message(EINVAL, "NBD server address missing"));
      server["type"] = "inet";
      server["host"] = **host;
      server["port"] = port->value_or(std::string(kDefaultPort));
    }
    options["server"] = server;
  }
  auto it = options.find("server");
  if (it == options.end() || !it->is_object()) {
    return fail(Error::with_message(EINVAL, "NBD server address missing"));
  }
  Options server = *it;
  options.erase(it);
  NbdAddress address;
  auto type = take_string(server, "type");
  if (!type) return fail(type.error());
  if (!*type) return fail(Error::with_message(EINVAL, "Parameter 'type' is missing"));
  if (**type == "unix") {
    address.type = NbdAddress::Type::kUnix;
    auto path = take_string(server, "path");
    if (!path) return fail(path.error());
    if (!*path) return fail(Error::with_message(EINVAL, "Parameter 'path' is missing"));
    address.path = **path;
    // Linux abstract sockets are not supported; tight/abstract would be ignored by QEMU too.
    server.erase("abstract");
    server.erase("tight");
  } else if (**type == "inet") {
    address.type = NbdAddress::Type::kInet;
    auto host = take_string(server, "host");
    if (!host) return fail(host.error());
    if (!*host) return fail(Error::with_message(EINVAL, "Parameter 'host' is missing"));
    auto port = take_string(server, "port");
    if (!port) return fail(port.error());
    if (!*port) return fail(Error::with_message(EINVAL, "Parameter 'port' is missing"));
    address.host = **host;
    address.port = **port;
  } else {
    return fail(
        Error::with_message(EINVAL, "Parameter 'type' does not accept value '" + **type + "'"));
  }
  if (!server.empty()) {
    return fail(Error::with_message(
        EINVAL, "Parameter 'server." + server.begin().key() + "' is unexpected"));
  }
  auto export_name = take_string(options, "export");
  if (!export_name) return fail(export_name.error());
  address.export_name = export_name->value_or("");
  return address;
}

}  // namespace qblock::nbd_client
