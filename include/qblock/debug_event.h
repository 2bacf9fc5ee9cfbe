// Debug events: named points in the format drivers (metadata steps, data I/O) that the
// blkdebug filter can fail or suspend. Names are QEMU's (qemu-compat.md §5.5).
#pragma once

#include <optional>
#include <string_view>

namespace qblock {

enum class DebugEvent {
  kL1Update,
  kL1GrowAllocTable,
  kL1GrowWriteTable,
  kL1GrowActivateTable,
  kL2Load,
  kL2Update,
  kL2UpdateCompressed,
  kL2AllocCowRead,
  kL2AllocWrite,
  kReadAio,
  kReadBackingAio,
  kReadCompressed,
  kWriteAio,
  kWriteCompressed,
  kVmstateLoad,
  kVmstateSave,
  kCowRead,
  kCowWrite,
  kReftableLoad,
  kReftableGrow,
  kReftableUpdate,
  kRefblockLoad,
  kRefblockUpdate,
  kRefblockUpdatePart,
  kRefblockAlloc,
  kRefblockAllocHookup,
  kRefblockAllocWrite,
  kRefblockAllocWriteBlocks,
  kRefblockAllocWriteTable,
  kRefblockAllocSwitchTable,
  kClusterAlloc,
  kClusterAllocBytes,
  kClusterFree,
  kFlushToOs,
  kFlushToDisk,
  kPwritevRmwHead,
  kPwritevRmwAfterHead,
  kPwritevRmwTail,
  kPwritevRmwAfterTail,
  kPwritev,
  kPwritevZero,
  kPwritevDone,
  kEmptyImagePrepare,
  kL1ShrinkWriteTable,
  kL1ShrinkFreeL2Clusters,
  kCorWrite,
  kClusterAllocSpace,
  kNone,
  kCount,
};

// The QEMU name of an event ("write_aio").
std::string_view debug_event_name(DebugEvent event);
// The event with that name, or nullopt.
std::optional<DebugEvent> debug_event_from_name(std::string_view name);

}  // namespace qblock
