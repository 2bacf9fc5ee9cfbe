// `qblock bench`: qemu-img bench 7.2 (qemu-compat.md §4) on a BlockBackend. Keeps a fixed
// number of requests in flight with one long-lived coroutine per queue slot, so the hot loop
// allocates nothing of its own and every completion queues its successor's SQE in the same
// event-loop iteration (one io_uring_enter per batch).
#include <chrono>
#include <climits>
#include <coroutine>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "qblock/bench_util.h"
#include "qblock/block_backend.h"
#include "qblock/block_node.h"
#include "qblock/commands.h"
#include "qblock/event_loop.h"
#include "qblock/image_options.h"
#include "qblock/img_common.h"
#include "qblock/iovec.h"
#include "qblock/options.h"
#include "qblock/task.h"

namespace qblock::tools {

namespace {

constexpr const char* kSizeHint =
    "qemu-img: kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.\n";

struct BenchArgs {
  uint64_t count = 75000;
  uint64_t depth = 64;
  uint64_t bufsize = 4096;
  uint64_t step = 0;  // 0: bufsize
  uint64_t offset = 0;
  uint64_t flush_interval = 0;
  uint8_t pattern = 0;
  bool write = false;
  bool drain = true;
  bool native = false;  // -n or -i native
  bool stats = false;
  ImageArgs image;  // -f, --image-opts, -U (force_share goes into `flags`)
  std::string filename;
  OpenFlags flags;
};

void print_help() {
  std::printf(
      "Usage: qblock bench [-c count] [-d depth] [-f fmt] [--flush-interval=flush_interval]\n"
      "                    [-i aio] [-n] [--no-drain] [-o offset] [--pattern=pattern] [-q]\n"
      "                    [-s buffer_size] [-S step_size] [-t cache] [-w] [-U] [--stats]\n"
      "                    [--image-opts] filename\n"
      "\n"
      "Runs `count` read (or with -w write) requests of `buffer_size` bytes, `depth` of them\n"
      "in flight, starting at `offset` and advancing by `step_size` (default: buffer_size).\n"
      "--stats adds a line with IOPS and throughput.\n");
}

int usage_error(const std::string& message) {
  std::fprintf(stderr, "qemu-img: %s\nTry 'qemu-img --help' for more information\n",
               message.c_str());
  return 1;
}

int error(const std::string& message) {
  std::fprintf(stderr, "qemu-img: %s\n", message.c_str());
  return 1;
}

// qemu-img's cvtnum_full messages for a size option named `what`.
bool parse_size_option(const char* text, const char* what, uint64_t max, uint64_t& out) {
  Result<uint64_t> v = parse_size(text);
  if (!v && v.error().errnum() != ERANGE) {
    std::fprintf(stderr,
                 "qemu-img: Invalid %s specified. You may use k, M, G, T, P or E suffixes for\n%s",
                 what, kSizeHint);
    return false;
  }
  if (!v || *v > max) {
    std::fprintf(stderr, "qemu-img: Invalid %s specified. Must be between 0 and %llu.\n", what,
                 static_cast<unsigned long long>(max));
    return false;
  }
  out = *v;
  return true;
}

// Parses argv into `args`. Returns -1 to go on, otherwise the exit status.
int parse_args(int argc, char** argv, BenchArgs& args) {
  OptionParser parser;
  parser.help(print_help);
  // 7.2's bench has no --object.
  add_image_options(parser,
                    ImageOption::kFormat | ImageOption::kImageOpts | ImageOption::kForceShare,
                    &args.image);
  parser.with_value('c', [&args](const char* value) {
    std::optional<uint64_t> v = parse_ulong(value);
    if (!v || *v > INT_MAX) return error("Invalid request count specified");
    args.count = *v;
    return kContinue;
  });
  parser.with_value('d', [&args](const char* value) {
    // qemu-compat.md §4.4: 7.2 accepts 0 and then hangs; qblock rejects it.
    std::optional<uint64_t> v = parse_ulong(value);
    if (!v || *v > INT_MAX || *v == 0) return error("Invalid queue depth specified");
    args.depth = *v;
    return kContinue;
  });
  parser.without_value('n', [&args](const char*) {
    args.native = true;
    args.flags.aio = AioMode::kIoUring;  // native AIO is served by io_uring
    return kContinue;
  });
  parser.with_value('i', [&args](const char* value) {
    std::string_view mode = value;
    if (mode == "threads") {
      args.native = false;
      args.flags.aio = AioMode::kThreads;
    } else if (mode == "io_uring") {
      args.native = false;
      args.flags.aio = AioMode::kIoUring;
    } else if (mode == "native") {
      args.native = true;
      args.flags.aio = AioMode::kIoUring;
    } else {
      return error(std::string("Invalid aio option: ") + value);
    }
    return kContinue;
  });
  parser.with_value('o', [&args](const char* value) {
    return parse_size_option(value, "offset", INT64_MAX, args.offset) ? kContinue : 1;
  });
  parser.ignored('q', false);  // bench prints its own lines even when quiet (qemu-compat.md §4.1)
  parser.with_value('s', [&args](const char* value) {
    return parse_size_option(value, "buffer size", INT_MAX, args.bufsize) ? kContinue : 1;
  });
  parser.with_value('S', [&args](const char* value) {
    return parse_size_option(value, "step_size", INT_MAX, args.step) ? kContinue : 1;
  });
  parser.with_value('t', [&args](const char* value) {
    return apply_cache_mode(value, args.flags) ? kContinue : error("Invalid cache mode");
  });
  parser.flag('w', &args.write);
  parser.with_value("flush-interval", [&args](const char* value) {
    std::optional<uint64_t> v = parse_ulong(value);
    if (!v || *v > INT_MAX) return error("Invalid flush interval specified");
    args.flush_interval = *v;
    return kContinue;
  });
  parser.with_value("pattern", [&args](const char* value) {
    std::optional<uint64_t> v = parse_ulong(value);
    if (!v || *v > 0xff) return error("Invalid pattern byte specified");
    args.pattern = static_cast<uint8_t>(*v);
    return kContinue;
  });
  parser.without_value("no-drain", [&args](const char*) {
    args.drain = false;
    return kContinue;
  });
  parser.flag("stats", &args.stats);
  if (int r = parser.parse(argc, argv); r != kContinue) return r;
  if (parser.operands().size() != 1) return usage_error("Expecting one image file name");
  args.filename = parser.operands()[0];
  if (args.flush_interval && !args.write) {
    return error("--flush-interval is only available in write tests");
  }
  if (args.flush_interval && args.flush_interval < args.depth) {
    return error("Flush interval can't be smaller than depth");
  }
  // Before the aio=native check, as 7.2 does (open_image checks it again).
  if (!check_image_opts_exclusive(args.image)) return 1;
  if (args.step == 0) args.step = args.bufsize;
  args.flags.read_only = !args.write;
  args.flags.force_share = args.image.force_share;
  return -1;
}

// The state shared by the slot coroutines; the counters follow qemu-compat.md §4.3.
struct Bench {
  BlockBackend* backend = nullptr;
  EventLoop* loop = nullptr;
  bool write = false;
  bool drain = true;
  uint64_t n = 0;          // requests not yet completed
  uint64_t in_flight = 0;  // read/write requests submitted and not completed
  uint64_t flush_interval = 0;
  OffsetSequence offsets{0, 0, 0, 0};
  std::vector<AlignedBuffer> buffers;  // one per slot, filled with the pattern
  std::vector<IoVec> iovs;             // one per slot, over buffers[slot]
  bool drain_pending = false;          // drain mode: flush once in_flight reaches 0
  bool flushing = false;               // drain mode: the drained flush is in flight
  uint64_t flushes_in_flight = 0;
  std::size_t live_slots = 0;  // slot coroutines not yet finished
  bool failed = false;
  std::vector<std::coroutine_handle<>> parked;  // slots waiting for the drained flush

  // A slot may submit if requests remain that are not in flight and no drained flush is
  // pending or running.
  bool may_submit() const { return !failed && n > in_flight && !drain_pending && !flushing; }
  // A slot stops for good when nothing will ever need submitting again.
  bool slot_finished() const { return failed || n <= in_flight; }
  bool done() const {
    return (n == 0 || (failed && in_flight == 0)) && flushes_in_flight == 0 && !flushing &&
           live_slots == 0;
  }

  void fail_request(const Error& e) {
    if (!failed) std::fprintf(stderr, "qemu-img: Failed request: %s\n", e.errno_text().c_str());
    failed = true;
    wake_parked();
  }
  void wake_parked() {
    for (std::coroutine_handle<> h : parked) loop->post(h);
    parked.clear();
  }
};

// Suspends a slot until the drained flush has completed.
struct ParkAwaiter {
  Bench* bench;
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h) { bench->parked.push_back(h); }
  void await_resume() const noexcept {}
};

Task<void> flush_request(Bench* b) {
  ++b->flushes_in_flight;
  Status s = co_await b->backend->flush();
  --b->flushes_in_flight;
  if (!s) b->fail_request(s.error());
  if (b->flushing) {
    b->flushing = false;
    b->wake_parked();
  }
}

// The completion routine of qemu-compat.md §4.3 for one completed read/write.
void complete_request(Bench* b, const Status& s) {
  if (!s) {
    --b->in_flight;
    b->fail_request(s.error());
    return;
  }
  const uint64_t remaining = b->n - b->in_flight;
  --b->n;
  --b->in_flight;
  if (b->flush_interval && remaining % b->flush_interval == 0) {
    // While draining nothing is submitted, so `remaining` stays put and this fires once.
    if (b->drain) {
      b->drain_pending = true;
    } else {
      spawn(flush_request(b));
    }
  }
  if (b->drain_pending && b->in_flight == 0 && !b->failed) {
    b->drain_pending = false;
    b->flushing = true;
    spawn(flush_request(b));
  }
}

// One queue slot: submits a request, waits for it, runs the completion routine, repeats.
// The slot's buffer and IoVec are preallocated; the loop itself allocates nothing.
Task<void> slot_main(Bench* b, std::size_t slot) {
  for (;;) {
    if (!b->may_submit()) {
      if (b->slot_finished()) {
        --b->live_slots;
        co_return;
      }
      ParkAwaiter park{b};
      co_await park;
      continue;
    }
    const uint64_t offset = b->offsets.next();
    ++b->in_flight;
    Status s;
    if (b->write) {
      Task<Status> request = b->backend->write(offset, b->iovs[slot]);
      s = co_await std::move(request);
    } else {
      Task<Status> request = b->backend->read(offset, b->iovs[slot]);
      s = co_await std::move(request);
    }
    complete_request(b, s);
  }
}

}  // namespace

int run_bench(int argc, char** argv) {
  BenchArgs args;
  if (int r = parse_args(argc, argv, args); r >= 0) return r;

  const std::string shown_name = args.filename;
  auto open_error = [&](const std::string& message) {
    // Open errors are complete sentences; QEMU names the image once in front of those that
    // do not already start with it (qemu-compat.md §7: never twice).
    if (message.rfind("Could not open '", 0) == 0) return error(message);
    return error("Could not open '" + shown_name + "': " + message);
  };
  // qemu-compat.md §4.1: native AIO needs O_DIRECT; checked where QEMU checks it, at open.
  if (args.native && !args.flags.direct) {
    return open_error(
        "aio=native was specified, but it requires cache.direct=on, which was not specified.");
  }

  const std::size_t slots = static_cast<std::size_t>(std::min(args.depth, args.count));
  unsigned entries = 512;
  while (entries < slots && entries < 4096) entries *= 2;
  Result<std::unique_ptr<EventLoop>> loop = EventLoop::create(entries);
  if (!loop) return error(loop.error().message());

  Result<std::unique_ptr<BlockBackend>> opened =
      open_image(**loop, args.filename, args.image, args.flags, OpenMessage::kNameOnce);
  if (!opened) return 1;
  std::unique_ptr<BlockBackend> backend = std::move(*opened);
  if (args.write && backend->probed_raw()) warn_probed_raw(shown_name);

  const uint64_t image_size = backend->length();
  int status = 0;
  // qemu-compat.md §4.4: every request must lie inside the image.
  if (args.count > 0 && args.bufsize > image_size) {
    status = error("Invalid buffer size specified. The image is only " +
                   std::to_string(image_size) + " bytes.");
  } else if (args.count > 0 && args.offset > image_size - args.bufsize) {
    status = error("Invalid offset specified. Must be between 0 and " +
                   std::to_string(image_size - args.bufsize) + ".");
  }
  if (status) {
    (void)run_sync(**loop, close_image(backend.get()));
    return status;
  }

  std::printf(
      "Sending %llu %s requests, %llu bytes each, %llu in parallel (starting at offset %llu, "
      "step size %llu)\n",
      static_cast<unsigned long long>(args.count), args.write ? "write" : "read",
      static_cast<unsigned long long>(args.bufsize), static_cast<unsigned long long>(args.depth),
      static_cast<unsigned long long>(args.offset), static_cast<unsigned long long>(args.step));
  if (args.flush_interval) {
    std::printf("Sending flush every %llu requests\n",
                static_cast<unsigned long long>(args.flush_interval));
  }

  Bench bench;
  bench.backend = backend.get();
  bench.loop = loop->get();
  bench.write = args.write;
  bench.drain = args.drain;
  bench.n = args.count;
  bench.flush_interval = args.flush_interval;
  bench.offsets = OffsetSequence(args.offset, args.step, args.bufsize, image_size);
  bench.buffers.reserve(slots);
  bench.iovs.reserve(slots);
  bench.parked.reserve(slots);
  for (std::size_t i = 0; i < slots; ++i) {
    // One aligned buffer per slot, so O_DIRECT never needs a bounce buffer.
    bench.buffers.emplace_back(static_cast<std::size_t>(args.bufsize), 4096);
    bench.buffers.back().fill(args.pattern);
    bench.iovs.emplace_back(bench.buffers.back().data(), static_cast<std::size_t>(args.bufsize));
  }

  const auto start = std::chrono::steady_clock::now();
  bench.live_slots = slots;
  for (std::size_t i = 0; i < slots; ++i) spawn(slot_main(&bench, i));
  while (!bench.done()) loop->get()->run_once(true);
  const auto end = std::chrono::steady_clock::now();
  const double seconds = std::chrono::duration<double>(end - start).count();

  Status closed = run_sync(**loop, close_image(backend.get()));
  if (bench.failed) return 1;
  std::printf("Run completed in %3.3f seconds.\n", seconds);
  if (args.stats) {
    const double iops = seconds > 0 ? static_cast<double>(args.count) / seconds : 0;
    const double mib = iops * static_cast<double>(args.bufsize) / (1024.0 * 1024.0);
    std::printf("IOPS: %.0f, throughput: %.2f MiB/s\n", iops, mib);
  }
  if (!closed) return error(closed.error().message());
  return 0;
}

}  // namespace qblock::tools
