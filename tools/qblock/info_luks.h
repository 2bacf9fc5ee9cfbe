// qemu-img info's "Format specific information" for luks images, human and JSON, in the
// order qemu-img 7.2 prints the fields.
#pragma once

#include <nlohmann/json.hpp>

#include "qblock/luks_image.h"

namespace qblock::tools {

// The lines after "Format specific information:" (indented by `indent`: four spaces for a
// luks image, eight in a qcow2 image's "encrypt:" tree).
void print_luks_info(const LuksInfo& info, LuksInfoIn where = LuksInfoIn::kLuksImage,
                     const char* indent = "    ");

// A luks image's "format-specific" object, {"type": "luks", "data": {...}}; in a qcow2
// image, the "encrypt" object (with "format": "luks").
nlohmann::ordered_json luks_info_json(const LuksInfo& info,
                                      LuksInfoIn where = LuksInfoIn::kLuksImage);

}  // namespace qblock::tools
