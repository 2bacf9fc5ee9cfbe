// A child opened ahead of its parent. BlockBackend::open opens the protocol node of an image
// given without a format once, reads it to probe the format, and hands it to the format
// driver as its "file" child, as QEMU does: a remote server (NBD, RBD) sees one connection
// rather than a probe's and then the image's, and an NBD server that serves one client and
// exits (qemu-nbd without --persistent) is not gone by the time the image opens.
#pragma once

#include "block/driver.h"

namespace qblock {

// For its lifetime, the calling thread's first open_child() of a child whose options equal
// `options` and which is opened with the same flags as `flags` (probed_raw aside, which only
// concerns the format above) takes `node` instead of opening one. Whatever is left in `node`
// afterwards was not taken and stays the caller's. REQUIRES: `options` and `node` outlive
// this object. Opens running at the same time on one thread may each open the child
// themselves (a later handoff replaces an earlier one): the handoff saves work, never changes
// what is opened.
class ScopedPreopenedChild {
 public:
  ScopedPreopenedChild(const Options& options, const OpenFlags& flags, NodePtr& node);
  ~ScopedPreopenedChild();
  ScopedPreopenedChild(const ScopedPreopenedChild&) = delete;
  ScopedPreopenedChild& operator=(const ScopedPreopenedChild&) = delete;

 private:
  friend NodePtr take_preopened_child(const Options& options, const OpenFlags& flags);
  const Options& options_;
  OpenFlags flags_;
  NodePtr& node_;
};

// open_child()'s side: the node handed over for a child with these `options` opened with
// `flags`, or null when there is none.
NodePtr take_preopened_child(const Options& options, const OpenFlags& flags);

}  // namespace qblock
