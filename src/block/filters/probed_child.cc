// open_probed_child (see probed_child.h).
#include "block/filters/probed_child.h"

#include "block/formats/qcow2/qcow2.h"

namespace qblock {

Task<Result<NodePtr>> open_probed_child(OpenContext& ctx, Options& options, std::string_view key) {
  auto it = options.find(std::string(key));
  if (it != options.end() && it->is_object() && !it->contains("driver") &&
      it->contains("filename") && (*it)["filename"].is_string()) {
    Options sub = *it;
    options.erase(it);
    Options file_tree = Options::object();
    file_tree["driver"] = "file";
    file_tree["filename"] = sub["filename"];
    sub.erase("filename");
    Result<NodePtr> file = co_await open_node(ctx.loop, file_tree, ctx.flags, "file");
    if (!file) co_return fail(file.error());
    AlignedBuffer header(512);
    header.fill(0);
    Status s = ok();
    if ((*file)->length() >= 512) s = co_await (*file)->read(0, IoVec(header.data(), 512));
    (void)co_await (*file)->close();
    if (!s) co_return fail(s.error());
    sub["driver"] = qcow2::probe_qcow2(header.data(), 512) ? "qcow2" : "raw";
    sub["file"] = file_tree;
    co_return co_await open_node(ctx.loop, std::move(sub), ctx.flags, "");
  }
  co_return co_await open_child(ctx, options, key, "file");
}

}  // namespace qblock
