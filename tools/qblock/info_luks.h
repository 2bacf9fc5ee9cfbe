// qemu-img info's "Format specific information" for luks images, human and JSON, in the
// order qemu-img 7.2 prints the fields.
#pragma once

#include <nlohmann/json.hpp>

#include "qblock/luks_image.h"

namespace qblock::tools {

// The lines after "Format specific information:" (indented by four spaces).
void print_luks_info(const LuksInfo& info);

// The "format-specific" object: {"type": "luks", "data": {...}}.
nlohmann::ordered_json luks_info_json(const LuksInfo& info);

}  // namespace qblock::tools
