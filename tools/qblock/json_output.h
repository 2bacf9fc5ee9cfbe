// JSON as qemu-img prints it (--output=json).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace qblock::tools {

// `value` pretty-printed as QEMU prints JSON: four-space indent, every character outside ASCII
// escaped as \uXXXX with upper-case hex (astral ones as surrogate pairs), bytes that are not
// UTF-8 as \uFFFD, and an empty array's brackets on two lines.
std::string qemu_json(const nlohmann::ordered_json& value);

}  // namespace qblock::tools
