// The blkdebug filter (see blkdebug.h). Behaviour follows QEMU 7.2's blkdebug as observed with
// qemu-io (qemu-compat.md §2.7, §5.5): rules file format, option names, error messages.
#include "block/filters/blkdebug.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <set>

#include "qblock/messages.h"
#include "qblock/options.h"

namespace qblock {

namespace {

constexpr uint32_t io_bit(BlkdebugIoType t) { return 1u << static_cast<uint32_t>(t); }

// QEMU 7.2 default iotype: everything except block-status.
constexpr uint32_t kDefaultIoTypes =
    io_bit(BlkdebugIoType::kRead) | io_bit(BlkdebugIoType::kWrite) |
    io_bit(BlkdebugIoType::kWriteZeroes) | io_bit(BlkdebugIoType::kDiscard) |
    io_bit(BlkdebugIoType::kFlush);

std::optional<BlkdebugIoType> iotype_from_name(std::string_view name) {
  if (name == "read") return BlkdebugIoType::kRead;
  if (name == "write") return BlkdebugIoType::kWrite;
  if (name == "write-zeroes") return BlkdebugIoType::kWriteZeroes;
  if (name == "discard") return BlkdebugIoType::kDiscard;
  if (name == "flush") return BlkdebugIoType::kFlush;
  if (name == "block-status") return BlkdebugIoType::kBlockStatus;
  return std::nullopt;
}

Error invalid_value(const std::string& value) {
  return Error::with_message(EINVAL, "invalid parameter value: " + value);
}

// One section of key/value text, as the rules file and the option trees both give it.
using Section = std::vector<std::pair<std::string, std::string>>;

Result<int64_t> parse_number(const std::string& key, const std::string& text) {
  errno = 0;
  char* end = nullptr;
  long long v = std::strtoll(text.c_str(), &end, 0);
  if (text.empty() || *end || errno) {
    return fail(Error::with_message(EINVAL, "Parameter '" + key + "' expects a number"));
  }
  return static_cast<int64_t>(v);
}

Result<bool> parse_bool(const std::string& key, const std::string& text) {
  if (text == "on" || text == "yes" || text == "true" || text == "y") return true;
  if (text == "off" || text == "no" || text == "false" || text == "n") return false;
  return fail(Error::with_message(EINVAL, "Parameter '" + key + "' expects 'on' or 'off'"));
}

// Builds a rule from one section (QEMU's add_rule).
Status add_section(std::string_view section, const Section& kv, BlkdebugRules& out) {
  const bool inject = section == "inject-error";
  static const std::set<std::string> kInjectKeys = {"event",  "state", "iotype",     "errno",
                                                    "sector", "once",  "immediately"};
  static const std::set<std::string> kSetStateKeys = {"event", "state", "new_state"};
  BlkdebugRule rule;
  rule.action = inject ? BlkdebugRule::Action::kInjectError : BlkdebugRule::Action::kSetState;
  rule.iotype_mask = kDefaultIoTypes;
  bool have_event = false;
  for (const auto& [key, value] : kv) {
    const auto& allowed = inject ? kInjectKeys : kSetStateKeys;
    if (!allowed.count(key)) {
      return fail(Error::with_message(
          EINVAL,
          "[" + std::string(section) + "] section doesn't support the option '" + key + "'"));
    }
  }
  for (const auto& [key, value] : kv) {
    if (key == "event") {
      std::optional<DebugEvent> e = debug_event_from_name(value);
      if (!e) return fail(invalid_value(value));
      rule.event = *e;
      have_event = true;
    } else if (key == "iotype") {
      std::optional<BlkdebugIoType> t = iotype_from_name(value);
      if (!t) return fail(invalid_value(value));
      rule.iotype_mask = io_bit(*t);
    } else if (key == "once" || key == "immediately") {
      Result<bool> b = parse_bool(key, value);
      if (!b) return fail(b.error());
      (key == "once" ? rule.once : rule.immediately) = *b;
    } else {
      Result<int64_t> n = parse_number(key, value);
      if (!n) return fail(n.error());
      if (key == "state") rule.state = *n;
      if (key == "errno") rule.error = static_cast<int>(*n);
      if (key == "sector") rule.sector = *n;
      if (key == "new_state") rule.new_state = *n;
    }
  }
  if (!have_event) return fail(Error::with_message(EINVAL, "Missing event name for rule"));
  out.rules.push_back(std::move(rule));
  return ok();
}

std::string leaf_text(const Options& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "on" : "off";
  return v.dump();
}

std::string trim(std::string_view s) {
  std::size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return {};
  std::size_t e = s.find_last_not_of(" \t\r\n");
  return std::string(s.substr(b, e - b + 1));
}

// Flattens `inline_rules` into "inject-error.0.event" keys, as QEMU prints json: filenames.
void flatten_into(Options& out, const std::string& prefix, const Options& value) {
  if (value.is_object() || value.is_array()) {
    std::size_t i = 0;
    for (auto it = value.begin(); it != value.end(); ++it, ++i) {
      std::string key = value.is_object() ? it.key() : std::to_string(i);
      flatten_into(out, prefix + "." + key, *it);
    }
    return;
  }
  out[prefix] = leaf_text(value);
}

}  // namespace

Status parse_blkdebug_rule_list(std::string_view section, const Options& value,
                                BlkdebugRules& out) {
  std::vector<const Options*> items;
  if (value.is_array()) {
    for (const Options& item : value) items.push_back(&item);
  } else if (value.is_object()) {
    // --image-opts "inject-error.0.event=..." arrives as {"0": {...}, "1": {...}}.
    for (std::size_t i = 0; value.contains(std::to_string(i)); ++i) {
      items.push_back(&value[std::to_string(i)]);
    }
    if (items.size() != value.size()) {
      return fail(Error::with_message(
          EINVAL, "Invalid parameter type for '" + std::string(section) + "', expected: array"));
    }
  } else {
    return fail(Error::with_message(
        EINVAL, "Invalid parameter type for '" + std::string(section) + "', expected: array"));
  }
  for (const Options* item : items) {
    if (!item->is_object()) {
      return fail(Error::with_message(
          EINVAL, "Invalid parameter type for '" + std::string(section) + "', expected: object"));
    }
    Section kv;
    for (auto& [k, v] : item->items()) kv.emplace_back(k, leaf_text(v));
    if (Status s = add_section(section, kv, out); !s) return s;
  }
  return ok();
}

Status parse_blkdebug_config(const std::string& path, BlkdebugRules& out) {
  errno = 0;
  std::ifstream in(path);
  if (!in) {
    int e = errno ? errno : ENOENT;
    return fail(Error::with_message(
        e, "Could not read blkdebug config file: " + std::string(std::strerror(e))));
  }
  std::optional<std::string> group;
  Section kv;
  auto finish = [&]() -> Status {
    if (!group) return ok();
    Status s = add_section(*group, kv, out);
    kv.clear();
    return s;
  };
  std::string raw;
  while (std::getline(in, raw)) {
    std::string line = trim(raw);
    if (line.empty() || line[0] == '#') continue;
    if (line[0] == '[') {
      if (Status s = finish(); !s) return s;
      // "[name]" or "[name "id"]".
      std::size_t end = line.find_first_of(" \t]", 1);
      if (end == std::string::npos || line.back() != ']') {
        return fail(Error::with_message(EINVAL, path + ": parse error"));
      }
      std::string name = line.substr(1, end - 1);
      if (name != "inject-error" && name != "set-state") {
        return fail(Error::with_message(EINVAL, "There is no option group '" + name + "'"));
      }
      group = name;
      continue;
    }
    if (!group) return fail(Error::with_message(EINVAL, path + ": no group defined"));
    // `key = "value"`. Like QEMU's sscanf-based reader, anything else after the key (an
    // unquoted value, a missing '=') leaves the value empty.
    std::size_t key_end = line.find_first_of(" \t");
    std::string key = line.substr(0, key_end);
    std::string value;
    if (key_end != std::string::npos) {
      std::string rest = trim(line.substr(key_end));
      if (rest.size() >= 1 && rest[0] == '=') {
        rest = trim(rest.substr(1));
        if (!rest.empty() && rest[0] == '"') {
          std::size_t close = rest.find('"', 1);
          if (close != std::string::npos) value = rest.substr(1, close - 1);
        }
      }
    }
    kv.emplace_back(std::move(key), std::move(value));
  }
  return finish();
}

// ---- the filter ---------------------------------------------------------------------------

BlkdebugFilter::BlkdebugFilter(EventLoop& loop, NodePtr image, Settings settings,
                               BlkdebugRules rules)
    : PassthroughFilter(loop, "blkdebug", std::move(image), ChildRole::kImage, "image"),
      settings_(std::move(settings)) {
  // PassthroughFilter already inherited flags and limits (REQ-FLAGS-3); apply overrides.
  if (settings_.align) limits_.request_alignment = static_cast<uint32_t>(*settings_.align);
  if (settings_.max_transfer) limits_.max_transfer = *settings_.max_transfer;
  if (settings_.opt_write_zero) {
    limits_.pwrite_zeroes_alignment = static_cast<uint32_t>(*settings_.opt_write_zero);
  }
  if (settings_.max_write_zero) limits_.max_pwrite_zeroes = *settings_.max_write_zero;
  for (BlkdebugRule& r : rules.rules) add_rule(std::move(r));
}

void BlkdebugFilter::add_rule(BlkdebugRule rule) {
  // QEMU inserts at the head: the newest rule of an event is processed first.
  rules_[static_cast<std::size_t>(rule.event)].push_front(std::move(rule));
}

void BlkdebugFilter::remove_rule(BlkdebugRule* rule) {
  active_.remove(rule);
  RuleList& list = rules_[static_cast<std::size_t>(rule->event)];
  for (auto it = list.begin(); it != list.end(); ++it) {
    if (&*it == rule) {
      list.erase(it);
      return;
    }
  }
}

Task<Status> BlkdebugFilter::check_rules(uint64_t offset, uint64_t bytes, BlkdebugIoType type) {
  BlkdebugRule* hit = nullptr;
  for (BlkdebugRule* r : active_) {
    if (!(r->iotype_mask & io_bit(type))) continue;
    bool offset_ok = r->sector == -1;
    if (r->sector >= 0 && bytes) {
      // A rule's sector is a byte position (sector * 512) that must fall inside the request.
      uint64_t pos = static_cast<uint64_t>(r->sector) * 512;
      offset_ok = pos >= offset && pos - offset < bytes;
    }
    if (offset_ok) {
      hit = r;
      break;
    }
  }
  if (!hit || hit->error == 0) co_return ok();
  int error = hit->error;
  bool immediately = hit->immediately;
  if (hit->once) remove_rule(hit);
  // Without `immediately` the failure completes asynchronously, as QEMU reschedules first.
  if (!immediately) co_await loop().yield();
  co_return fail(Error::from_errno(error));
}

Task<Status> BlkdebugFilter::do_read(uint64_t offset, IoVec qiov, RequestFlags flags) {
  Status s = co_await check_rules(offset, qiov.size(), BlkdebugIoType::kRead);
  if (!s) co_return s;
  co_return co_await child_node().read(offset, std::move(qiov), flags);
}

Task<Status> BlkdebugFilter::do_write(uint64_t offset, IoVec qiov, RequestFlags flags) {
  Status s = co_await check_rules(offset, qiov.size(), BlkdebugIoType::kWrite);
  if (!s) co_return s;
  co_return co_await child_node().write(offset, std::move(qiov), flags);
}

Task<Status> BlkdebugFilter::do_write_zeroes(uint64_t offset, uint64_t bytes, RequestFlags flags) {
  Status s = co_await check_rules(offset, bytes, BlkdebugIoType::kWriteZeroes);
  if (!s) co_return s;
  co_return co_await child_node().write_zeroes(offset, bytes, flags);
}

Task<Status> BlkdebugFilter::do_discard(uint64_t offset, uint64_t bytes) {
  Status s = co_await check_rules(offset, bytes, BlkdebugIoType::kDiscard);
  if (!s) co_return s;
  co_return co_await child_node().discard(offset, bytes);
}

Task<Status> BlkdebugFilter::do_flush() {
  // The request layer flushes the image child after this hook succeeds.
  co_return co_await check_rules(0, 0, BlkdebugIoType::kFlush);
}

Task<Result<BlockStatus>> BlkdebugFilter::do_block_status(uint64_t offset, uint64_t bytes,
                                                          WantZero) {
  Status s = co_await check_rules(offset, bytes, BlkdebugIoType::kBlockStatus);
  if (!s) co_return fail(s.error());
  co_return BlockStatus{kStatusRaw | kStatusOffsetValid, bytes, offset, &child_node()};
}

// ---- events and breakpoints ---------------------------------------------------------------

Task<void> BlkdebugFilter::do_debug_event(DebugEvent event) {
  RuleList& list = rules_[static_cast<std::size_t>(event)];
  int64_t new_state = state_;
  bool injected = false;
  std::vector<BlkdebugRule*> fired_breakpoints;
  std::vector<Suspended*> mine;
  for (BlkdebugRule& rule : list) {
    // Rules compare against the state before this event; set-state takes effect at the end.
    if (rule.state && rule.state != state_) continue;
    switch (rule.action) {
      case BlkdebugRule::Action::kInjectError:
        // The first matching rule of an event replaces the previous event's armed rules.
        if (!injected) active_.clear();
        injected = true;
        active_.push_front(&rule);
        break;
      case BlkdebugRule::Action::kSetState: new_state = rule.new_state; break;
      case BlkdebugRule::Action::kSuspend:
        mine.push_back(&suspended_.emplace_back(loop(), rule.tag));
        emit_message(MessageLevel::kInfo, "blkdebug: Suspended request '" + rule.tag + "'");
        fired_breakpoints.push_back(&rule);
        break;
    }
  }
  // A breakpoint fires once.
  for (BlkdebugRule* r : fired_breakpoints) remove_rule(r);
  for (Suspended* s : mine) {
    while (!s->resumed) co_await s->queue.wait();
  }
  for (Suspended* s : mine) {
    suspended_.remove_if([s](const Suspended& x) { return &x == s; });
  }
  state_ = new_state;
}

Status BlkdebugFilter::do_debug_breakpoint(std::string_view event, std::string_view tag) {
  std::optional<DebugEvent> e = debug_event_from_name(event);
  if (!e) return fail(Error::not_found());
  BlkdebugRule rule;
  rule.action = BlkdebugRule::Action::kSuspend;
  rule.event = *e;
  rule.tag = std::string(tag);
  add_rule(std::move(rule));
  return ok();
}

void BlkdebugFilter::resume(Suspended& s) {
  s.resumed = true;
  emit_message(MessageLevel::kInfo, "blkdebug: Resuming request '" + s.tag + "'");
  s.queue.wake_all();
}

Status BlkdebugFilter::do_debug_remove_breakpoint(std::string_view tag) {
  bool removed = false;
  for (RuleList& list : rules_) {
    removed |= list.remove_if([tag](const BlkdebugRule& r) {
      return r.action == BlkdebugRule::Action::kSuspend && r.tag == tag;
    }) > 0;
  }
  for (Suspended& s : suspended_) {
    if (!s.resumed && s.tag == tag) resume(s);
  }
  if (!removed) return fail(Error::not_found());
  return ok();
}

Status BlkdebugFilter::do_debug_resume(std::string_view tag) {
  for (Suspended& s : suspended_) {
    if (!s.resumed && s.tag == tag) {
      resume(s);
      return ok();
    }
  }
  return fail(Error::not_found());
}

bool BlkdebugFilter::do_debug_is_suspended(std::string_view tag) {
  for (const Suspended& s : suspended_) {
    if (!s.resumed && s.tag == tag) return true;
  }
  return false;
}

// ---- naming -------------------------------------------------------------------------------

Options BlkdebugFilter::options() const {
  // QEMU's order: image, driver, then this node's options.
  Options o;
  o["image"] = child_node().options();
  o["driver"] = "blkdebug";
  if (!settings_.config.empty()) o["config"] = settings_.config;
  for (auto& [k, v] : settings_.inline_rules.items()) flatten_into(o, k, v);
  if (settings_.align) o["align"] = *settings_.align;
  if (settings_.max_transfer) o["max-transfer"] = *settings_.max_transfer;
  if (settings_.opt_write_zero) o["opt-write-zero"] = *settings_.opt_write_zero;
  if (settings_.max_write_zero) o["max-write-zero"] = *settings_.max_write_zero;
  if (settings_.opt_discard) o["opt-discard"] = *settings_.opt_discard;
  if (settings_.max_discard) o["max-discard"] = *settings_.max_discard;
  return o;
}

std::string BlkdebugFilter::filename() const {
  std::string image = child_node().filename();
  bool plain = settings_.inline_rules.empty() && !settings_.align && !settings_.max_transfer &&
               !settings_.opt_write_zero && !settings_.max_write_zero && !settings_.opt_discard &&
               !settings_.max_discard && image.rfind("json:", 0) != 0;
  if (plain) return "blkdebug:" + settings_.config + ":" + image;
  return options_to_json_filename(options());
}

// ---- open ---------------------------------------------------------------------------------

namespace {

Error constraint_error(std::string_view name, uint64_t value) {
  return Error::with_message(
      EINVAL, "Cannot meet constraints with " + std::string(name) + " " + std::to_string(value));
}

bool is_aligned(uint64_t v, uint64_t a) { return a == 0 || v % a == 0; }

}  // namespace

Task<Result<NodePtr>> open_blkdebug_node(OpenContext& ctx, Options& options) {
  BlkdebugFilter::Settings settings;
  BlkdebugRules rules;
  // A plain filename handed down (`open -o file.driver=blkdebug img`) is the image, as in
  // QEMU; the "blkdebug:CONFIG:IMAGE" form is split by BlockBackend before it gets here.
  if (!options.contains("image") && options.contains("filename") &&
      options["filename"].is_string()) {
    Options image = Options::object();
    image["driver"] = "file";
    image["filename"] = options["filename"];
    options["image"] = std::move(image);
    options.erase("filename");
  }
  auto config = take_string(options, "config");
  if (!config) co_return fail(config.error());
  if (*config && !(*config)->empty()) {
    settings.config = **config;
    if (Status s = parse_blkdebug_config(settings.config, rules); !s) co_return fail(s.error());
  }
  // Inline rules after the file's, inject-error before set-state, as QEMU adds them.
  for (const char* section : {"inject-error", "set-state"}) {
    auto it = options.find(section);
    if (it == options.end()) continue;
    if (Status s = parse_blkdebug_rule_list(section, *it, rules); !s) co_return fail(s.error());
    settings.inline_rules[section] = *it;
    options.erase(it);
  }
  struct SizeOption {
    const char* key;
    std::optional<uint64_t>* out;
  };
  for (SizeOption o :
       {SizeOption{"align", &settings.align}, SizeOption{"max-transfer", &settings.max_transfer},
        SizeOption{"opt-write-zero", &settings.opt_write_zero},
        SizeOption{"max-write-zero", &settings.max_write_zero},
        SizeOption{"opt-discard", &settings.opt_discard},
        SizeOption{"max-discard", &settings.max_discard}}) {
    auto v = take_size(options, o.key);
    if (!v) co_return fail(v.error());
    *o.out = *v;
  }
  // An explicit 0 means "not set", as in QEMU.
  for (auto* v : {&settings.align, &settings.max_transfer, &settings.opt_write_zero,
                  &settings.max_write_zero, &settings.opt_discard, &settings.max_discard}) {
    if (*v && **v == 0) v->reset();
  }
  const uint64_t align = settings.align.value_or(0);
  if (align && (align >= INT32_MAX || (align & (align - 1)))) {
    co_return fail(constraint_error("align", align));
  }

  Result<NodePtr> image = co_await open_child(ctx, options, "image", "file");
  if (!image) co_return fail(image.error());

  // The limits must be consistent with the alignment (QEMU's blkdebug_open checks).
  const uint64_t child_align = (*image)->limits().request_alignment;
  const uint64_t eff_align = std::max<uint64_t>(align, child_align);
  std::optional<Error> err;
  if (settings.max_transfer &&
      (*settings.max_transfer >= INT32_MAX || !is_aligned(*settings.max_transfer, eff_align))) {
    err = constraint_error("max-transfer", *settings.max_transfer);
  } else if (settings.opt_write_zero && (*settings.opt_write_zero >= INT32_MAX ||
                                         !is_aligned(*settings.opt_write_zero, align))) {
    err = constraint_error("opt-write-zero", *settings.opt_write_zero);
  } else if (settings.max_write_zero &&
             (*settings.max_write_zero >= INT32_MAX ||
              !is_aligned(*settings.max_write_zero,
                          std::max<uint64_t>(settings.opt_write_zero.value_or(0), align)))) {
    err = constraint_error("max-write-zero", *settings.max_write_zero);
  } else if (settings.opt_discard &&
             (*settings.opt_discard >= INT32_MAX || !is_aligned(*settings.opt_discard, align))) {
    err = constraint_error("opt-discard", *settings.opt_discard);
  } else if (settings.max_discard &&
             (*settings.max_discard >= INT32_MAX ||
              !is_aligned(*settings.max_discard,
                          std::max<uint64_t>(settings.opt_discard.value_or(0), align)))) {
    err = constraint_error("max-discard", *settings.max_discard);
  }
  if (err) {
    (void)co_await (*image)->close();
    co_return fail(*err);
  }
  co_return NodePtr(
      new BlkdebugFilter(ctx.loop, std::move(*image), std::move(settings), std::move(rules)));
}

}  // namespace qblock
