// QuorumNode (see quorum.h).
#include "block/filters/quorum.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>

#include "block/filters/probed_child.h"
#include "block/qemu_json_name.h"
#include "qblock/chain_status.h"

namespace qblock {

namespace {

thread_local QuorumEventSink* current_sink = nullptr;

// QEMU reports ranges in 512-byte sectors, the end rounded up.
void put_sectors(Options& data, uint64_t offset, uint64_t bytes) {
  const uint64_t start = offset / 512;
  const uint64_t end = (offset + bytes + 511) / 512;
  data["sector-num"] = start;
  data["sectors-count"] = end - start;
}

void emit(const std::string& name, Options data) {
  if (current_sink != nullptr && *current_sink) (*current_sink)(name, std::move(data));
}

// The error most children answered with (QEMU's quorum_vote_error); the first of equals.
Status most_common_error(const std::vector<Status>& results) {
  std::map<int, unsigned> counts;
  for (const Status& r : results) {
    if (!r) ++counts[r.error().errnum()];
  }
  const Status* best = nullptr;
  unsigned best_count = 0;
  for (const Status& r : results) {
    if (r) continue;
    unsigned c = counts[r.error().errnum()];
    if (c > best_count) {
      best = &r;
      best_count = c;
    }
  }
  return best ? *best : fail(Error::io());
}

}  // namespace

ScopedQuorumEventSink::ScopedQuorumEventSink(QuorumEventSink sink) {
  if (current_sink != nullptr) previous_ = *current_sink;
  static thread_local QuorumEventSink storage;
  storage = std::move(sink);
  current_sink = &storage;
}

ScopedQuorumEventSink::~ScopedQuorumEventSink() { *current_sink = std::move(previous_); }

QuorumNode::QuorumNode(EventLoop& loop, std::vector<NodePtr> children, Settings settings)
    : BlockNode(loop, "quorum", NodeKind::kFilter), settings_(settings) {
  flags_ = children.front()->open_flags();
  RequestFlags zero_flags = RequestFlags(RequestFlag::kMayUnmap) | RequestFlag::kNoFallback;
  for (std::size_t i = 0; i < children.size(); ++i) {
    zero_flags = zero_flags & children[i]->supported_zero_flags();
    limits_.request_alignment =
        std::max(limits_.request_alignment, children[i]->limits().request_alignment);
    limits_.memory_alignment =
        std::max(limits_.memory_alignment, children[i]->limits().memory_alignment);
    add_child(ChildRole::kFile, "children." + std::to_string(i), std::move(children[i]));
  }
  supported_write_flags_ = RequestFlag::kWriteUnchanged;
  supported_zero_flags_ = zero_flags | RequestFlag::kWriteUnchanged;
}

NodeInfo QuorumNode::info() const {
  NodeInfo i;
  i.format_name = "quorum";
  i.name_only = true;
  return i;
}

Options QuorumNode::options() const {
  Options o;
  o["driver"] = "quorum";
  o["vote-threshold"] = settings_.vote_threshold;
  if (settings_.read_pattern == ReadPattern::kFifo) o["read-pattern"] = "fifo";
  if (settings_.rewrite_corrupted) o["rewrite-corrupted"] = true;
  if (settings_.blkverify) o["blkverify"] = true;
  Options list = Options::array();
  for (const Child& c : children_) list.push_back(c.node->options());
  o["children"] = list;
  return o;
}

std::string QuorumNode::filename() const {
  Options o;
  o["driver"] = "quorum";
  o["vote-threshold"] = settings_.vote_threshold;
  o["children"] = options()["children"];
  return qemu_json_filename(o);
}

void QuorumNode::report_bad(const char* type, std::size_t child, uint64_t offset, uint64_t bytes,
                            const Status& result) const {
  Options data;
  data["type"] = type;
  if (!result) data["error"] = std::strerror(result.error().errnum());
  data["node-name"] = children_[child].node->node_name();
  put_sectors(data, offset, bytes);
  emit("QUORUM_REPORT_BAD", std::move(data));
}

void QuorumNode::report_failure(uint64_t offset, uint64_t bytes) const {
  Options data;
  data["reference"] = node_name();
  put_sectors(data, offset, bytes);
  emit("QUORUM_FAILURE", std::move(data));
}

Task<Status> QuorumNode::do_read(uint64_t offset, IoVec qiov, RequestFlags flags) {
  if (settings_.read_pattern == ReadPattern::kFifo) {
    co_return co_await read_fifo(offset, std::move(qiov), flags);
  }
  co_return co_await read_quorum(offset, std::move(qiov), flags);
}

Task<Status> QuorumNode::read_fifo(uint64_t offset, IoVec qiov, RequestFlags flags) {
  Status last = fail(Error::io());
  for (std::size_t i = 0; i < children_.size(); ++i) {
    last = co_await children_[i].node->read(offset, qiov, flags);
    if (last) co_return last;
    report_bad("read", i, offset, qiov.size(), last);
  }
  co_return last;
}

Task<Status> QuorumNode::read_quorum(uint64_t offset, IoVec qiov, RequestFlags flags) {
  const uint64_t bytes = qiov.size();
  const std::size_t n = children_.size();
  const std::size_t align = std::max<std::size_t>(limits_.memory_alignment, 8);
  std::vector<AlignedBuffer> bufs;
  std::vector<Status> results;
  bufs.reserve(n);
  results.reserve(n);
  unsigned successes = 0;
  for (std::size_t i = 0; i < n; ++i) {
    bufs.emplace_back(std::max<uint64_t>(bytes, 1), align);
    Status r = co_await children_[i].node->read(offset, IoVec(bufs[i].data(), bytes), flags);
    if (r) {
      ++successes;
    } else {
      report_bad("read", i, offset, bytes, r);
    }
    results.push_back(std::move(r));
  }
  if (successes < settings_.vote_threshold) {
    report_failure(offset, bytes);
    co_return most_common_error(results);
  }
  // Versions: the distinct contents, each with the children that returned it.
  std::vector<std::vector<std::size_t>> versions;
  for (std::size_t i = 0; i < n; ++i) {
    if (!results[i]) continue;
    bool found = false;
    for (std::vector<std::size_t>& v : versions) {
      if (std::memcmp(bufs[v.front()].data(), bufs[i].data(), bytes) == 0) {
        v.push_back(i);
        found = true;
        break;
      }
    }
    if (!found) versions.push_back({i});
  }
  if (versions.size() > 1 && settings_.blkverify) {
    const uint8_t* a = bufs[versions[0].front()].data();
    const uint8_t* b = bufs[versions[1].front()].data();
    uint64_t at = 0;
    while (at < bytes && a[at] == b[at]) ++at;
    char message[160];
    std::snprintf(message, sizeof message,
                  "quorum: offset=%llu bytes=%llu contents mismatch at offset %llu",
                  static_cast<unsigned long long>(offset), static_cast<unsigned long long>(bytes),
                  static_cast<unsigned long long>(offset + at));
    if (on_mismatch_) {
      on_mismatch_(message);
      co_return fail(Error::io());
    }
    std::fflush(stdout);
    std::fprintf(stderr, "%s\n", message);
    std::exit(1);
  }
  // The winner has the most votes; among equals the version seen last wins, as in QEMU (it
  // puts each new version at the head of its list and takes the first with the most).
  std::size_t winner = 0;
  for (std::size_t v = 0; v < versions.size(); ++v) {
    if (versions[v].size() >= versions[winner].size()) winner = v;
  }
  if (versions[winner].size() < settings_.vote_threshold) {
    report_failure(offset, bytes);
    co_return fail(Error::io());
  }
  qiov.copy_from(0, bufs[versions[winner].front()].data(), bytes);
  for (std::size_t v = 0; v < versions.size(); ++v) {
    if (v == winner) continue;
    for (std::size_t child : versions[v]) report_bad("read", child, offset, bytes, ok());
  }
  if (settings_.rewrite_corrupted) {
    for (std::size_t v = 0; v < versions.size(); ++v) {
      if (v == winner) continue;
      for (std::size_t child : versions[v]) {
        // Best effort, as in QEMU: the read has its answer whatever the rewrite does.
        (void)co_await children_[child].node->write(
            offset, IoVec(bufs[versions[winner].front()].data(), bytes));
      }
    }
  }
  co_return ok();
}

Status QuorumNode::vote_on_writes(uint64_t offset, uint64_t bytes,
                                  const std::vector<Status>& results) {
  unsigned successes = 0;
  for (std::size_t i = 0; i < results.size(); ++i) {
    if (results[i]) {
      ++successes;
    } else {
      report_bad("write", i, offset, bytes, results[i]);
    }
  }
  if (successes < settings_.vote_threshold) return most_common_error(results);
  return ok();
}

Task<Status> QuorumNode::do_write(uint64_t offset, IoVec qiov, RequestFlags flags) {
  std::vector<Status> results;
  for (Child& c : children_) results.push_back(co_await c.node->write(offset, qiov, flags));
  co_return vote_on_writes(offset, qiov.size(), results);
}

Task<Status> QuorumNode::do_write_zeroes(uint64_t offset, uint64_t bytes, RequestFlags flags) {
  std::vector<Status> results;
  for (Child& c : children_) results.push_back(co_await c.node->write_zeroes(offset, bytes, flags));
  co_return vote_on_writes(offset, bytes, results);
}

Task<Result<BlockStatus>> QuorumNode::do_block_status(uint64_t offset, uint64_t bytes,
                                                      WantZero want_zero) {
  // As QEMU's quorum: data as far as any child has data, else zero as far as any child reads
  // zeros (through each child's backing chain); no host offset.
  uint64_t data = 0;
  uint64_t zero = 0;
  for (std::size_t i = 0; i < children_.size(); ++i) {
    ChainStatusQuery query;
    query.want_zero = want_zero;
    Result<ChainStatus> st = co_await chain_status(children_[i].node.get(), offset, bytes, query);
    if (!st) {
      report_bad("read", i, offset, bytes, fail(st.error()));
      data = bytes;
      break;
    }
    if (st->status.flags & kStatusZero) {
      zero = std::max(zero, st->status.bytes);
    } else {
      data = std::max(data, st->status.bytes);
    }
  }
  if (data) co_return BlockStatus{kStatusData, std::min(data, bytes), 0, nullptr};
  co_return BlockStatus{kStatusZero, std::min(std::max<uint64_t>(zero, 1), bytes), 0, nullptr};
}

namespace {

// The children subtrees in order: "children" as an array, or as an object keyed "0", "1", ...
// (dotted keys). Returns them and removes the key.
std::vector<Options> take_children(Options& options) {
  std::vector<Options> out;
  auto it = options.find("children");
  if (it == options.end()) return out;
  if (it->is_array()) {
    for (const Options& c : *it) out.push_back(c);
  } else if (it->is_object()) {
    for (std::size_t i = 0;; ++i) {
      auto c = it->find(std::to_string(i));
      if (c == it->end()) break;
      out.push_back(*c);
    }
  }
  options.erase(it);
  return out;
}

Task<Status> close_all(std::vector<NodePtr>& nodes) {
  for (NodePtr& n : nodes) (void)co_await n->close();
  co_return ok();
}

}  // namespace

Task<Result<NodePtr>> open_quorum_node(OpenContext& ctx, Options& options) {
  std::vector<Options> trees = take_children(options);
  if (trees.empty()) {
    co_return fail(Error::with_message(EINVAL, "Number of provided children must be 1 or more"));
  }
  QuorumNode::Settings settings;
  auto threshold = take_size(options, "vote-threshold");
  if (!threshold) co_return fail(threshold.error());
  const uint64_t vt = threshold->value_or(0);
  if (vt < 1) {
    co_return fail(Error::with_message(EINVAL, "Parameter 'vote-threshold' expects a value >= 1"));
  }
  if (vt > trees.size()) {
    co_return fail(Error::with_message(EINVAL, "threshold may not exceed children count"));
  }
  settings.vote_threshold = static_cast<unsigned>(vt);
  auto pattern = take_string(options, "read-pattern");
  if (!pattern) co_return fail(pattern.error());
  if (*pattern && **pattern == "fifo") {
    settings.read_pattern = QuorumNode::ReadPattern::kFifo;
  } else if (*pattern && **pattern != "quorum") {
    co_return fail(Error::with_message(EINVAL, "Please set read-pattern as fifo or quorum"));
  }
  auto blkverify = take_bool(options, "blkverify");
  if (!blkverify) co_return fail(blkverify.error());
  auto rewrite = take_bool(options, "rewrite-corrupted");
  if (!rewrite) co_return fail(rewrite.error());
  // With read-pattern=fifo QEMU reads neither option.
  if (settings.read_pattern == QuorumNode::ReadPattern::kQuorum) {
    settings.blkverify = blkverify->value_or(false);
    if (settings.blkverify && (trees.size() != 2 || vt != 2)) {
      co_return fail(Error::with_message(EINVAL,
                                         "blkverify=on can only be set if there are exactly two "
                                         "files and vote-threshold is 2"));
    }
    settings.rewrite_corrupted = rewrite->value_or(false);
    if (settings.rewrite_corrupted && settings.blkverify) {
      co_return fail(
          Error::with_message(EINVAL, "rewrite-corrupted=on cannot be used with blkverify=on"));
    }
  }
  std::vector<NodePtr> children;
  for (std::size_t i = 0; i < trees.size(); ++i) {
    Options holder = Options::object();
    holder["child"] = std::move(trees[i]);
    Result<NodePtr> c = co_await open_probed_child(ctx, holder, "child");
    if (!c) {
      co_await close_all(children);
      co_return fail(c.error());
    }
    children.push_back(std::move(*c));
  }
  for (const NodePtr& c : children) {
    if (c->length() != children.front()->length()) {
      co_await close_all(children);
      co_return fail(
          Error::with_message(EIO, "Could not refresh total sector count: Input/output error"));
    }
  }
  co_return NodePtr(new QuorumNode(ctx.loop, std::move(children), settings));
}

}  // namespace qblock
