// `qblock storage-daemon`: qemu-storage-daemon 7.2's command line over qblock's StorageDaemon
// (qblock/storage_daemon.h): --blockdev, --object, --nbd-server, --export, --chardev,
// --monitor, --pidfile, --daemonize, processed in order with QEMU's messages. SIGTERM, SIGINT,
// SIGHUP and QMP "quit" shut it down cleanly.
#include "qblock/storage_daemon.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "qblock/background.h"
#include "qblock/commands.h"
#include "qblock/event_loop.h"
#include "qblock/image_options.h"
#include "qblock/options.h"
#include "qblock/user_objects.h"
#include "qblock/version.h"

namespace qblock::tools {

namespace {

constexpr const char* kProgram = "qemu-storage-daemon";

int fail(const std::string& message) {
  std::fprintf(stderr, "%s: %s\n", kProgram, message.c_str());
  return EXIT_FAILURE;
}

// An error about one option, prefixed with it as QEMU does ("--export X: message").
int fail_option(const std::string& option, const std::string& value, const std::string& message) {
  return fail(option + " " + value + ": " + message);
}

void print_help() {
  std::printf(
      "Usage: qblock storage-daemon [options]\n"
      "QEMU storage daemon (qemu-storage-daemon 7.2 compatible)\n"
      "\n"
      "  -h, --help             display this help and exit\n"
      "  -V, --version          output version information and exit\n"
      "\n"
      "  --blockdev [driver=]<driver>[,node-name=<N>][,read-only=on|off]\n"
      "             [,cache.direct=on|off][,cache.no-flush=on|off]\n"
      "             [,driver specific parameters...]\n"
      "                         configure a block backend (dotted keys or JSON)\n"
      "\n"
      "  --chardev socket,id=<id>,path=<path>,server=on,wait=off\n"
      "                         configure a character device backend (a listening\n"
      "                         UNIX socket for a QMP monitor)\n"
      "\n"
      "  --daemonize            daemonize the process, and have the parent exit\n"
      "                         once startup is complete\n"
      "\n"
      "  --export [type=]nbd,id=<id>,node-name=<node-name>[,name=<export-name>]\n"
      "           [,writable=on|off]\n"
      "                         export the specified block node over NBD\n"
      "                         (requires --nbd-server)\n"
      "\n"
      "  --monitor [chardev=]name[,mode=control][,pretty[=on|off]]\n"
      "                         configure a QMP monitor\n"
      "\n"
      "  --nbd-server addr.type=inet,addr.host=<host>,addr.port=<port>\n"
      "               [,max-connections=<n>]\n"
      "  --nbd-server addr.type=unix,addr.path=<path>\n"
      "               [,max-connections=<n>]\n"
      "                         start an NBD server for exporting block nodes\n"
      "\n"
      "  --object <type>[,<property>=<value>...]\n"
      "                         create a new object (tls-creds-x509, tls-creds-psk)\n"
      "\n"
      "  --pidfile <path>       write process ID to a file after startup\n");
}

struct Step {
  std::string option;  // "--blockdev", ...
  std::string value;
};

struct Args {
  std::vector<Step> steps;
  std::string pidfile;
  bool daemonize = false;
};

std::optional<int> parse_args(int argc, char** argv, Args& args) {
  OptionParser parser;
  parser.on_error([](char kind, const char* word) {
    if (kind == ':') return fail(std::string("option '") + word + "' requires an argument");
    return fail(std::string("unrecognized option '") + word + "'");
  });
  parser.help(print_help);
  parser.without_value({'V', "version"}, [](const char*) {
    std::printf("qemu-storage-daemon version 7.2.0 (qblock %s)\n", QBLOCK_VERSION_STRING);
    return EXIT_SUCCESS;
  });
  for (const char* name : {"blockdev", "chardev", "export", "monitor", "nbd-server", "object"}) {
    parser.with_value(name, [&args, name](const char* value) {
      args.steps.push_back({std::string("--") + name, value});
      return kContinue;
    });
  }
  parser.value("pidfile", &args.pidfile);
  parser.flag("daemonize", &args.daemonize);
  parser.ignored({'T', "trace"}, true);
  if (const int r = parser.parse(argc, argv); r != kContinue) return r;
  if (!parser.operands().empty()) return fail(parser.operands()[0] + ": Unexpected argument");
  return std::nullopt;
}

Result<Options> parse_option_value(const std::string& text, std::string_view implied_key) {
  if (!text.empty() && text[0] == '{') return parse_json_options(text);
  return parse_key_value_options(text, implied_key);
}

// Chardevs are only remembered until a --monitor uses them (their sockets open then).
struct Chardev {
  std::string path;
};

int setup(EventLoop& loop, StorageDaemon& daemon, const Args& args) {
  std::map<std::string, Chardev> chardevs;
  for (const Step& step : args.steps) {
    const std::string& o = step.option;
    if (o == "--blockdev") {
      Result<Options> tree = parse_option_value(step.value, "driver");
      if (!tree) return fail_option(o, step.value, tree.error().message());
      const OptionSyntax syntax =
          step.value.starts_with('{') ? OptionSyntax::kJson : OptionSyntax::kDottedKeys;
      Status s = run_sync(loop, daemon.add_blockdev(std::move(*tree), syntax));
      if (!s) return fail_option(o, step.value, s.error().message());
    } else if (o == "--object") {
      Result<Options> tree = parse_option_value(step.value, "qom-type");
      if (!tree) return fail_option(o, step.value, tree.error().message());
      if (!tree->contains("qom-type")) {
        return fail_option(o, step.value, "Parameter 'qom-type' is missing");
      }
      Status added = user_objects().add_options(*tree);
      if (!added) return fail_option(o, step.value, added.error().message());
    } else if (o == "--nbd-server") {
      Result<Options> tree = parse_option_value(step.value, "addr.type");
      if (!tree) return fail_option(o, step.value, tree.error().message());
      Status s = daemon.start_nbd_server(std::move(*tree));
      if (!s) return fail_option(o, step.value, s.error().message());
    } else if (o == "--export") {
      Result<Options> tree = parse_option_value(step.value, "type");
      if (!tree) return fail_option(o, step.value, tree.error().message());
      Status s = daemon.add_export(std::move(*tree));
      if (!s) return fail_option(o, step.value, s.error().message());
    } else if (o == "--chardev") {
      Result<Options> tree = parse_key_value_options(step.value, "backend");
      if (!tree) return fail_option(o, step.value, tree.error().message());
      const std::string backend = tree->value("backend", std::string());
      const std::string id = tree->value("id", std::string());
      if (id.empty()) return fail_option(o, step.value, "Parameter 'id' is missing");
      if (backend != "socket" || !tree->contains("path")) {
        return fail_option(o, step.value,
                           "qblock supports only 'socket' chardevs with a 'path' (a UNIX socket)");
      }
      if (tree->value("server", std::string("off")) != "on") {
        return fail_option(o, step.value, "qblock supports only listening chardevs (server=on)");
      }
      if (chardevs.contains(id)) {
        return fail_option(
            o, step.value,
            "attempt to add duplicate property '" + id + "' to object (type 'container')");
      }
      chardevs[id] = Chardev{(*tree)["path"].get<std::string>()};
    } else if (o == "--monitor") {
      Result<Options> tree = parse_key_value_options(step.value, "chardev");
      if (!tree) return fail_option(o, step.value, tree.error().message());
      const std::string id = tree->value("chardev", std::string());
      auto it = chardevs.find(id);
      if (it == chardevs.end())
        return fail_option(o, step.value, "chardev \"" + id + "\" not found");
      if (tree->value("mode", std::string("control")) != "control") {
        return fail_option(o, step.value, "Only QMP is supported");
      }
      Status s = daemon.add_monitor(it->second.path);
      if (!s) return fail_option(o, step.value, s.error().message());
    }
  }
  return kContinue;
}

}  // namespace

int run_storage_daemon(int argc, char** argv) {
  Args args;
  if (std::optional<int> status = parse_args(argc, argv, args)) return *status;

  int ready_fd = -1;
  if (args.daemonize) {
    std::string error;
    ready_fd = fork_into_background(error);
    if (ready_fd < 0) return fail(error);
  }

  ShutdownSignals signals;
  if (std::string error; !signals.open(error)) return fail(error);

  Result<std::unique_ptr<EventLoop>> loop = EventLoop::create();
  if (!loop) return fail(loop.error().message());
  std::unique_ptr<StorageDaemon> daemon = StorageDaemon::create(**loop);
  if (const int r = setup(**loop, *daemon, args); r != kContinue) {
    daemon->quit();
    Status closed = run_sync(**loop, daemon->run());
    (void)closed;
    return r;
  }
  if (!args.pidfile.empty()) {
    FILE* f = std::fopen(args.pidfile.c_str(), "w");
    if (!f || std::fprintf(f, "%d\n", static_cast<int>(::getpid())) < 0 || std::fclose(f) != 0) {
      const int e = errno;
      daemon->quit();
      Status closed = run_sync(**loop, daemon->run());
      (void)closed;
      return fail("Cannot open pid file: " + std::string(std::strerror(e)));
    }
  }
  if (ready_fd >= 0 && !report_ready(ready_fd)) return EXIT_FAILURE;
  Status served =
      run_sync(**loop, signals.serve(**loop, daemon->run(), [&daemon] { daemon->quit(); }));
  if (!args.pidfile.empty()) ::unlink(args.pidfile.c_str());
  if (!served) return fail(served.error().message());
  return EXIT_SUCCESS;
}

}  // namespace qblock::tools
