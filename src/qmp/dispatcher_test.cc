// Tests for the QMP dispatcher and argument schema (dispatcher.h, schema.h): negotiation, the
// envelope checks, argument errors worded as QEMU's, ids echoed, handlers run only when valid.
#include "qmp/dispatcher.h"

#include <gtest/gtest.h>

#include "qblock/event_loop.h"
#include "qmp/json_parser.h"

namespace qblock::qmp {
namespace {

class DispatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto loop = EventLoop::create();
    ASSERT_TRUE(loop);
    loop_ = std::move(*loop);
    dispatcher_.add({"echo",
                     {required("size", ArgType::kInt), optional("name", ArgType::kString),
                      enum_arg("mode", {"safe", "hard"}, false),
                      optional("addr", ArgType::kObject, {required("path", ArgType::kString)})},
                     [this](Options args) { return echo(std::move(args)); }});
  }

  Task<CommandResult> echo(Options args) {
    ++calls_;
    co_return args;
  }

  // The reply to `text` as compact JSON.
  std::string ask(const std::string& text) {
    Options reply = run_sync(*loop_, dispatcher_.dispatch(parse_qmp_json(text), session_));
    return reply.dump();
  }

  std::unique_ptr<EventLoop> loop_;
  Dispatcher dispatcher_;
  Session session_;
  int calls_ = 0;
};

TEST_F(DispatcherTest, NegotiationComesFirst) {
  EXPECT_EQ(
      ask(R"({"execute":"echo","arguments":{"size":1}})"),
      R"({"error":{"class":"CommandNotFound","desc":"Expecting capabilities negotiation with 'qmp_capabilities'"}})");
  EXPECT_EQ(
      ask(R"({"execute":"qmp_capabilities","arguments":{"enable":["x"]}})"),
      R"({"error":{"class":"GenericError","desc":"Parameter 'null' does not accept value 'x'"}})");
  EXPECT_EQ(ask(R"({"execute":"qmp_capabilities","id":3})"), R"({"return":{},"id":3})");
  EXPECT_EQ(
      ask(R"({"execute":"qmp_capabilities"})"),
      R"({"error":{"class":"CommandNotFound","desc":"Capabilities negotiation is already complete, command ignored"}})");
  EXPECT_EQ(calls_, 0);
}

TEST_F(DispatcherTest, EnvelopeAndArgumentErrors) {
  session_.negotiated = true;
  EXPECT_EQ(ask("[]"),
            R"({"error":{"class":"GenericError","desc":"QMP input must be a JSON object"}})");
  EXPECT_EQ(ask(R"({"a":1})"),
            R"({"error":{"class":"GenericError","desc":"QMP input member 'a' is unexpected"}})");
  // The id comes back with envelope errors too (qemu-storage-daemon 7.2).
  EXPECT_EQ(
      ask(R"({"id":1})"),
      R"({"error":{"class":"GenericError","desc":"QMP input lacks member 'execute'"},"id":1})");
  EXPECT_EQ(
      ask(R"({"arguments":1,"execute":2})"),
      R"({"error":{"class":"GenericError","desc":"QMP input member 'execute' must be a string"}})");
  EXPECT_EQ(
      ask(R"({"execute":"nope","id":"x"})"),
      R"({"error":{"class":"CommandNotFound","desc":"The command nope has not been found"},"id":"x"})");
  EXPECT_EQ(ask(R"({"execute":"echo"})"),
            R"({"error":{"class":"GenericError","desc":"Parameter 'size' is missing"}})");
  EXPECT_EQ(
      ask(R"({"execute":"echo","arguments":{"size":"1"}})"),
      R"({"error":{"class":"GenericError","desc":"Invalid parameter type for 'size', expected: integer"}})");
  EXPECT_EQ(
      ask(R"({"execute":"echo","arguments":{"size":1,"mode":"soft"}})"),
      R"({"error":{"class":"GenericError","desc":"Parameter 'mode' does not accept value 'soft'"}})");
  EXPECT_EQ(ask(R"({"execute":"echo","arguments":{"size":1,"addr":{}}})"),
            R"({"error":{"class":"GenericError","desc":"Parameter 'addr.path' is missing"}})");
  EXPECT_EQ(ask(R"({"execute":"echo","arguments":{"size":1,"x":1}})"),
            R"({"error":{"class":"GenericError","desc":"Parameter 'x' is unexpected"}})");
  EXPECT_EQ(calls_, 0);
  EXPECT_EQ(ask(R"({"execute":"echo","arguments":{"size":5,"name":"n"},"id":[1]})"),
            R"({"return":{"size":5,"name":"n"},"id":[1]})");
  EXPECT_EQ(calls_, 1);
}

TEST_F(DispatcherTest, ParseErrorsBecomeGenericErrors) {
  Options reply = run_sync(
      *loop_,
      dispatcher_.dispatch(fail(Error::with_message(EINVAL, "JSON parse error, x")), session_));
  EXPECT_EQ(reply.dump(), R"({"error":{"class":"GenericError","desc":"JSON parse error, x"}})");
}

}  // namespace
}  // namespace qblock::qmp
