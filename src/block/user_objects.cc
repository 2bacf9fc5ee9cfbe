// The registry of user-created objects (qblock/user_objects.h): --object parsing with QEMU
// 7.2's property checks and messages, and the checks QEMU makes when TLS credentials are
// created (the files they need must be readable).
#include "qblock/user_objects.h"

#include <string.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "crypto/base64.h"
#include "crypto/cipher.h"
#include "qblock/options.h"

namespace qblock {
namespace {

Error invalid(std::string text) { return Error::with_message(EINVAL, std::move(text)); }

// A property's value as QEMU's keyval visitor sees it: strings as they are, JSON scalars as
// their text.
std::string text_of(const Options& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "on" : "off";
  return v.dump();
}

// QEMU's boolean property syntax.
Result<bool> parse_bool(const Options& v, const std::string& name) {
  if (v.is_boolean()) return v.get<bool>();
  const std::string s = text_of(v);
  if (s == "on" || s == "yes" || s == "true") return true;
  if (s == "off" || s == "no" || s == "false") return false;
  return tl::unexpected(invalid("Parameter '" + name + "' expects 'on' or 'off'"));
}

// QEMU checks each file the credentials need when they are created; optional ones may be
// absent.
Status check_readable(const std::string& path) {
  if (::access(path.c_str(), R_OK) == 0) return {};
  const int e = errno;
  return tl::unexpected(
      Error::with_message(e, "Unable to access credentials " + path + ": " + std::strerror(e)));
}

// A psk client sends `username`: it must have a key in keys.psk ("identity:hexkey" lines).
Status check_psk_username(const std::string& path, const std::string& username) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    const std::size_t colon = line.find(':');
    if (colon != std::string::npos && line.compare(0, colon, username) == 0) return {};
  }
  return tl::unexpected(invalid("Username " + username + " not found in PSK file " + path));
}

Status complete_tls(TlsCredsObject& creds) {
  if (creds.dir.empty()) return tl::unexpected(invalid("Missing 'dir' property value"));
  if (creds.type == TlsCredsType::kPsk) {
    if (Status s = check_readable(creds.psk_file()); !s) return s;
    if (creds.endpoint == TlsEndpoint::kClient) {
      if (creds.username.empty()) creds.username = "qemu";
      return check_psk_username(creds.psk_file(), creds.username);
    }
    return {};
  }
  // x509 (QEMU's order): the CA is needed at both ends; a server needs its certificate and
  // key, a client's are optional (sent when present).
  if (Status s = check_readable(creds.dir + "/ca-cert.pem"); !s) return s;
  if (creds.endpoint == TlsEndpoint::kServer) {
    for (const char* name : {"/server-cert.pem", "/server-key.pem"}) {
      if (Status s = check_readable(creds.dir + name); !s) return s;
    }
  }
  return {};
}

// The bytes of a secret's file, as they are (a trailing newline is part of the secret).
Result<SecretBytes> read_secret_file(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) {
    const int e = errno;
    // glib's wording, which QEMU passes on.
    return tl::unexpected(Error::with_message(e, "Unable to read " + path +
                                                     ": Failed to open file \u201c" + path +
                                                     "\u201d: " + std::strerror(e)));
  }
  std::vector<uint8_t> buf;
  uint8_t chunk[4096];
  std::size_t n;
  while ((n = std::fread(chunk, 1, sizeof(chunk), f)) > 0) buf.insert(buf.end(), chunk, chunk + n);
  std::fclose(f);
  SecretBytes out(buf.data(), buf.size());
  if (!buf.empty()) explicit_bzero(buf.data(), buf.size());  // an empty file: data() is null
  explicit_bzero(chunk, sizeof(chunk));
  return out;
}

// A value encrypted with AES-256-CBC under `key`, with PKCS#7 padding (QEMU's secret keyid).
Result<SecretBytes> decrypt_secret(SecretBytes ciphertext, const SecretBytes& key,
                                   const std::optional<std::string>& iv_text) {
  if (key.size() != 32) return tl::unexpected(invalid("Key should be 32 bytes in length"));
  if (!iv_text) return tl::unexpected(invalid("IV is required to decrypt secret"));
  Result<SecretBytes> iv = crypto::base64_decode(*iv_text);
  if (!iv) return tl::unexpected(iv.error());
  if (iv->size() != 16) {
    return tl::unexpected(
        invalid("IV should be 16 bytes in length not " + std::to_string(iv->size())));
  }
  if (ciphertext.size() % 16 != 0) {
    return tl::unexpected(invalid("Length " + std::to_string(ciphertext.size()) +
                                  " must be a multiple of block size 16"));
  }
  Result<std::unique_ptr<crypto::Cipher>> aes = crypto::Cipher::create(
      crypto::CipherAlg::kAes256, crypto::CipherMode::kCbc, key.data(), key.size());
  if (!aes) return tl::unexpected(aes.error());
  (*aes)->decrypt(ciphertext.data(), ciphertext.size(), iv->data());
  const std::size_t pad = ciphertext.empty() ? 0 : ciphertext.data()[ciphertext.size() - 1];
  if (pad > ciphertext.size()) {
    return tl::unexpected(invalid("Incorrect number of padding bytes (" + std::to_string(pad) +
                                  ") found on decrypted data"));
  }
  ciphertext.truncate(ciphertext.size() - pad);
  return ciphertext;
}

}  // namespace

Status ObjectRegistry::add_secret(const std::string& id, const Options& definition) {
  std::optional<std::string> data, file, keyid, iv;
  bool base64 = false;
  for (auto it = definition.begin(); it != definition.end(); ++it) {
    const std::string& key = it.key();
    if (key == "qom-type" || key == "id") continue;
    if (key == "data") {
      data = text_of(*it);
    } else if (key == "file") {
      file = text_of(*it);
    } else if (key == "format") {
      const std::string v = text_of(*it);
      if (v != "raw" && v != "base64") {
        return tl::unexpected(invalid("Parameter 'format' does not accept value '" + v + "'"));
      }
      base64 = v == "base64";
    } else if (key == "keyid") {
      keyid = text_of(*it);
    } else if (key == "iv") {
      iv = text_of(*it);
    } else if (key == "loaded") {
      // Accepted as QEMU does; the secret is loaded once all properties are set.
    } else {
      return tl::unexpected(invalid("Parameter '" + key + "' is unexpected"));
    }
  }
  if (data && file) return tl::unexpected(invalid("'file' and 'data' are mutually exclusive"));
  if (!data && !file) return tl::unexpected(invalid("Either 'file' or 'data' must be provided"));
  Result<SecretBytes> input = file ? read_secret_file(*file) : SecretBytes(*data);
  if (data) {
    // The property's copy of the text is the caller's; ours is wiped at once.
    explicit_bzero(data->data(), data->size());
  }
  if (!input) return tl::unexpected(input.error());
  if (base64) {
    const std::string_view text(reinterpret_cast<const char*>(input->data()), input->size());
    Result<SecretBytes> decoded = crypto::base64_decode(text);
    if (!decoded) return tl::unexpected(decoded.error());
    input = std::move(*decoded);
  }
  if (keyid) {
    Result<SecretBytes> key = secret(*keyid);
    if (!key) return tl::unexpected(key.error());
    Result<SecretBytes> plain = decrypt_secret(std::move(*input), *key, iv);
    if (!plain) return tl::unexpected(plain.error());
    input = std::move(*plain);
  }
  secrets_.emplace(id, std::move(*input));
  return {};
}

namespace {

// QEMU's identifiers: letters, digits, '-', '.' and '_', starting with a letter.
bool is_identifier(std::string_view id) {
  if (id.empty() || !std::isalpha(static_cast<unsigned char>(id.front()))) return false;
  for (char c : id) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '.' && c != '_') {
      return false;
    }
  }
  return true;
}

// An iothread's integer property: a JSON integer, or from a key=value definition a decimal,
// 0x hex or 0 octal text; at least 0.
Result<int64_t> iothread_number(const Options& v, const std::string& name, bool key_value) {
  int64_t n = 0;
  if (key_value && v.is_string()) {
    const std::string text = v.get<std::string>();
    char* end = nullptr;
    errno = 0;
    n = std::strtoll(text.c_str(), &end, 0);
    if (text.empty() || *end != '\0' || errno == ERANGE) {
      return tl::unexpected(invalid("Parameter '" + name + "' expects integer"));
    }
  } else if (v.is_number_integer()) {
    n = v.get<int64_t>();
  } else {
    return tl::unexpected(invalid("Invalid parameter type for '" + name + "', expected: integer"));
  }
  if (n < 0) {
    return tl::unexpected(invalid(name + " value must be in range [0, 9223372036854775807]"));
  }
  return n;
}

// Checks an iothread's properties as QEMU 7.2 does (qblock runs every node on its one event
// loop and worker pool: an iothread changes nothing but must be a valid one).
Status check_iothread(const Options& definition, bool key_value) {
  int64_t pool_min = 0, pool_max = 64;
  for (auto it = definition.begin(); it != definition.end(); ++it) {
    const std::string& key = it.key();
    if (key == "qom-type" || key == "id") continue;
    if (key != "poll-max-ns" && key != "poll-grow" && key != "poll-shrink" &&
        key != "aio-max-batch" && key != "thread-pool-min" && key != "thread-pool-max") {
      return tl::unexpected(invalid("Parameter '" + key + "' is unexpected"));
    }
    Result<int64_t> n = iothread_number(*it, key, key_value);
    if (!n) return tl::unexpected(n.error());
    if (key == "thread-pool-min") pool_min = *n;
    if (key == "thread-pool-max") pool_max = *n;
  }
  if (pool_min > pool_max || pool_max <= 0) {
    return tl::unexpected(invalid("bad thread-pool-min/thread-pool-max values"));
  }
  return {};
}

}  // namespace

Status ObjectRegistry::add(std::string_view definition) {
  const bool json = !definition.empty() && definition.front() == '{';
  Result<Options> tree =
      json ? parse_json_options(definition) : parse_key_value_options(definition, "qom-type");
  if (!tree) return tl::unexpected(tree.error());
  return add_checked(*tree, !json);
}

Status ObjectRegistry::add_options(const Options& definition) {
  return add_checked(definition, false);
}

Status ObjectRegistry::remove(std::string_view id) {
  const std::string key(id);
  if (secrets_.erase(key) || authz_.erase(key) || others_.erase(key)) return {};
  if (auto it = tls_.find(id); it != tls_.end()) {
    retired_tls_.push_back(std::move(it->second));  // a server may still hold the pointer
    tls_.erase(it);
    return {};
  }
  return tl::unexpected(invalid("object '" + std::string(id) + "' not found"));
}

bool ObjectRegistry::is_iothread(std::string_view id) const {
  auto it = others_.find(id);
  return it != others_.end() && it->second == "iothread";
}

namespace {

// A string property of QMP's object-add (any value of the key=value form is one).
Status check_string(const Options& v, const std::string& name, bool key_value) {
  if (!key_value && !v.is_string()) {
    return tl::unexpected(invalid("Invalid parameter type for '" + name + "', expected: string"));
  }
  return {};
}

// authz-listfile (filename, refresh) and authz-pam (service) as QEMU's schema checks them:
// 'id', then each property in schema order, then unexpected ones.
Status check_unbuilt_authz(const std::string& type, const Options& definition, bool key_value) {
  if (!definition.contains("id")) return tl::unexpected(invalid("Parameter 'id' is missing"));
  const std::string required = type == "authz-pam" ? "service" : "filename";
  auto it = definition.find(required);
  if (it == definition.end()) {
    return tl::unexpected(invalid("Parameter '" + required + "' is missing"));
  }
  if (Status s = check_string(*it, required, key_value); !s) return s;
  if (type == "authz-listfile") {
    if (auto refresh = definition.find("refresh"); refresh != definition.end()) {
      if (!key_value && !refresh->is_boolean()) {
        return tl::unexpected(invalid("Invalid parameter type for 'refresh', expected: boolean"));
      }
      if (Result<bool> b = parse_bool(*refresh, "refresh"); !b) return tl::unexpected(b.error());
    }
  }
  for (auto k = definition.begin(); k != definition.end(); ++k) {
    if (k.key() != "qom-type" && k.key() != "id" && k.key() != required && k.key() != "refresh") {
      return tl::unexpected(invalid("Parameter '" + k.key() + "' is unexpected"));
    }
    if (k.key() == "refresh" && type == "authz-pam") {
      return tl::unexpected(invalid("Parameter 'refresh' is unexpected"));
    }
  }
  return {};
}

}  // namespace

Status ObjectRegistry::add_checked(const Options& definition, bool key_value) {
  auto type_it = definition.find("qom-type");
  if (type_it == definition.end()) {
    return tl::unexpected(invalid("Parameter 'qom-type' is missing"));
  }
  const std::string type = text_of(*type_it);
  const bool x509 = type == "tls-creds-x509";
  const bool psk = type == "tls-creds-psk";
  const bool authz = type == "authz-simple" || type == "authz-list";
  if (type == "authz-listfile" || type == "authz-pam") {
    // Types QEMU's schema knows and Debian's QEMU 7.2 tools are built without: their
    // properties are checked as the schema has them, then the type is refused.
    if (Status checked = check_unbuilt_authz(type, definition, key_value); !checked) {
      return checked;
    }
    return tl::unexpected(invalid("invalid object type: " + type));
  }
  if (!x509 && !psk && !authz && type != "secret" && type != "iothread") {
    return tl::unexpected(invalid("Parameter 'qom-type' does not accept value '" + type + "'"));
  }
  auto id_it = definition.find("id");
  if (id_it == definition.end()) return tl::unexpected(invalid("Parameter 'id' is missing"));
  const std::string id = text_of(*id_it);
  if (!is_identifier(id)) {
    return tl::unexpected(
        invalid("Parameter 'id' expects an identifier\nIdentifiers consist of letters, digits, "
                "'-', '.', '_', starting with a letter."));
  }
  if (contains(id)) {
    return tl::unexpected(
        invalid("attempt to add duplicate property '" + id + "' to object (type 'container')"));
  }
  if (type == "secret") return add_secret(id, definition);
  if (authz) return add_authz(id, type, definition, key_value);
  if (!x509 && !psk) {
    if (Status checked = check_iothread(definition, key_value); !checked) return checked;
    others_.emplace(id, type);
    return {};
  }

  auto creds = std::make_unique<TlsCredsObject>();
  creds->id = id;
  creds->type = psk ? TlsCredsType::kPsk : TlsCredsType::kX509;
  for (auto it = definition.begin(); it != definition.end(); ++it) {
    const std::string& key = it.key();
    if (key == "qom-type" || key == "id") continue;
    if (key == "dir") {
      creds->dir = text_of(*it);
    } else if (key == "endpoint") {
      const std::string v = text_of(*it);
      if (v != "server" && v != "client") {
        return tl::unexpected(invalid("Parameter 'endpoint' does not accept value '" + v + "'"));
      }
      creds->endpoint = v == "server" ? TlsEndpoint::kServer : TlsEndpoint::kClient;
    } else if (key == "verify-peer") {
      Result<bool> v = parse_bool(*it, key);
      if (!v) return tl::unexpected(v.error());
      creds->verify_peer = *v;
    } else if (key == "username" && psk) {
      creds->username = text_of(*it);
    } else if (key == "priority" || key == "loaded" || (x509 && key == "sanity-check")) {
      // Accepted as QEMU does; qblock's sessions use their own priorities.
    } else {
      return tl::unexpected(invalid("Parameter '" + key + "' is unexpected"));
    }
  }
  if (Status s = complete_tls(*creds); !s) return s;
  tls_.emplace(id, std::move(creds));
  return {};
}

namespace {

// QEMU's "exact" and "glob" (* any run of characters, ? one character) matches.
bool glob_match(std::string_view pattern, std::string_view text) {
  std::size_t p = 0, t = 0, star = std::string_view::npos, resume = 0;
  while (t < text.size()) {
    if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == text[t])) {
      ++p, ++t;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      resume = t;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      t = ++resume;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

Result<bool> parse_policy(const Options& v) {
  const std::string text = text_of(v);
  if (text != "allow" && text != "deny") {
    return tl::unexpected(invalid("Parameter 'policy' does not accept value '" + text + "'"));
  }
  return text == "allow";
}

}  // namespace

bool AuthzObject::allows(const std::string& identity) const {
  for (const Rule& r : rules) {
    if (r.glob ? glob_match(r.match, identity) : r.match == identity) return r.allow;
  }
  return allow_otherwise;
}

Status ObjectRegistry::add_authz(const std::string& id, const std::string& type,
                                 const Options& definition, bool key_value) {
  AuthzObject authz;
  authz.id = id;
  if (type == "authz-simple") {
    // As QEMU's schema: 'identity' (present, a string), then unexpected properties.
    auto identity = definition.find("identity");
    if (identity == definition.end()) {
      return tl::unexpected(invalid("Parameter 'identity' is missing"));
    }
    if (Status s = check_string(*identity, "identity", key_value); !s) return s;
    for (auto it = definition.begin(); it != definition.end(); ++it) {
      if (it.key() != "qom-type" && it.key() != "id" && it.key() != "identity") {
        return tl::unexpected(invalid("Parameter '" + it.key() + "' is unexpected"));
      }
    }
    authz.rules.push_back({text_of(*identity), true, false});
    authz_.emplace(id, std::move(authz));
    return {};
  }
  // authz-list: rules as a JSON list, or as rules.N.KEY from the key=value form.
  Options rules = Options::array();
  for (auto it = definition.begin(); it != definition.end(); ++it) {
    const std::string& key = it.key();
    if (key == "qom-type" || key == "id") continue;
    if (key == "policy") {
      Result<bool> allow = parse_policy(*it);
      if (!allow) return tl::unexpected(allow.error());
      authz.allow_otherwise = *allow;
    } else if (key == "rules" && !it->is_array() && !(key_value && it->is_object())) {
      return tl::unexpected(invalid("Invalid parameter type for 'rules', expected: array"));
    } else if (key == "rules" && it->is_array()) {
      rules = *it;
    } else if (key == "rules" && it->is_object()) {
      // A parsed definition may carry the list as {"0": {...}, "1": {...}}.
      for (auto r = it->begin(); r != it->end(); ++r) {
        if (r.key().empty() || r.key().size() > 4 ||
            r.key().find_first_not_of("0123456789") != std::string::npos) {
          return tl::unexpected(invalid("Parameter 'rules." + r.key() + "' is unexpected"));
        }
        const std::size_t n = std::stoul(r.key());
        while (rules.size() <= n) rules.push_back(Options::object());
        rules[n] = *r;
      }
    } else if (key.rfind("rules.", 0) == 0) {
      const std::string rest = key.substr(6);
      const std::size_t dot = rest.find('.');
      const std::string index = rest.substr(0, dot);
      if (dot == std::string::npos || index.empty() ||
          index.find_first_not_of("0123456789") != std::string::npos || index.size() > 4) {
        return tl::unexpected(invalid("Parameter '" + key + "' is unexpected"));
      }
      const std::size_t n = std::stoul(index);
      while (rules.size() <= n) rules.push_back(Options::object());
      rules[n][rest.substr(dot + 1)] = *it;
    } else {
      return tl::unexpected(invalid("Parameter '" + key + "' is unexpected"));
    }
  }
  for (std::size_t i = 0; i < rules.size(); ++i) {
    const Options& r = rules[i];
    const std::string where = "rules[" + std::to_string(i) + "]";
    if (!r.is_object()) {
      return tl::unexpected(
          invalid("Invalid parameter type for '" + where + "', expected: QAuthZListRule"));
    }
    AuthzObject::Rule rule;
    for (auto it = r.begin(); it != r.end(); ++it) {
      if (it.key() == "match") {
        rule.match = text_of(*it);
      } else if (it.key() == "policy") {
        Result<bool> allow = parse_policy(*it);
        if (!allow) return tl::unexpected(allow.error());
        rule.allow = *allow;
      } else if (it.key() == "format") {
        const std::string format = text_of(*it);
        if (format != "exact" && format != "glob") {
          return tl::unexpected(
              invalid("Parameter 'format' does not accept value '" + format + "'"));
        }
        rule.glob = format == "glob";
      } else {
        return tl::unexpected(invalid("Parameter '" + where + "." + it.key() + "' is unexpected"));
      }
    }
    for (const char* required : {"match", "policy"}) {
      if (!r.contains(required)) {
        return tl::unexpected(invalid("Parameter '" + where + "." + required + "' is missing"));
      }
    }
    authz.rules.push_back(std::move(rule));
  }
  authz_.emplace(id, std::move(authz));
  return {};
}

Result<const AuthzObject*> ObjectRegistry::authz(std::string_view id) const {
  auto it = authz_.find(id);
  if (it == authz_.end()) {
    return tl::unexpected(invalid("Cannot find QAuthZ object ID " + std::string(id)));
  }
  return &it->second;
}

Result<const TlsCredsObject*> ObjectRegistry::tls_creds(std::string_view id,
                                                        TlsEndpoint endpoint) const {
  auto it = tls_.find(id);
  if (it == tls_.end()) {
    if (contains(id)) {
      return tl::unexpected(
          invalid("Object with id '" + std::string(id) + "' is not TLS credentials"));
    }
    return tl::unexpected(invalid("No TLS credentials with id '" + std::string(id) + "'"));
  }
  if (it->second->endpoint != endpoint) {
    return tl::unexpected(invalid(std::string("Expected TLS credentials for a ") +
                                  (endpoint == TlsEndpoint::kServer ? "server" : "client") +
                                  " endpoint"));
  }
  return it->second.get();
}

Result<SecretBytes> ObjectRegistry::secret(std::string_view id) const {
  auto it = secrets_.find(id);
  if (it != secrets_.end()) return it->second.clone();
  if (contains(id)) {
    return tl::unexpected(invalid("Object with id '" + std::string(id) + "' is not a secret"));
  }
  return tl::unexpected(invalid("No secret with id '" + std::string(id) + "'"));
}

bool ObjectRegistry::contains(std::string_view id) const {
  return tls_.find(id) != tls_.end() || secrets_.find(id) != secrets_.end() ||
         authz_.find(id) != authz_.end() || others_.find(id) != others_.end();
}

ObjectRegistry& user_objects() {
  static ObjectRegistry registry;
  return registry;
}

}  // namespace qblock
