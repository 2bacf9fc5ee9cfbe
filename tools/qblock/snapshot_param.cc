// convert's -l parser (see snapshot_param.h).
#include "qblock/snapshot_param.h"

#include <utility>

namespace qblock::tools {

namespace {

struct Item {
  std::string key;
  std::optional<std::string> value;  // nullopt: a bare key
};

// Splits a QemuOpts list into items: "k=v" pairs separated by ',', ",," inside a value a
// literal comma.
std::vector<Item> split_items(std::string_view text) {
  std::vector<Item> items;
  Item current;
  bool in_value = false;
  for (std::size_t i = 0; i <= text.size(); ++i) {
    if (i == text.size() || text[i] == ',') {
      if (in_value && i + 1 < text.size() && text[i + 1] == ',') {
        *current.value += ',';
        ++i;
        continue;
      }
      items.push_back(std::move(current));
      current = Item{};
      in_value = false;
      continue;
    }
    if (in_value) {
      *current.value += text[i];
    } else if (text[i] == '=') {
      in_value = true;
      current.value = std::string();
    } else {
      current.key += text[i];
    }
  }
  return items;
}

}  // namespace

SnapshotParamParse parse_snapshot_param(std::string_view text) {
  SnapshotParamParse out;
  if (text.rfind("snapshot.", 0) != 0) {
    out.param.id_or_name = std::string(text);
    return out;
  }
  for (Item& item : split_items(text)) {
    if (!item.value) out.bare_keys.push_back(item.key);
    if (item.key == "snapshot.id") {
      out.param.id = item.value.value_or("on");
    } else if (item.key == "snapshot.name") {
      out.param.name = item.value.value_or("on");
    } else {
      out.invalid_key = std::move(item.key);
      break;
    }
  }
  return out;
}

}  // namespace qblock::tools
