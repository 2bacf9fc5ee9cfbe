// Argument checking for QMP commands: a small description of a command's parameters (names,
// JSON types, required or optional, enum values, nested objects) and the check that QEMU's
// input visitor does before a command runs, with its messages ("Parameter 'x' is missing",
// "Invalid parameter type for 'x', expected: integer", "Parameter 'x' is unexpected",
// "Parameter 'type' does not accept value 'y'").
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "qblock/block_node.h"
#include "qmp/qmp_error.h"

namespace qblock::qmp {

enum class ArgType {
  kString,
  kInt,     // a JSON integer (signed 64 bits)
  kUint,    // a JSON integer >= 0 ("expects uint64" otherwise)
  kUint32,  // a JSON integer in [0, 2^32) ("expects uint32_t" outside)
  kBool,
  kObject,     // checked against `members` (strict: other keys are unexpected)
  kAnyObject,  // any object, not looked into (checked by the command itself)
  kEnum,       // a string out of `values`
  kStringList,
  kUint64,  // QEMU's uint64 visitor: any JSON integer (negative ones wrap), else "expects uint64"
  kUint16,  // a JSON integer in [0, 2^16) ("expects uint16_t" outside)
  kList,    // a JSON array of `members[0]` (elements named "name[i]"; bare name "null")
  kUnion,   // an object: `members` (the first one is the enum tag), then the members of the
            // `variants` entry named like the tag's value
  kEnumOrObject,  // an alternate: a string out of `values`, or an object checked like kObject
                  // (neither: "expected: <type_name>")
  kBlockdevRef,   // a node name or inline BlockdevOptions (checked with check_blockdev_options)
  kBlockdevRefOrNull,  // as kBlockdevRef, or null
};

struct ArgSpec {
  std::string name;
  ArgType type = ArgType::kString;
  bool required = true;
  std::vector<ArgSpec> members;     // kObject
  std::vector<std::string> values;  // kEnum, kEnumOrObject
  std::vector<ArgSpec> variants;    // kUnion: one per tag value, named like it
  std::string type_name;            // kEnumOrObject: QAPI's name of the alternate
};

// Required and optional constructors, for compact tables.
ArgSpec required(std::string name, ArgType type, std::vector<ArgSpec> members = {},
                 std::vector<std::string> values = {});
ArgSpec optional(std::string name, ArgType type, std::vector<ArgSpec> members = {},
                 std::vector<std::string> values = {});
ArgSpec enum_arg(std::string name, std::vector<std::string> values, bool is_required = true);

// Checks `args` (an object) against `spec` in the spec's order, then reports the first key that
// the spec does not name, unless `allow_extra`. Names in messages are prefixed with `prefix`
// ("addr." for members of addr), as QEMU does. Returns the first problem, or nullopt.
std::optional<QmpError> check_arguments(const Options& args, const std::vector<ArgSpec>& spec,
                                        const std::string& prefix = "", bool allow_extra = false);

// Sets `driver` to the string member "driver" of a BlockdevOptions object; QEMU's error when
// it is missing or not a string (names prefixed with `prefix`, "file." for a child).
std::optional<QmpError> blockdev_driver(const Options& args, const std::string& prefix,
                                        std::string& driver);

// blockdev-add's BlockdevOptions (QEMU 7.2's schema, see blockdev_schema.cc): the base members,
// then the driver's, then unexpected keys. Defined in blockdev_schema.cc.
std::optional<QmpError> check_blockdev_options(const Options& args, const std::string& prefix);

// QEMU 7.2's BlockdevDriver values: every driver its schema knows (qblock registers fewer).
// blockdev-add and blockdev-create accept each as "driver" in their argument check.
const std::vector<std::string>& qemu_blockdev_drivers();

}  // namespace qblock::qmp
