// QMP argument checking; see schema.h.
#include "qmp/schema.h"

#include <algorithm>

namespace qblock::qmp {

ArgSpec required(std::string name, ArgType type, std::vector<ArgSpec> members,
                 std::vector<std::string> values) {
  return ArgSpec{std::move(name), type, true, std::move(members), std::move(values), {}, {}};
}

ArgSpec optional(std::string name, ArgType type, std::vector<ArgSpec> members,
                 std::vector<std::string> values) {
  return ArgSpec{std::move(name), type, false, std::move(members), std::move(values), {}, {}};
}

ArgSpec enum_arg(std::string name, std::vector<std::string> values, bool is_required) {
  return ArgSpec{std::move(name), ArgType::kEnum, is_required, {}, std::move(values), {}, {}};
}

namespace {

QmpError wrong_type(const std::string& name, const char* expected) {
  return QmpError::generic("Invalid parameter type for '" + name + "', expected: " + expected);
}

std::optional<QmpError> check_value(const Options& v, const ArgSpec& spec,
                                    const std::string& name) {
  switch (spec.type) {
    case ArgType::kString:
      if (!v.is_string()) return wrong_type(name, "string");
      break;
    case ArgType::kInt:
      // QEMU's int is int64: 2^63 and above are no integer to it.
      if (!v.is_number_integer() ||
          (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))) {
        return wrong_type(name, "integer");
      }
      break;
    case ArgType::kUint:
      if (!v.is_number_integer() ||
          (v.is_number_integer() && !v.is_number_unsigned() && v.get<int64_t>() < 0)) {
        return QmpError::generic("Parameter '" + name + "' expects uint64");
      }
      break;
    case ArgType::kUint32:
      if (!v.is_number_integer())
        return QmpError::generic("Parameter '" + name + "' expects uint64");
      if ((!v.is_number_unsigned() && v.get<int64_t>() < 0) || v.get<uint64_t>() > UINT32_MAX) {
        // QEMU's range checks name the member without its path.
        return QmpError::generic("Parameter '" + spec.name + "' expects uint32_t");
      }
      break;
    case ArgType::kBool:
      if (!v.is_boolean()) return wrong_type(name, "boolean");
      break;
    case ArgType::kObject:
      if (!v.is_object()) return wrong_type(name, "object");
      return check_arguments(v, spec.members, name + ".");
    case ArgType::kAnyObject:
      if (!v.is_object()) return wrong_type(name, "object");
      break;
    case ArgType::kEnum: {
      if (!v.is_string()) return wrong_type(name, "string");
      const std::string s = v.get<std::string>();
      if (std::find(spec.values.begin(), spec.values.end(), s) == spec.values.end()) {
        // QEMU names the member without its path in this one message.
        return QmpError::generic("Parameter '" + spec.name + "' does not accept value '" + s + "'");
      }
      break;
    }
    case ArgType::kStringList:
      if (!v.is_array()) return wrong_type(name, "array");
      for (const Options& e : v) {
        if (!e.is_string()) return wrong_type(name, "string");
      }
      break;
    case ArgType::kUint64:
      if (!v.is_number_integer())
        return QmpError::generic("Parameter '" + name + "' expects uint64");
      break;
    case ArgType::kUint16:
      if (!v.is_number_integer())
        return QmpError::generic("Parameter '" + name + "' expects uint64");
      if ((!v.is_number_unsigned() && v.get<int64_t>() < 0) || v.get<uint64_t>() > UINT16_MAX) {
        return QmpError::generic("Parameter '" + spec.name + "' expects uint16_t");
      }
      break;
    case ArgType::kList: {
      if (!v.is_array()) return wrong_type(name, "array");
      size_t i = 0;
      for (const Options& e : v) {
        const std::string element = name + "[" + std::to_string(i++) + "]";
        if (std::optional<QmpError> err = check_value(e, spec.members.front(), element)) return err;
      }
      break;
    }
    case ArgType::kUnion: {
      if (!v.is_object()) return wrong_type(name, "object");
      const std::string prefix = name + ".";
      if (std::optional<QmpError> e = check_arguments(v, spec.members, prefix, true)) return e;
      const std::string tag = v[spec.members.front().name].get<std::string>();
      auto variant = std::find_if(spec.variants.begin(), spec.variants.end(),
                                  [&](const ArgSpec& s) { return s.name == tag; });
      std::vector<ArgSpec> all = spec.members;
      if (variant != spec.variants.end()) {
        if (std::optional<QmpError> e = check_arguments(v, variant->members, prefix, true))
          return e;
        all.insert(all.end(), variant->members.begin(), variant->members.end());
      }
      return check_arguments(v, all, prefix);
    }
    case ArgType::kEnumOrObject:
      if (v.is_object()) return check_arguments(v, spec.members, name + ".");
      if (!v.is_string()) return wrong_type(spec.name, spec.type_name.c_str());
      return check_value(v, enum_arg(spec.name, spec.values), name);
    case ArgType::kBlockdevRef:
    case ArgType::kBlockdevRefOrNull:
      if (v.is_object()) return check_blockdev_options(v, name + ".");
      if (v.is_string() || (v.is_null() && spec.type == ArgType::kBlockdevRefOrNull)) break;
      // The alternate's own message names the member without its path.
      return wrong_type(spec.name,
                        spec.type == ArgType::kBlockdevRef ? "BlockdevRef" : "BlockdevRefOrNull");
  }
  return std::nullopt;
}

}  // namespace

std::optional<QmpError> check_arguments(const Options& args, const std::vector<ArgSpec>& spec,
                                        const std::string& prefix, bool allow_extra) {
  for (const ArgSpec& s : spec) {
    const std::string name = prefix + s.name;
    auto it = args.find(s.name);
    if (it == args.end()) {
      if (s.required) return QmpError::generic("Parameter '" + name + "' is missing");
      continue;
    }
    if (std::optional<QmpError> e = check_value(*it, s, name)) return e;
  }
  if (!allow_extra) {
    for (auto it = args.begin(); it != args.end(); ++it) {
      const bool known = std::any_of(spec.begin(), spec.end(),
                                     [&](const ArgSpec& s) { return s.name == it.key(); });
      if (!known) return QmpError::generic("Parameter '" + prefix + it.key() + "' is unexpected");
    }
  }
  return std::nullopt;
}

}  // namespace qblock::qmp
