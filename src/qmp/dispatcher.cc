// The QMP dispatcher; see dispatcher.h.
#include "qmp/dispatcher.h"

#include "base/check.h"

namespace qblock::qmp {

namespace {

constexpr const char* kCapabilities = "qmp_capabilities";

// Checks the envelope as QEMU does: 'execute' first, then the other members in input order.
// Fills `execute`.
std::optional<QmpError> check_envelope(const Options& input, std::string& execute) {
  if (!input.is_object()) return QmpError::generic("QMP input must be a JSON object");
  bool has_execute = false;
  if (auto it = input.find("execute"); it != input.end()) {
    if (!it->is_string()) return QmpError::generic("QMP input member 'execute' must be a string");
    execute = it->get<std::string>();
    has_execute = true;
  }
  for (auto it = input.begin(); it != input.end(); ++it) {
    const std::string& key = it.key();
    if (key == "execute") {
      continue;
    } else if (key == "arguments") {
      if (!it->is_object()) {
        return QmpError::generic("QMP input member 'arguments' must be an object");
      }
    } else if (key != "id") {
      return QmpError::generic("QMP input member '" + key + "' is unexpected");
    }
  }
  if (!has_execute) return QmpError::generic("QMP input lacks member 'execute'");
  return std::nullopt;
}

}  // namespace

Options error_reply(const QmpError& e) {
  Options reply = Options::object();
  reply["error"] = Options{{"class", e.error_class}, {"desc", e.desc}};
  return reply;
}

void Dispatcher::add(CommandSpec command) {
  CHECK(command.name != kCapabilities);
  const std::string name = command.name;
  const bool inserted = commands_.emplace(name, std::move(command)).second;
  CHECK(inserted);
}

std::vector<std::string> Dispatcher::command_names() const {
  std::vector<std::string> names{kCapabilities};
  for (const auto& [name, command] : commands_) names.push_back(name);
  return names;
}

Task<Options> Dispatcher::dispatch(Result<Options> input, Session& session) {
  if (!input) co_return error_reply(QmpError::generic(input.error().message()));
  std::string execute;
  if (std::optional<QmpError> e = check_envelope(*input, execute)) {
    Options reply = error_reply(*e);
    if (input->is_object() && input->contains("id")) reply["id"] = (*input)["id"];
    co_return reply;
  }
  Options reply;
  const Options args = input->contains("arguments") ? (*input)["arguments"] : Options::object();
  if (execute == kCapabilities) {
    if (session.negotiated) {
      reply = error_reply(QmpError::command_not_found(
          "Capabilities negotiation is already complete, command ignored"));
    } else if (std::optional<QmpError> e =
                   check_arguments(args, {optional("enable", ArgType::kStringList)})) {
      reply = error_reply(*e);
    } else {
      // "oob" is the only capability QEMU offers; qblock accepts it and runs every command
      // in order, which out-of-band clients tolerate for the commands offered here.
      std::optional<QmpError> bad;
      if (args.contains("enable")) {
        for (const Options& cap : args["enable"]) {
          // QEMU 7.2 names list elements 'null' in this message.
          if (cap != "oob") {
            bad = QmpError::generic("Parameter 'null' does not accept value '" +
                                    cap.get<std::string>() + "'");
            break;
          }
        }
      }
      if (bad) {
        reply = error_reply(*bad);
      } else {
        session.negotiated = true;
        reply = Options{{"return", Options::object()}};
      }
    }
  } else if (!session.negotiated) {
    reply = error_reply(
        QmpError::command_not_found("Expecting capabilities negotiation with 'qmp_capabilities'"));
  } else if (auto it = commands_.find(execute); it == commands_.end()) {
    reply =
        error_reply(QmpError::command_not_found("The command " + execute + " has not been found"));
  } else {
    const CommandSpec& command = it->second;
    std::optional<QmpError> e;
    if (!command.handler_checks_args) e = check_arguments(args, command.args);
    if (e) {
      reply = error_reply(*e);
    } else {
      Task<CommandResult> run = command.handler(args);
      CommandResult result = co_await std::move(run);
      if (result) {
        reply = Options{{"return", std::move(*result)}};
      } else {
        reply = error_reply(result.error());
      }
    }
  }
  if (input->contains("id")) reply["id"] = (*input)["id"];
  co_return reply;
}

}  // namespace qblock::qmp
