// info's luks block (see info_luks.h).
#include "qblock/info_luks.h"

#include <cstdio>

namespace qblock::tools {

void print_luks_info(const LuksInfo& i) {
  std::printf("    ivgen alg: %s\n", i.ivgen_alg.c_str());
  std::printf("    hash alg: %s\n", i.hash_alg.c_str());
  std::printf("    cipher alg: %s\n", i.cipher_alg.c_str());
  std::printf("    uuid: %s\n", i.uuid.c_str());
  if (i.ivgen_hash_alg) std::printf("    ivgen hash alg: %s\n", i.ivgen_hash_alg->c_str());
  std::printf("    cipher mode: %s\n", i.cipher_mode.c_str());
  std::printf("    slots:\n");
  for (std::size_t n = 0; n < i.slots.size(); ++n) {
    const LuksSlotInfo& s = i.slots[n];
    std::printf("        [%zu]:\n", n);
    std::printf("            active: %s\n", s.active ? "true" : "false");
    if (s.active) std::printf("            iters: %u\n", s.iterations);
    std::printf("            key offset: %llu\n", static_cast<unsigned long long>(s.key_offset));
    if (s.active) std::printf("            stripes: %u\n", s.stripes);
  }
  std::printf("    payload offset: %llu\n", static_cast<unsigned long long>(i.payload_offset));
  std::printf("    master key iters: %u\n", i.master_key_iters);
}

nlohmann::ordered_json luks_info_json(const LuksInfo& i) {
  nlohmann::ordered_json data = nlohmann::ordered_json::object();
  data["ivgen-alg"] = i.ivgen_alg;
  data["hash-alg"] = i.hash_alg;
  data["cipher-alg"] = i.cipher_alg;
  data["uuid"] = i.uuid;
  if (i.ivgen_hash_alg) data["ivgen-hash-alg"] = *i.ivgen_hash_alg;
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
  return nlohmann::ordered_json{{"type", "luks"}, {"data", std::move(data)}};
}

}  // namespace qblock::tools
