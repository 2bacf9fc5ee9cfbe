// -l for the subcommands that read an internal snapshot (snapshot_option.h).
#include "qblock/snapshot_option.h"

#include <cerrno>
#include <cstdio>
#include <string>

#include "qblock/img_common.h"
#include "qblock/snapshot.h"

namespace qblock::tools {

bool parse_snapshot_option(const char* value, SnapshotParam& out) {
  SnapshotParamParse parsed = parse_snapshot_param(value);
  for (const std::string& key : parsed.bare_keys) {
    std::fflush(stdout);
    std::fprintf(stderr,
                 "qemu-img: warning: short-form boolean option '%s' deprecated\n"
                 "Please use %s=on instead\n",
                 key.c_str(), key.c_str());
  }
  if (parsed.invalid_key) {
    img_error("Invalid parameter '" + *parsed.invalid_key + "'");
    img_error(std::string("Failed in parsing snapshot param '") + value + "'");
    return false;
  }
  out = std::move(parsed.param);
  return true;
}

Status load_snapshot_param(EventLoop& loop, const SnapshotParam& param, BlockNode& root) {
  Status loaded = ok();
  if (param.id_or_name) {
    loaded = run_sync(loop, load_snapshot_tmp(root, *param.id_or_name, std::nullopt));
    if (!loaded && loaded.error().errnum() == ENOENT) {
      loaded = run_sync(loop, load_snapshot_tmp(root, std::nullopt, *param.id_or_name));
    }
  } else {
    loaded = run_sync(loop, load_snapshot_tmp(root, param.id, param.name));
  }
  return loaded;
}

bool load_snapshot_option(EventLoop& loop, const SnapshotParam& param, BlockNode& root) {
  Status loaded = load_snapshot_param(loop, param, root);
  if (!loaded) {
    img_error("Failed to load snapshot: " + loaded.error().message());
    return false;
  }
  return true;
}

}  // namespace qblock::tools
