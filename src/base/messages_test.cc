// The message sink: installing, receiving, restoring the default.
#include "qblock/messages.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

namespace qblock {
namespace {

TEST(Messages, SinkReceivesLevelAndTextAndIsReplacedBack) {
  std::vector<std::pair<MessageLevel, std::string>> got;
  MessageSink previous = set_message_sink(
      [&got](MessageLevel level, std::string_view text) { got.emplace_back(level, text); });
  emit_message(MessageLevel::kWarning, "qcow2: Image is corrupt: test");
  emit_message(MessageLevel::kInfo, "blkdebug: Suspended request 'a'");
  MessageSink mine = set_message_sink(std::move(previous));
  EXPECT_TRUE(static_cast<bool>(mine));
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].first, MessageLevel::kWarning);
  EXPECT_EQ(got[0].second, "qcow2: Image is corrupt: test");
  EXPECT_EQ(got[1].first, MessageLevel::kInfo);
  // Once replaced, the sink no longer sees messages.
  testing::internal::CaptureStderr();
  emit_message(MessageLevel::kError, "after");
  (void)testing::internal::GetCapturedStderr();
  EXPECT_EQ(got.size(), 2u);
}

TEST(Messages, DefaultSinkPrintsErrorsOnStderrWithANewline) {
  MessageSink previous = set_message_sink({});
  testing::internal::CaptureStderr();
  emit_message(MessageLevel::kError, "io_uring_submit: Bad address");
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "io_uring_submit: Bad address\n");
  testing::internal::CaptureStdout();
  emit_message(MessageLevel::kInfo, "blkdebug: Resuming request 'a'");
  EXPECT_EQ(testing::internal::GetCapturedStdout(), "blkdebug: Resuming request 'a'\n");
  set_message_sink(std::move(previous));
}

TEST(Messages, DiscardDropsEverythingUntilASinkIsInstalled) {
  std::vector<std::string> got;
  MessageSink previous =
      set_message_sink([&got](MessageLevel, std::string_view text) { got.emplace_back(text); });
  MessageSink mine = discard_messages();
  EXPECT_TRUE(messages_discarded());
  emit_message(MessageLevel::kWarning, "dropped");
  EXPECT_TRUE(got.empty());
  // The sink discard_messages() replaced comes back, and messages reach it again.
  MessageSink dropping = set_message_sink(std::move(mine));
  EXPECT_FALSE(messages_discarded());
  EXPECT_TRUE(static_cast<bool>(dropping));
  emit_message(MessageLevel::kWarning, "kept");
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], "kept");
  set_message_sink(std::move(previous));
}

}  // namespace
}  // namespace qblock
