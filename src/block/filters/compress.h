// CompressFilter: QEMU's `compress` filter. It sits on a format node that can store compressed
// clusters (qcow2: `driver=compress,file.driver=qcow2,file.file.filename=X`) and turns every
// write into a compressed write (RequestFlag::kWriteCompressed). Its request alignment is the
// format's cluster size, so the request layer pads a partial-cluster write with a
// read-modify-write of whole clusters, as QEMU does; a cluster that is already allocated
// cannot be compressed again (EIO from qcow2). Reads, write-zeroes, discards and truncates
// pass through, and the advertised flags are a pass-through filter's (block-semantics.md §2).
#pragma once

#include "block/driver.h"
#include "block/filters/passthrough.h"

namespace qblock {

class CompressFilter : public PassthroughFilter {
 public:
  // Takes ownership of `file`. REQUIRES: `file` is a qcow2 node.
  CompressFilter(EventLoop& loop, NodePtr file);

  // qemu-io `info`: "format name: compress", the file's cluster size and vm state offset.
  NodeInfo info() const override;

 protected:
  Task<Status> do_write(uint64_t offset, IoVec qiov, RequestFlags flags) override;
};

// Registry entry for "compress". Options: `file` (child). Errors carry QEMU's messages
// ("Compression is not supported for underlying format: raw"; a writable node whose size is
// not a multiple of the cluster size: "Cannot get 'write' permission without 'resize': Image
// size is not a multiple of request alignment").
Task<Result<NodePtr>> open_compress_node(OpenContext& ctx, Options& options);

}  // namespace qblock
