// change_backing_file and make_image_empty (qblock/jobs.h): the public entry points of the
// format drivers' header rewrite and emptying (only qcow2 has them).
#include "block/formats/qcow2/qcow2.h"
#include "qblock/jobs.h"

namespace qblock {

Task<Status> change_backing_file(BlockNode& node, std::string backing_file,
                                 std::string backing_format) {
  if (node.read_only()) co_return fail(Error::from_errno(EPERM));
  Task<Status> change =
      qcow2::change_qcow2_backing_file(node, std::move(backing_file), std::move(backing_format));
  co_return co_await std::move(change);
}

Task<Status> make_image_empty(BlockNode& node) {
  if (node.read_only()) co_return fail(Error::from_errno(EPERM));
  Task<Status> empty = qcow2::make_qcow2_empty(node);
  co_return co_await std::move(empty);
}

}  // namespace qblock
