// info's luks block (see info_luks.h).
#include "qblock/info_luks.h"

#include <cstdio>

namespace qblock::tools {

void print_luks_info(const LuksInfo& i, LuksInfoIn where, const char* indent) {
  for (const auto& [key, value] : luks_info_fields(i, where)) {
    if (value.empty()) {
      std::printf("%s%s:\n", indent, key.c_str());
    } else {
      std::printf("%s%s: %s\n", indent, key.c_str(), value.c_str());
    }
  }
}

nlohmann::ordered_json luks_info_json(const LuksInfo& i, LuksInfoIn where) {
  nlohmann::ordered_json data = nlohmann::ordered_json::object();
  data["ivgen-alg"] = i.ivgen_alg;
  data["hash-alg"] = i.hash_alg;
  data["cipher-alg"] = i.cipher_alg;
  data["uuid"] = i.uuid;
  if (i.ivgen_hash_alg) data["ivgen-hash-alg"] = *i.ivgen_hash_alg;
  if (where == LuksInfoIn::kQcow2Encrypt) data["format"] = "luks";
  data["cipher-mode"] = i.cipher_mode;
  nlohmann::ordered_json slots = nlohmann::ordered_json::array();
  for (const LuksSlotInfo& s : i.slots) {
    nlohmann::ordered_json e = nlohmann::ordered_json::object();
    e["active"] = s.active;
    if (s.active) e["iters"] = s.iterations;
    e["key-offset"] = s.key_offset;
    if (s.active) e["stripes"] = s.stripes;
    slots.push_back(std::move(e));
  }
  data["slots"] = std::move(slots);
  data["payload-offset"] = i.payload_offset;
  data["master-key-iters"] = i.master_key_iters;
  if (where == LuksInfoIn::kQcow2Encrypt) return data;
  return nlohmann::ordered_json{{"type", "luks"}, {"data", std::move(data)}};
}

}  // namespace qblock::tools
