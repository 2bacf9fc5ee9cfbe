// `qblock nbd`: serves an image over NBD with qemu-nbd's command line (issue #5). Listens on
// 127.0.0.1:10809 unless told otherwise (-b/-p) or on a Unix socket (-k); SIGTERM, SIGINT and
// SIGHUP flush and close the image (trimming preallocation) and remove the socket.
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>

#include "qblock/background.h"
#include "qblock/block_backend.h"
#include "qblock/commands.h"
#include "qblock/dirty_bitmaps.h"
#include "qblock/event_loop.h"
#include "qblock/image.h"
#include "qblock/image_options.h"
#include "qblock/listen_socket.h"
#include "qblock/nbd_list.h"
#include "qblock/nbd_server.h"
#include "qblock/options.h"
#include "qblock/snapshot_option.h"
#include "qblock/snapshot_param.h"
#include "qblock/sync.h"
#include "qblock/user_objects.h"

namespace qblock::tools {
namespace {

constexpr const char* kDefaultPort = "10809";
constexpr const char* kDefaultBind = "127.0.0.1";
constexpr int kBusyPollMicros = 1000;

void print_help() {
  std::printf(
      "Usage: qblock nbd [OPTIONS] FILE\n"
      "  or:  qblock nbd -L [OPTIONS]\n"
      "Serve FILE over the NBD protocol (qemu-nbd compatible options).\n"
      "\n"
      "Connection properties:\n"
      "  -p, --port=PORT           port to listen on (default `10809')\n"
      "  -b, --bind=IFACE          interface to bind to (default `127.0.0.1')\n"
      "  -k, --socket=PATH         path to the unix socket\n"
      "  -e, --shared=NUM          device can be shared by NUM clients (default '1')\n"
      "  -t, --persistent          don't exit on the last connection\n"
      "  -x, --export-name=NAME    expose export by name (default is empty string)\n"
      "  -D, --description=TEXT    export a human-readable description\n"
      "  -A, --allocation-depth    expose the allocation depth (always offered)\n"
      "  -B, --bitmap=NAME         expose a persistent dirty bitmap\n"
      "  -L, --list                list exports available from another NBD server\n"
      "      --object type,id=ID,...   define an object: tls-creds-x509 or tls-creds-psk\n"
      "                            (dir=DIR,endpoint=server[,verify-peer=on|off])\n"
      "      --tls-creds=ID        use id of an earlier --object to provide TLS\n"
      "      --tls-authz=ID        use id of an earlier --object to provide\n"
      "                            authorization\n"
      "      --fork                fork off the server process and exit the parent\n"
      "                            once the server is running\n"
      "      --pid-file=PATH       store the server's process ID in the given file\n"
      "      --handshake-limit=N   disconnect clients still negotiating after N seconds\n"
      "                            (default 10, 0 for no limit)\n"
      "\n"
      "Block device options:\n"
      "  -f, --format=FORMAT       set image format (raw, qcow2, ...)\n"
      "  -r, --read-only           export read-only\n"
      "  -s, --snapshot            use FILE as an external snapshot, create a temporary\n"
      "                            file with backing_file=FILE, redirect the write to\n"
      "                            the temporary one\n"
      "  -l, --load-snapshot=SNAPSHOT_PARAM\n"
      "                            load an internal snapshot inside FILE and export it\n"
      "                            as an read-only device, SNAPSHOT_PARAM format is\n"
      "                            'snapshot.id=[ID],snapshot.name=[NAME]', or\n"
      "                            '[ID_OR_NAME]'\n"
      "  -n, --nocache             disable host cache (--cache=none)\n"
      "      --cache=MODE          cache mode: 'none' (default; writeback where O_DIRECT\n"
      "                            is unavailable), 'writeback', 'writethrough',\n"
      "                            'directsync', 'unsafe'\n"
      "      --aio=MODE            AIO mode (io_uring (default), native or threads)\n"
      "      --discard=MODE        discard mode (ignore, unmap)\n"
      "      --detect-zeroes=MODE  detect-zeroes mode (off, on, unmap)\n"
      "      --image-opts          treat FILE as a full set of image options\n"
      "  -h, --help                display this help and exit\n");
}

int fail(const std::string& message) {
  std::fprintf(stderr, "qemu-nbd: %s\n", message.c_str());
  return EXIT_FAILURE;
}

// A decimal number in [min, max] that is the whole of `text`, or nullopt.
std::optional<long> parse_decimal(const std::string& text, long min, long max) {
  char* end = nullptr;
  errno = 0;
  const long v = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno == ERANGE || v < min || v > max) return std::nullopt;
  return v;
}

struct Args {
  std::string port;
  std::string bind;
  std::string socket_path;
  uint32_t shared = 1;
  bool persistent = false;
  ImageArgs image;  // -f/--format, --image-opts
  bool fork = false;
  std::string pid_file;
  std::string tls_creds;  // an --object id
  std::string tls_authz;
  std::optional<std::string> cache;
  OpenFlags flags;
  nbd::ExportOptions export_options;
  nbd::ServerLimits limits;
  std::string filename;
  bool list = false;                           // -L: act as a client and list a server's exports
  bool snapshot = false;                       // -s: writes go to a temporary qcow2 overlay
  std::optional<SnapshotParam> load_snapshot;  // -l: serve this internal snapshot
  // Seen options that list mode refuses as per-device settings.
  bool per_device = false;
};

// Parses argv into `args`; returns an exit status for --help or a bad option.
std::optional<int> parse_args(int argc, char** argv, Args& args) {
  OptionParser parser;
  // qemu-nbd stops at the FILE operand and words getopt failures its own way.
  parser.stop_at_first_operand().on_error([](char kind, const char* word) {
    if (kind == ':') return fail(std::string("option '") + word + "' requires an argument");
    return fail(std::string("unrecognized option '") + word +
                "'\nTry 'qblock nbd --help' for more information.");
  });
  parser.help(print_help);
  parser.with_value({'p', "port"}, [&args](const char* value) {
    if (!parse_decimal(value, 1, 65535)) return fail(std::string("Invalid port '") + value + "'");
    args.port = value;
    return kContinue;
  });
  parser.value({'b', "bind"}, &args.bind).value({'k', "socket"}, &args.socket_path);
  parser.with_value({'e', "shared"}, [&args](const char* value) {
    // qemu-nbd 7.2: 0 means no limit.
    const std::optional<long> n = parse_decimal(value, 0, INT32_MAX);
    if (!n) return fail(std::string("Invalid shared device number '") + value + "'");
    args.shared = static_cast<uint32_t>(*n);
    return kContinue;
  });
  parser.flag({'t', "persistent"}, &args.persistent);
  parser.with_value({'x', "export-name"}, [&args](const std::string value) {
    if (value.size() > 4096) return fail("export name '" + value + "' too long");
    args.export_options.name = value;
    args.per_device = true;
    return kContinue;
  });
  parser.with_value({'D', "description"}, [&args](const std::string value) {
    if (value.size() > 4096) return fail("export description '" + value + "' too long");
    args.export_options.description = value;
    args.per_device = true;
    return kContinue;
  });
  // qemu:allocation-depth is always offered; -A only counts as a per-device setting.
  parser.without_value({'A', "allocation-depth"}, [&args](const char*) {
    args.per_device = true;
    return kContinue;
  });
  parser.with_value({'B', "bitmap"}, [&args](const std::string value) {
    args.export_options.bitmaps.push_back(value);
    args.per_device = true;
    return kContinue;
  });
  // qemu-nbd's opener reports as qemu-nbd, so nbd takes the options but not open_image().
  args.image.tool = "qemu-nbd";
  add_image_options(parser,
                    ImageOption::kFormat | ImageOption::kFormatLong | ImageOption::kImageOpts |
                        ImageOption::kObject,
                    &args.image);
  parser.flag({'r', "read-only"}, &args.flags.read_only);
  parser.flag({'s', "snapshot"}, &args.snapshot).flag({'L', "list"}, &args.list);
  parser.with_value({'l', "load-snapshot"}, [&args](const std::string value) {
    // qemu-nbd 7.2: a "snapshot."-prefixed text is a QemuOpts list of snapshot.id and
    // snapshot.name, anything else one id-or-name; either way the export is read-only.
    if (value.rfind("snapshot.", 0) == 0) {
      SnapshotParamParse parsed = parse_snapshot_param(value);
      for (const std::string& key : parsed.bare_keys) {
        std::fprintf(stderr,
                     "qemu-nbd: warning: short-form boolean option '%s' deprecated\n"
                     "Please use %s=on instead\n",
                     key.c_str(), key.c_str());
      }
      if (parsed.invalid_key) {
        std::fprintf(stderr, "qemu-nbd: Invalid parameter '%s'\n", parsed.invalid_key->c_str());
        return fail("Failed in parsing snapshot param `" + value + "'");
      }
      args.load_snapshot = std::move(parsed.param);
    } else {
      args.load_snapshot =
          SnapshotParam{.id = std::nullopt, .name = std::nullopt, .id_or_name = value};
    }
    args.flags.read_only = true;
    args.per_device = true;
    return kContinue;
  });
  parser.without_value({'n', "nocache"}, [&args](const char*) {
    args.cache = "none";
    args.per_device = true;
    return kContinue;
  });
  parser.ignored({'v', "verbose"}, false);
  parser.with_value("cache", [&args](const std::string value) {
    OpenFlags probe;
    if (!apply_cache_mode(value, probe)) return fail("Invalid cache mode '" + value + "'");
    args.cache = value;
    args.per_device = true;
    return kContinue;
  });
  parser.with_value("aio", [&args](const std::string value) {
    if (value == "io_uring" || value == "native") {
      args.flags.aio = AioMode::kIoUring;  // native AIO is served by io_uring
    } else if (value == "threads") {
      args.flags.aio = AioMode::kThreads;
    } else {
      return fail("invalid aio mode '" + value + "'");
    }
    args.per_device = true;
    return kContinue;
  });
  parser.with_value("discard", [&args](const std::string value) {
    if (value == "ignore" || value == "off") {
      args.flags.discard = DiscardMode::kIgnore;
    } else if (value == "unmap" || value == "on") {
      args.flags.discard = DiscardMode::kUnmap;
    } else {
      return fail("Invalid discard mode `" + value + "'");
    }
    args.per_device = true;
    return kContinue;
  });
  parser.with_value("detect-zeroes", [&args](const std::string value) {
    if (value == "off") {
      args.export_options.detect_zeroes = nbd::DetectZeroes::kOff;
    } else if (value == "on") {
      args.export_options.detect_zeroes = nbd::DetectZeroes::kOn;
    } else if (value == "unmap") {
      args.export_options.detect_zeroes = nbd::DetectZeroes::kUnmap;
    } else {
      return fail("Invalid detect-zeroes mode '" + value + "'");
    }
    return kContinue;
  });
  parser.flag("fork", &args.fork).value("pid-file", &args.pid_file);
  parser.value("tls-creds", &args.tls_creds).value("tls-authz", &args.tls_authz);
  parser.with_value("handshake-limit", [&args](const std::string value) {
    const std::optional<long> seconds = parse_decimal(value, 0, 86400);
    if (!seconds) return fail("Invalid handshake limit '" + value + "'");
    args.limits.handshake_limit = std::chrono::seconds(*seconds);
    return kContinue;
  });
  if (const int r = parser.parse(argc, argv); r != kContinue) return r;
  if (args.image.format) args.per_device = true;
  if (args.list) {
    if (!parser.operands().empty()) return fail("List mode is incompatible with a file name");
    if (args.per_device) return fail("List mode is incompatible with per-device settings");
    if (args.fork) return fail("List mode is incompatible with forking");
  } else if (parser.operands().size() != 1) {
    return fail(std::string(parser.operands().empty() ? "Not enough" : "Too many") +
                " arguments\nTry 'qblock nbd --help' for more information.");
  }
  if (!args.list) args.filename = parser.operands()[0];
  if (!args.socket_path.empty() && (!args.bind.empty() || !args.port.empty())) {
    return fail("-k and -b/-p are mutually exclusive");
  }
  if (!args.tls_authz.empty() && args.tls_creds.empty()) {
    return fail("--tls-authz is not permitted without --tls-creds");
  }
  if (args.export_options.detect_zeroes == nbd::DetectZeroes::kUnmap &&
      args.flags.discard != DiscardMode::kUnmap) {
    return fail("--detect-zeroes=unmap can only be used if --discard=unmap");
  }
  args.export_options.read_only = args.flags.read_only;
  args.export_options.discard_unmap = args.flags.discard == DiscardMode::kUnmap;
  // As qemu-nbd 7.2: only when more than one client may connect (also read-only: with -e 1 a
  // second connection would wait in the backlog for ever).
  args.export_options.multi_conn = args.shared != 1;
  return std::nullopt;
}

// The server credentials that --object created with id `id`, loaded: qemu-nbd's messages.
Result<std::unique_ptr<nbd::TlsCredentials>> load_server_tls(const std::string& id) {
  Result<const TlsCredsObject*> creds = user_objects().tls_creds(id, TlsEndpoint::kServer);
  if (!creds) {
    return tl::unexpected(
        Error::with_message(EINVAL, "Failed to get TLS creds: " + creds.error().message()));
  }
  const TlsCredsObject& c = **creds;
  if (c.type == TlsCredsType::kPsk) return nbd::TlsCredentials::load_psk(c.psk_file());
  return nbd::TlsCredentials::load_x509(c.dir, c.verify_peer
                                                   ? nbd::TlsCredentials::VerifyPeer::kYes
                                                   : nbd::TlsCredentials::VerifyPeer::kNo);
}

// A listening socket for the arguments: Unix (-k) or TCP (-b/-p, default 127.0.0.1:10809).
Result<int> open_listener(const Args& args) {
  if (!args.socket_path.empty()) return listen_unix(args.socket_path);
  return listen_tcp(args.bind.empty() ? kDefaultBind : args.bind,
                    args.port.empty() ? kDefaultPort : args.port);
}

// Opens `options` with the cache mode asked for; the default is direct I/O (the server's data
// path should not be the page cache's), and without an explicit --cache, the page cache where
// O_DIRECT is unavailable (tmpfs).
Result<std::unique_ptr<BlockBackend>> open_backend(EventLoop& loop, BackendOptions options,
                                                   const std::optional<std::string>& cache) {
  apply_cache_mode(cache.value_or("none"), options.flags);
  Result<std::unique_ptr<BlockBackend>> opened = run_sync(loop, BlockBackend::open(loop, options));
  if (!opened && !cache && opened.error().errnum() == EINVAL) {
    apply_cache_mode("writeback", options.flags);
    opened = run_sync(loop, BlockBackend::open(loop, options));
  }
  return opened;
}

// -s: the image, opened read-only, becomes the backing file of a temporary qcow2 overlay (in
// $TMPDIR, else /var/tmp, as QEMU's) that takes the writes; the overlay is unlinked once open,
// so it disappears with the process.
Result<std::unique_ptr<BlockBackend>> open_temp_overlay(EventLoop& loop, const Args& args,
                                                        BackendOptions base) {
  base.flags.read_only = true;
  Result<std::unique_ptr<BlockBackend>> image = open_backend(loop, base, args.cache);
  if (!image) return image;
  const uint64_t length = (*image)->length();
  const std::string format = (*image)->root().driver_name();
  std::string backing = (*image)->root().filename();
  if (!args.image.image_opts && args.filename.rfind("json:", 0) != 0) {
    // A relative name would be resolved against the overlay's directory.
    char resolved[PATH_MAX];
    if (::realpath(args.filename.c_str(), resolved)) backing = resolved;
  }
  Status closed = run_sync(loop, (*image)->close());
  if (!closed) return tl::unexpected(closed.error());

  const char* tmpdir = std::getenv("TMPDIR");
  std::string path = std::string(tmpdir && *tmpdir ? tmpdir : "/var/tmp") + "/vl.XXXXXX";
  const int fd = ::mkstemp(path.data());
  if (fd < 0) {
    return tl::unexpected(Error::with_message(
        errno, "Could not get temporary filename: " + std::string(std::strerror(errno))));
  }
  ::close(fd);
  Qcow2CreateOptions create;
  create.filename = path;
  create.size = length;
  create.backing_file = backing;
  create.backing_fmt = format;
  create.unsafe_backing = true;
  Status created = run_sync(loop, create_qcow2_image(loop, create));
  if (!created) {
    ::unlink(path.c_str());
    return tl::unexpected(created.error());
  }
  BackendOptions overlay;
  overlay.filename = path;
  overlay.format = "qcow2";
  overlay.flags = args.flags;
  Result<std::unique_ptr<BlockBackend>> opened = open_backend(loop, overlay, args.cache);
  ::unlink(path.c_str());
  return opened;
}

Result<std::unique_ptr<BlockBackend>> open_image(EventLoop& loop, const Args& args) {
  BackendOptions options;
  options.format = args.image.format_name();
  options.flags = args.flags;
  if (args.image.image_opts) {
    Result<Options> tree = parse_key_value_options(args.filename, "file");
    if (!tree) return tl::unexpected(tree.error());
    options.tree = std::move(*tree);
  } else {
    options.filename = args.filename;
  }
  if (args.snapshot) return open_temp_overlay(loop, args, std::move(options));
  return open_backend(loop, std::move(options), args.cache);
}

// Turns SIGTERM/SIGINT/SIGHUP into server.stop(); SIGUSR1 only wakes it to finish.
// Serves until the server stops (the last client left, or a shutdown signal), then closes the
// image.
Task<Status> serve(nbd::Server& server, BlockBackend& backend, int listen_fd, const Args& args) {
  Status served = co_await server.listen(listen_fd, args.shared, args.persistent);
  Status closed = co_await backend.close();
  if (!served) co_return served;
  co_return closed;
}

}  // namespace

int run_nbd(int argc, char** argv) {
  Args args;
  if (std::optional<int> status = parse_args(argc, argv, args)) return *status;
  if (args.list) {
    if (!args.tls_authz.empty()) return fail("TLS authorization is incompatible with export list");
    return list_nbd_exports({.socket_path = args.socket_path,
                             .host = args.bind,
                             .port = args.port,
                             .tls_creds = args.tls_creds});
  }

  int ready_fd = -1;
  if (args.fork) {
    std::string error;
    ready_fd = fork_into_background(error);
    if (ready_fd < 0) return fail(error);
  }

  ShutdownSignals signals;
  if (std::string error; !signals.open(error)) return fail(error);

  std::unique_ptr<nbd::TlsCredentials> tls;
  if (!args.tls_creds.empty()) {
    Result<std::unique_ptr<nbd::TlsCredentials>> loaded = load_server_tls(args.tls_creds);
    if (!loaded) return fail(loaded.error().message());
    tls = std::move(*loaded);
  }

  Result<std::unique_ptr<EventLoop>> loop = EventLoop::create();
  if (!loop) return fail(loop.error().message());
  // A server answers faster when its loop does not sleep between a request's disk I/O and
  // the next one (measured in docs/performance.md, NBD section).
  (*loop)->set_busy_poll(std::chrono::microseconds(kBusyPollMicros));
  // qemu-nbd's words for the check, made where it opens the image.
  if (args.image.image_opts && args.image.format) {
    return fail("--image-opts and -f are mutually exclusive");
  }
  Result<std::unique_ptr<BlockBackend>> backend = open_image(**loop, args);
  if (!backend) {
    return fail("Failed to blk_new_open '" + args.filename + "': " + backend.error().message());
  }
  if (args.load_snapshot) {
    Status loaded = load_snapshot_param(**loop, *args.load_snapshot, (*backend)->root());
    if (!loaded) {
      Status closed = run_sync(**loop, (*backend)->close());
      (void)closed;
      return fail("Failed to load snapshot: " + loaded.error().message());
    }
  }
  for (const std::string& name : args.export_options.bitmaps) {
    const std::vector<DirtyBitmapInfo> bitmaps = dirty_bitmaps((*backend)->root());
    const bool found = std::any_of(bitmaps.begin(), bitmaps.end(),
                                   [&name](const DirtyBitmapInfo& b) { return b.name == name; });
    if (!found) {
      Status closed = run_sync(**loop, (*backend)->close());
      (void)closed;
      return fail("Bitmap '" + name + "' is not found");
    }
  }
  Result<int> listener = open_listener(args);
  if (!listener) {
    Status closed = run_sync(**loop, (*backend)->close());
    (void)closed;
    return fail(listener.error().message());
  }
  if (!args.pid_file.empty()) {
    FILE* f = std::fopen(args.pid_file.c_str(), "w");
    if (!f || std::fprintf(f, "%d\n", static_cast<int>(::getpid())) < 0 || std::fclose(f) != 0) {
      Status closed = run_sync(**loop, (*backend)->close());
      (void)closed;
      return fail("Failed to write pid file '" + args.pid_file + "': " + std::strerror(errno));
    }
  }
  // Ready: release the parent, and stop writing to the terminal it returns to.
  if (ready_fd >= 0 && !report_ready(ready_fd)) return EXIT_FAILURE;

  nbd::Server server(**backend, args.export_options, tls.get(), args.limits);
  if (!args.tls_authz.empty()) {
    server.set_tls_authz(args.tls_authz, [](const std::string& message) {
      std::fprintf(stderr, "qemu-nbd: %s\n", message.c_str());
    });
  }
  Status served = run_sync(**loop, signals.serve(**loop, serve(server, **backend, *listener, args),
                                                 [&server] { server.stop(); }));
  ::close(*listener);
  if (!args.socket_path.empty()) ::unlink(args.socket_path.c_str());
  if (!args.pid_file.empty()) ::unlink(args.pid_file.c_str());
  if (!served) return fail(served.error().message());
  return EXIT_SUCCESS;
}

}  // namespace qblock::tools
