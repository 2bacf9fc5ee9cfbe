// convert's `-l snapshot_param` (qemu-compat.md §3.5): either "snapshot.id=ID,snapshot.name=NAME"
// (a QemuOpts list, either key or both) or a bare id-or-name, parsed as qemu-img 7.2 does.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qblock::tools {

// Which snapshot -l names. A bare text is `id_or_name` (tried as an id, then as a name);
// otherwise `id` and/or `name` (each compared only when given).
struct SnapshotParam {
  std::optional<std::string> id;
  std::optional<std::string> name;
  std::optional<std::string> id_or_name;
};

// The outcome of parsing, in the order qemu-img reports it: the items are taken left to
// right; a bare key ("snapshot.id" alone, QemuOpts' deprecated short-form boolean, which sets
// "on") is added to `bare_keys`, then the key is validated; the first key that is neither
// snapshot.id nor snapshot.name ends the parse as `invalid_key`. ",," in a value is a comma;
// the last value of a key wins.
struct SnapshotParamParse {
  SnapshotParam param;
  std::vector<std::string> bare_keys;
  std::optional<std::string> invalid_key;
};

SnapshotParamParse parse_snapshot_param(std::string_view text);

}  // namespace qblock::tools
