// The blkdebug filter (QEMU's blkdebug): sits on its `image` child and, driven by the debug
// events a format above emits on it (raw: read_aio/write_aio; qcow2: l2_update, cow_read...),
// fails requests with chosen errnos (inject-error rules), walks a small state machine
// (set-state rules) and suspends requests at breakpoints until resumed (qemu-io break/resume).
#pragma once

#include <array>
#include <cstdint>
#include <list>
#include <optional>
#include <string>
#include <vector>

#include "block/driver.h"
#include "block/filters/passthrough.h"
#include "runtime/sync.h"

namespace qblock {

// The request types an inject-error rule can match (QEMU's BlkdebugIOType, same order).
enum class BlkdebugIoType : uint32_t {
  kRead,
  kWrite,
  kWriteZeroes,
  kDiscard,
  kFlush,
  kBlockStatus,
};

// One rule. Rules of one event are processed newest first, as QEMU does.
struct BlkdebugRule {
  enum class Action { kInjectError, kSetState, kSuspend };
  Action action = Action::kInjectError;
  DebugEvent event = DebugEvent::kNone;
  int64_t state = 0;  // the rule applies only in this state; 0: in any state

  // kInjectError.
  int error = EIO;      // 0: the rule matches but fails nothing
  int64_t sector = -1;  // -1: any offset; < -1 never matches; else byte sector*512 must be inside
  bool once = false;    // removed after it fails one request
  bool immediately = false;  // fail without first yielding to the loop
  uint32_t iotype_mask = 0;  // bits 1 << BlkdebugIoType

  // kSetState.
  int64_t new_state = 0;

  // kSuspend (a breakpoint).
  std::string tag;
};

// The parsed rule set of a blkdebug node.
struct BlkdebugRules {
  std::vector<BlkdebugRule> rules;  // in declaration order (config file first)
};

// Parses a blkdebug rules file (QEMU's config format: `[inject-error]` / `[set-state]`
// sections of `key = "value"` lines, `#` comments) and appends its rules.
// Errors: the errno of reading the file ("Could not read blkdebug config file: ..."), EINVAL
// with QEMU's messages for unknown sections, options and values.
Status parse_blkdebug_config(const std::string& path, BlkdebugRules& out);

// Parses one `inject-error` / `set-state` option value: a JSON array of objects, or an object
// with keys "0", "1", ... (the unflattened --image-opts form). `section` names which.
Status parse_blkdebug_rule_list(std::string_view section, const Options& value, BlkdebugRules& out);

class BlkdebugFilter : public PassthroughFilter {
 public:
  struct Settings {
    std::string config;  // the rules file, empty if none
    std::optional<uint64_t> align;
    std::optional<uint64_t> max_transfer, opt_write_zero, max_write_zero, opt_discard, max_discard;
    Options inline_rules = Options::object();  // "inject-error"/"set-state" as given
  };

  // Takes ownership of `image`. REQUIRES: settings already validated.
  BlkdebugFilter(EventLoop& loop, NodePtr image, Settings settings, BlkdebugRules rules);

  // "blkdebug::IMAGE" or "blkdebug:CONFIG:IMAGE" when the node reduces to that (qemu-compat.md
  // §5.2); otherwise a json: filename of this subtree.
  std::string filename() const override;
  Options options() const override;

  // The state of the state machine (starts at 1).
  int64_t state() const { return state_; }

 protected:
  Task<Status> do_read(uint64_t offset, IoVec qiov, RequestFlags flags) override;
  Task<Status> do_write(uint64_t offset, IoVec qiov, RequestFlags flags) override;
  Task<Status> do_write_zeroes(uint64_t offset, uint64_t bytes, RequestFlags flags) override;
  Task<Status> do_discard(uint64_t offset, uint64_t bytes) override;
  Task<Status> do_flush() override;
  Task<Result<BlockStatus>> do_block_status(uint64_t offset, uint64_t bytes,
                                            WantZero want_zero) override;

  // Applies the rules of `event`; suspends here while a breakpoint holds the request.
  Task<void> do_debug_event(DebugEvent event) override;
  // ENOENT for an unknown event name.
  Status do_debug_breakpoint(std::string_view event, std::string_view tag) override;
  // Removes every breakpoint with `tag` and resumes requests suspended under it. ENOENT when
  // no breakpoint was removed (even if a request was resumed: QEMU 7.2 does the same).
  Status do_debug_remove_breakpoint(std::string_view tag) override;
  // Resumes one request suspended under `tag`; ENOENT if none.
  Status do_debug_resume(std::string_view tag) override;
  bool do_debug_is_suspended(std::string_view tag) override;

 private:
  struct Suspended {
    explicit Suspended(EventLoop& loop, std::string t) : tag(std::move(t)), queue(loop) {}
    std::string tag;
    bool resumed = false;
    WaitQueue queue;
  };
  using RuleList = std::list<BlkdebugRule>;

  void add_rule(BlkdebugRule rule);
  void remove_rule(BlkdebugRule* rule);
  void resume(Suspended& s);
  // Fails the request if an active inject-error rule matches it (QEMU's rule_check).
  Task<Status> check_rules(uint64_t offset, uint64_t bytes, BlkdebugIoType type);

  Settings settings_;
  int64_t state_ = 1;
  // Per event, newest rule first.
  std::array<RuleList, static_cast<std::size_t>(DebugEvent::kCount)> rules_;
  // Inject-error rules armed by the last event that had matching ones; first match wins.
  std::list<BlkdebugRule*> active_;
  std::list<Suspended> suspended_;
};

// Registry entry. Options: `image` (child), `config`, `set-state`, `inject-error`, `align`,
// `max-transfer`, `opt-write-zero`, `max-write-zero`, `opt-discard`, `max-discard`.
Task<Result<NodePtr>> open_blkdebug_node(OpenContext& ctx, Options& options);

}  // namespace qblock
