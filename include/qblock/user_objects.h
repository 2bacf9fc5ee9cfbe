// User-created objects (QEMU's `--object TYPE,id=ID,...` and object-add): the TLS credentials
// that the NBD server (qblock nbd, the storage daemon) and the NBD client driver name by id
// with `tls-creds=ID`. One registry per process, as QEMU's /objects container: the tools fill
// it from their command line before opening anything, and the drivers look ids up in it.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "qblock/block_node.h"
#include "qblock/error.h"
#include "qblock/secret_bytes.h"

namespace qblock {

enum class TlsEndpoint { kServer, kClient };
enum class TlsCredsType { kX509, kPsk };

// A tls-creds-x509 or tls-creds-psk object. Its files were readable when it was created
// (QEMU checks them then too); their contents are loaded by whoever uses the credentials.
struct TlsCredsObject {
  std::string id;
  TlsCredsType type = TlsCredsType::kX509;
  TlsEndpoint endpoint = TlsEndpoint::kClient;  // QEMU's default
  // QEMU's file layout: ca-cert.pem, server-cert.pem, server-key.pem, client-cert.pem,
  // client-key.pem (x509); keys.psk with "identity:hexkey" lines (psk).
  std::string dir;
  // x509: servers ask clients for a certificate signed by ca-cert.pem and refuse them
  // without one; clients check the server's certificate. QEMU's default is on.
  bool verify_peer = true;
  // psk, client endpoint: the identity sent to the server (QEMU's default "qemu").
  std::string username;

  // dir + "/keys.psk".
  std::string psk_file() const { return dir + "/keys.psk"; }
};

// An authz-simple or authz-list object: who may use a TLS-protected NBD server
// (--tls-authz=ID), judged by the distinguished name of the client's x509 certificate.
struct AuthzObject {
  struct Rule {
    std::string match;  // the identity, or a pattern with * and ? (glob)
    bool allow = true;
    bool glob = false;
  };
  std::string id;
  std::vector<Rule> rules;       // the first rule that matches decides
  bool allow_otherwise = false;  // authz-list's policy (authz-simple: deny)

  // Whether `identity` (a certificate's distinguished name) is allowed.
  bool allows(const std::string& identity) const;
};

class ObjectRegistry {
 public:
  // Creates the object that `definition` describes: QEMU's --object text
  // ("TYPE,id=ID,key=value,...", or a JSON object with "qom-type") and adds it.
  // Types: tls-creds-x509 and tls-creds-psk (properties id, dir, endpoint=server|client,
  // verify-peer=on|off, priority, username for psk); secret (data=...|file=PATH,
  // format=raw|base64, keyid=ID and iv=BASE64 for a value encrypted with AES-256-CBC under
  // the secret ID); authz-simple (identity) and authz-list (policy=allow|deny, rules: a list
  // of {match, policy, format=exact|glob}, also as rules.N.KEY); iothread (poll-max-ns,
  // poll-grow, poll-shrink, aio-max-batch, thread-pool-min, thread-pool-max: checked as QEMU
  // checks them, then kept by id only: qblock has one event loop). authz-listfile and
  // authz-pam are "invalid object type: T", as in QEMU 7.2's tools. Every id must be an
  // identifier ("Parameter 'id' expects an identifier", with QEMU's hint line).
  // iothread errors: "Parameter 'P' is unexpected", "Parameter 'P' expects integer"
  // (key=value text), "Invalid parameter type for 'P', expected: integer" (JSON), "P value
  // must be in range [0, 9223372036854775807]", "bad thread-pool-min/thread-pool-max values".
  // Secret errors (EINVAL, QEMU 7.2's words): "Either 'file' or 'data' must be provided",
  // "'file' and 'data' are mutually exclusive", "Parameter 'format' does not accept value
  // 'V'", "Unable to read PATH: ...", "Base64 data contains invalid characters", "No secret
  // with id 'ID'" (keyid), "Key should be 32 bytes in length", "IV is required to decrypt
  // secret", "IV should be 16 bytes in length not N", "Length N must be a multiple of block
  // size 16", "Incorrect number of padding bytes (N) found on decrypted data".
  // Errors (EINVAL, QEMU 7.2's words): "Parameter 'qom-type' is missing", "Parameter
  // 'qom-type' does not accept value 'T'", "Parameter 'id' is missing", "attempt to add
  // duplicate property 'ID' to object (type 'container')", "Parameter 'P' is unexpected",
  // "Parameter 'endpoint' does not accept value 'V'", "Parameter 'verify-peer' expects 'on'
  // or 'off'", "Missing 'dir' property value"; ENOENT etc. "Unable to access credentials
  // PATH: <strerror>" for a required file that cannot be read, "Username U not found in PSK
  // file PATH" for a psk client whose identity is not in keys.psk.
  Status add(std::string_view definition);
  // The same for a definition already parsed into an options tree (leaves may be strings,
  // booleans or numbers).
  Status add_options(const Options& definition);

  // The TLS credentials with `id`, for use at `endpoint`. Errors (EINVAL, QEMU's words):
  // "No TLS credentials with id 'ID'", "Object with id 'ID' is not TLS credentials",
  // "Expected TLS credentials for a server endpoint" (or "client endpoint"). The pointer
  // stays valid for the registry's life (remove() keeps deleted credentials allocated).
  Result<const TlsCredsObject*> tls_creds(std::string_view id, TlsEndpoint endpoint) const;

  // A copy of the value of the secret `id` (the caller's copy is wiped when it goes).
  // Errors (EINVAL, QEMU's words): "No secret with id 'ID'", "Object with id 'ID' is not a
  // secret".
  Result<SecretBytes> secret(std::string_view id) const;

  // The authorization object `id`. Errors (EINVAL, QEMU's words): "Cannot find QAuthZ
  // object ID ID".
  Result<const AuthzObject*> authz(std::string_view id) const;

  // Whether an object with `id` exists.
  bool contains(std::string_view id) const;
  // Whether `id` names an iothread object.
  bool is_iothread(std::string_view id) const;

  // Deletes the object `id` (QMP's object-del); a secret's value is wiped. TLS credentials
  // stay allocated (a running server may hold them) but their id is free again. Error
  // (EINVAL, QEMU's words): "object 'ID' not found".
  Status remove(std::string_view id);

 private:
  // add()/add_options(); `key_value`: the definition was "TYPE,key=value" text, whose
  // values are strings (QEMU words their errors differently from JSON's).
  Status add_checked(const Options& definition, bool key_value);
  Status add_secret(const std::string& id, const Options& definition);

  std::map<std::string, std::unique_ptr<TlsCredsObject>, std::less<>> tls_;
  std::vector<std::unique_ptr<TlsCredsObject>> retired_tls_;  // deleted, still referenced
  Status add_authz(const std::string& id, const std::string& type, const Options& definition,
                   bool key_value);

  std::map<std::string, SecretBytes, std::less<>> secrets_;  // wiped with the registry
  std::map<std::string, AuthzObject, std::less<>> authz_;
  std::map<std::string, std::string, std::less<>> others_;  // id -> qom-type
};

// The process's registry: the one the tools' --object options fill and the NBD client
// driver and server look tls-creds ids up in. Not thread-safe: fill it before starting
// threads that read it.
ObjectRegistry& user_objects();

}  // namespace qblock
