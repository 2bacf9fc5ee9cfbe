// Target options and source block status for convert and measure (see convert_common.h).
#include "qblock/convert_common.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <optional>

#include "qblock/chain_status.h"
#include "qblock/img_common.h"
#include "qblock/options.h"

namespace qblock::tools {

namespace {

enum class OptType { kStr, kSize, kNum, kBool };
struct OptDesc {
  const char* name;
  OptType type;
};

// The creation options of qemu-img's qcow2 and raw drivers (qemu-compat.md §3.1).
constexpr OptDesc kQcow2Opts[] = {
    {"encryption", OptType::kBool},
    {"encrypt.format", OptType::kStr},
    {"encrypt.key-secret", OptType::kStr},
    {"encrypt.cipher-alg", OptType::kStr},
    {"encrypt.cipher-mode", OptType::kStr},
    {"encrypt.ivgen-alg", OptType::kStr},
    {"encrypt.ivgen-hash-alg", OptType::kStr},
    {"encrypt.hash-alg", OptType::kStr},
    {"encrypt.iter-time", OptType::kNum},
    {"cluster_size", OptType::kSize},
    {"extended_l2", OptType::kBool},
    {"preallocation", OptType::kStr},
    {"compression_type", OptType::kStr},
    {"size", OptType::kSize},
    {"backing_file", OptType::kStr},
    {"backing_fmt", OptType::kStr},
    {"compat", OptType::kStr},
    {"data_file", OptType::kStr},
    {"data_file_raw", OptType::kBool},
    {"lazy_refcounts", OptType::kBool},
    {"refcount_bits", OptType::kNum},
};
constexpr OptDesc kRawOpts[] = {
    {"size", OptType::kSize},
    {"preallocation", OptType::kStr},
};
constexpr OptDesc kLuksOpts[] = {
    {"size", OptType::kSize},         {"key-secret", OptType::kStr},
    {"cipher-alg", OptType::kStr},    {"cipher-mode", OptType::kStr},
    {"ivgen-alg", OptType::kStr},     {"ivgen-hash-alg", OptType::kStr},
    {"hash-alg", OptType::kStr},      {"iter-time", OptType::kNum},
    {"preallocation", OptType::kStr},
};

std::optional<bool> parse_bool(std::string_view v) {
  if (v == "on" || v == "yes" || v == "true" || v == "y") return true;
  if (v == "off" || v == "no" || v == "false" || v == "n") return false;
  return std::nullopt;
}

Error invalid(std::string text) { return Error::with_message(EINVAL, std::move(text)); }

}  // namespace

bool is_target_format(std::string_view fmt) { return fmt == "qcow2" || fmt == "raw"; }

const std::string* TargetOptions::get(std::string_view key) const {
  const std::string* v = nullptr;
  for (const auto& [k, val] : values) {
    if (k == key) v = &val;
  }
  return v;
}

Result<TargetOptions> check_target_options(std::string_view fmt, std::string_view list) {
  TargetOptions out;
  for (const auto& [key, value] : parse_option_list(list)) {
    const OptDesc* desc = nullptr;
    if (fmt == "qcow2") {
      for (const OptDesc& d : kQcow2Opts) {
        if (key == d.name) desc = &d;
      }
    } else if (fmt == "luks") {
      for (const OptDesc& d : kLuksOpts) {
        if (key == d.name) desc = &d;
      }
    } else {
      for (const OptDesc& d : kRawOpts) {
        if (key == d.name) desc = &d;
      }
    }
    if (!desc) return fail(invalid("Invalid parameter '" + key + "'"));
    std::string stored = value;
    switch (desc->type) {
      case OptType::kBool:
        if (!parse_bool(value)) {
          return fail(invalid("Parameter '" + key + "' expects 'on' or 'off'"));
        }
        break;
      case OptType::kSize: {
        Result<uint64_t> v = parse_size(value);
        if (!v) {
          return fail(invalid("Parameter '" + key +
                              "' expects a non-negative number below 2^64\nOptional suffix k, M, "
                              "G, T, P or E means kilo-, mega-, giga-, tera-, peta-\nand "
                              "exabytes, respectively."));
        }
        stored = std::to_string(*v);
        break;
      }
      case OptType::kNum: {
        char* end = nullptr;
        errno = 0;
        std::strtoull(value.c_str(), &end, 0);
        if (value.empty() || *end || errno) {
          return fail(invalid("Parameter '" + key + "' expects a number"));
        }
        break;
      }
      case OptType::kStr: break;
    }
    out.values.emplace_back(key, std::move(stored));
  }
  return out;
}

Result<LuksImageOptions> to_luks_create_options(const TargetOptions& p) {
  LuksImageOptions o;
  if (const std::string* v = p.get("size")) o.size = std::stoull(*v);
  if (const std::string* v = p.get("key-secret")) o.key_secret = *v;
  if (const std::string* v = p.get("cipher-alg")) o.cipher_alg = *v;
  if (const std::string* v = p.get("cipher-mode")) o.cipher_mode = *v;
  if (const std::string* v = p.get("ivgen-alg")) o.ivgen_alg = *v;
  if (const std::string* v = p.get("ivgen-hash-alg")) o.ivgen_hash_alg = *v;
  if (const std::string* v = p.get("hash-alg")) o.hash_alg = *v;
  if (const std::string* v = p.get("iter-time")) {
    o.iter_time_ms = std::strtoull(v->c_str(), nullptr, 0);
  }
  if (const std::string* v = p.get("preallocation")) {
    Result<PreallocMode> m = parse_prealloc_mode(*v);
    if (!m || *m == PreallocMode::kMetadata) {
      return fail(invalid("invalid parameter value: " + *v));
    }
    o.preallocation = *m;
  }
  return o;
}

Result<Qcow2CreateOptions> to_create_options(const TargetOptions& p) {
  Qcow2CreateOptions o;
  auto bad = [](const char* param, const std::string& v) {
    return fail(
        invalid(std::string("Parameter '") + param + "' does not accept value '" + v + "'"));
  };
  // qcow2-format.md §9: encrypt.format=aes|luks, or its deprecated alias encryption=on.
  const std::string* encryption = p.get("encryption");
  if (encryption && p.get("encrypt.format")) {
    return fail(
        invalid("'encrypt.format' and its alias 'encryption' can't be used at the same time"));
  }
  if (encryption && *parse_bool(*encryption)) o.encrypt_format = "aes";
  if (const std::string* v = p.get("encrypt.format")) {
    if (*v != "aes" && *v != "luks") return bad("format", *v);
    o.encrypt_format = *v;
  }
  static constexpr const char* kLuksKeys[] = {"cipher-alg",     "cipher-mode", "ivgen-alg",
                                              "ivgen-hash-alg", "hash-alg",    "iter-time"};
  for (const auto& [key, value] : p.values) {
    if (!key.starts_with("encrypt.")) continue;
    if (o.encrypt_format.empty()) return fail(invalid("Parameter 'encrypt.format' is missing"));
    const std::string sub = key.substr(8);
    if (o.encrypt_format == "aes" && sub != "format" && sub != "key-secret") {
      return fail(invalid("Parameter '" + key + "' is unexpected"));
    }
  }
  if (!o.encrypt_format.empty()) {
    TargetOptions luks;
    for (const auto& [key, value] : p.values) {
      if (key == "encrypt.key-secret") luks.values.emplace_back("key-secret", value);
      for (const char* k : kLuksKeys) {
        if (key == std::string("encrypt.") + k) luks.values.emplace_back(k, value);
      }
    }
    Result<LuksImageOptions> e = to_luks_create_options(luks);
    if (!e) return fail(e.error());
    o.encrypt = std::move(*e);
  }
  if (const std::string* v = p.get("extended_l2")) o.extended_l2 = *parse_bool(*v);
  if (const std::string* v = p.get("data_file")) o.data_file = *v;
  if (const std::string* v = p.get("data_file_raw")) o.data_file_raw = *parse_bool(*v);
  if (const std::string* v = p.get("compat")) {
    if (*v == "0.10" || *v == "v2") {
      o.version = 2;
    } else if (*v == "1.1" || *v == "v3") {
      o.version = 3;
    } else {
      return bad("version", *v);
    }
  }
  if (const std::string* v = p.get("backing_file")) o.backing_file = *v;
  if (const std::string* v = p.get("backing_fmt")) o.backing_fmt = *v;
  if (const std::string* v = p.get("cluster_size")) o.cluster_size = std::stoull(*v);
  if (const std::string* v = p.get("preallocation")) {
    Result<PreallocMode> m = parse_prealloc_mode(*v);
    if (!m) return bad("preallocation", *v);
    o.preallocation = *m;
  }
  if (const std::string* v = p.get("lazy_refcounts")) o.lazy_refcounts = *parse_bool(*v);
  if (const std::string* v = p.get("refcount_bits")) o.refcount_bits = std::stoull(*v, nullptr, 0);
  if (const std::string* v = p.get("compression_type")) {
    if (*v == "zlib") {
      o.compression_type = 0;
    } else if (*v == "zstd") {
      o.compression_type = 1;
    } else {
      return bad("compression-type", *v);
    }
  }
  return o;
}

Task<Result<BlockStatus>> source_status(BlockNode* top, uint64_t offset, uint64_t bytes,
                                        bool top_only) {
  ChainStatusQuery query;
  query.top_only = top_only;
  // Data clusters of a metadata-preallocated image that are holes in the file read as zeros;
  // knowing that keeps the copy sparse.
  query.refine = resolve_preallocated;
  Task<Result<ChainStatus>> ask = chain_status(top, offset, bytes, query);
  Result<ChainStatus> chain = co_await std::move(ask);
  if (!chain) co_return tl::unexpected(chain.error());
  co_return chain->status;
}

}  // namespace qblock::tools
