// ScopedPreopenedChild and take_preopened_child (see preopened_child.h).
#include "block/preopened_child.h"

namespace qblock {

namespace {

thread_local ScopedPreopenedChild* current_handoff = nullptr;

bool same_open(const OpenFlags& a, const OpenFlags& b) {
  return a.read_only == b.read_only && a.direct == b.direct && a.no_flush == b.no_flush &&
         a.writethrough == b.writethrough && a.aio == b.aio && a.discard == b.discard &&
         a.force_share == b.force_share && a.check == b.check && a.no_io == b.no_io;
}

}  // namespace

ScopedPreopenedChild::ScopedPreopenedChild(const Options& options, const OpenFlags& flags,
                                           NodePtr& node)
    : options_(options), flags_(flags), node_(node) {
  current_handoff = this;
}

ScopedPreopenedChild::~ScopedPreopenedChild() {
  if (current_handoff == this) current_handoff = nullptr;
}

NodePtr take_preopened_child(const Options& options, const OpenFlags& flags) {
  ScopedPreopenedChild* h = current_handoff;
  if (h == nullptr || !h->node_ || !same_open(h->flags_, flags) || h->options_ != options) {
    return nullptr;
  }
  return std::move(h->node_);
}

}  // namespace qblock
