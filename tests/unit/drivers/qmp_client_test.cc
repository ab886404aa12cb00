// QmpClient against a scripted fake QMP server (a thread listening on a Unix
// socket in a per-test temp dir); tests/integration/qmp_client_qemu_test.cc
// drives a real QEMU.
//
// The fake server plays a fixed script per test, so every test sees the same
// byte stream; where a test needs a reply split across reads it holds the
// rest back until the client has demonstrably consumed the first part.
// Every wait has a deadline.

#include "drivers/qemu/qmp_client.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "drivers/host/real_clock.h"
#include "drivers/unique_fd.h"
#include "tests/support/temp_dir.h"

namespace vmlet::drivers {
namespace {

using json = nlohmann::json;
using std::chrono::steady_clock;

// Bounds for waits that normally end at once; only a broken test reaches them.
constexpr auto kTestDeadline = std::chrono::seconds(10);

constexpr std::string_view kGreeting =
    R"({"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": ""},)"
    R"( "capabilities": ["oob"]}})"
    "\r\n";

steady_clock::time_point Soon() { return steady_clock::now() + kTestDeadline; }

// The server's end of one connection. Reads wait at most kTestDeadline.
class FakeQmpPeer {
 public:
  explicit FakeQmpPeer(UniqueFd fd) : fd_(std::move(fd)) {}

  // Writes `bytes` in one write.
  void Send(std::string_view bytes) {
    while (!bytes.empty()) {
      const ssize_t n = ::send(fd_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n < 0) {
        ADD_FAILURE() << "fake server send: " << std::strerror(errno);
        return;
      }
      bytes.remove_prefix(static_cast<size_t>(n));
    }
  }

  // Writes `bytes` one byte per write.
  void SendBytewise(std::string_view bytes) {
    for (char c : bytes) Send(std::string_view(&c, 1));
  }

  void SendJson(const json& msg) { Send(msg.dump() + "\r\n"); }

  // The next line the client sent, parsed; nullopt on EOF or deadline.
  std::optional<json> ReadCommand() {
    const auto deadline = Soon();
    for (;;) {
      if (const size_t nl = buffer_.find('\n'); nl != std::string::npos) {
        json msg = json::parse(buffer_.substr(0, nl), nullptr, false);
        buffer_.erase(0, nl + 1);
        return msg;
      }
      if (!Fill(deadline)) return std::nullopt;
    }
  }

  // Reads the client's qmp_capabilities and answers it. Returns its id.
  json ExpectCapabilities() {
    std::optional<json> cmd = ReadCommand();
    if (!cmd.has_value()) {
      ADD_FAILURE() << "no qmp_capabilities from the client";
      return nullptr;
    }
    EXPECT_EQ(cmd->value("execute", ""), "qmp_capabilities");
    EXPECT_TRUE(cmd->contains("id") && (*cmd)["id"].is_number_integer()) << cmd->dump();
    EXPECT_FALSE(cmd->contains("arguments")) << cmd->dump();
    SendJson({{"return", json::object()}, {"id", (*cmd)["id"]}});
    return (*cmd)["id"];
  }

  // Reads until the client closes the connection; false on deadline.
  bool WaitForClose() {
    const auto deadline = Soon();
    while (Fill(deadline)) buffer_.clear();
    return !timed_out_;
  }

 private:
  // Appends what the client sent next; false on EOF, error or deadline.
  bool Fill(steady_clock::time_point deadline) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - steady_clock::now());
    pollfd pfd{.fd = fd_.get(), .events = POLLIN, .revents = 0};
    if (left.count() <= 0 || ::poll(&pfd, 1, static_cast<int>(left.count())) != 1) {
      timed_out_ = true;
      return false;
    }
    char chunk[4096];
    const ssize_t n = ::recv(fd_.get(), chunk, sizeof(chunk), 0);
    if (n <= 0) return false;
    buffer_.append(chunk, static_cast<size_t>(n));
    return true;
  }

  UniqueFd fd_;
  std::string buffer_;
  bool timed_out_ = false;
};

// Listens on a Unix socket and plays one script against the first client.
class FakeQmpServer {
 public:
  using Script = std::function<void(FakeQmpPeer&)>;

  ~FakeQmpServer() { Join(); }

  // Listens on `path` (before returning, so a Connect cannot race it), then
  // accepts one client on a thread and runs `script`; the connection closes
  // when the script returns.
  void Start(const std::string& path, Script script) {
    listener_ = UniqueFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    ASSERT_TRUE(listener_.valid());
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    ASSERT_LT(path.size(), sizeof(addr.sun_path));
    std::memcpy(addr.sun_path, path.data(), path.size());
    ASSERT_EQ(::bind(listener_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0)
        << std::strerror(errno);
    ASSERT_EQ(::listen(listener_.get(), 1), 0);
    thread_ = std::thread([this, script = std::move(script)] {
      pollfd pfd{.fd = listener_.get(), .events = POLLIN, .revents = 0};
      if (::poll(&pfd, 1, static_cast<int>(std::chrono::milliseconds(kTestDeadline).count())) !=
          1) {
        ADD_FAILURE() << "no client connected to the fake QMP server";
        return;
      }
      FakeQmpPeer peer(UniqueFd(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC)));
      script(peer);
    });
  }

  void Join() {
    if (thread_.joinable()) thread_.join();
  }

 private:
  UniqueFd listener_;
  std::thread thread_;
};

class QmpClientTest : public ::testing::Test {
 protected:
  void SetUp() override { socket_path_ = tmp_ + "/qmp.sock"; }

  void TearDown() override { server_.Join(); }

  // Starts the fake server with greeting + handshake followed by `script`.
  void Serve(FakeQmpServer::Script script) {
    server_.Start(socket_path_, [script = std::move(script)](FakeQmpPeer& peer) {
      peer.Send(kGreeting);
      peer.ExpectCapabilities();
      script(peer);
    });
  }

  QmpClientPtr ConnectOrDie(QmpClient::EventHandler on_event = nullptr) {
    api::StatusOr<QmpClientPtr> client = QmpClient::Connect(socket_path_, clock_, Soon(), on_event);
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? std::move(client).value() : nullptr;
  }

  RealClock clock_;
  const testing::TempDir tmp_dir_{"qmp"};
  const std::string tmp_ = tmp_dir_.path();
  std::string socket_path_;
  FakeQmpServer server_;
};

TEST_F(QmpClientTest, ConnectReadsGreetingAndNegotiatesCapabilities) {
  json caps_id;
  bool closed_by_client = false;
  server_.Start(socket_path_, [&](FakeQmpPeer& peer) {
    peer.Send(kGreeting);
    caps_id = peer.ExpectCapabilities();
    closed_by_client = peer.WaitForClose();
  });

  QmpClientPtr client = ConnectOrDie();
  ASSERT_NE(client, nullptr);
  EXPECT_FALSE(client->closed());
  EXPECT_TRUE(client->TakeEvents().empty());
  client.reset();
  server_.Join();
  EXPECT_TRUE(caps_id.is_number_integer());
  EXPECT_TRUE(closed_by_client);
}

TEST_F(QmpClientTest, ExecuteReturnsTheReturnValueOfTheReplyWithItsId) {
  std::vector<json> received;
  Serve([&](FakeQmpPeer& peer) {
    for (int i = 0; i < 2; ++i) {
      std::optional<json> cmd = peer.ReadCommand();
      if (!cmd.has_value()) return;
      received.push_back(*cmd);
      if ((*cmd)["execute"] == "query-status") {
        peer.SendJson(
            {{"return", {{"status", "running"}, {"running", true}}}, {"id", (*cmd)["id"]}});
      } else {
        peer.SendJson({{"return", "ok\r\n"}, {"id", (*cmd)["id"]}});
      }
    }
  });
  QmpClientPtr client = ConnectOrDie();
  ASSERT_NE(client, nullptr);

  api::StatusOr<json> status = client->Execute("query-status", nullptr, Soon());
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(*status, json({{"status", "running"}, {"running", true}}));

  api::StatusOr<json> hmp =
      client->Execute("human-monitor-command", {{"command-line", "info version"}}, Soon());
  ASSERT_TRUE(hmp.ok()) << hmp.status();
  EXPECT_EQ(*hmp, json("ok\r\n"));

  client.reset();
  server_.Join();
  ASSERT_EQ(received.size(), 2u);
  EXPECT_FALSE(received[0].contains("arguments"));
  EXPECT_EQ(received[1]["arguments"], json({{"command-line", "info version"}}));
  ASSERT_TRUE(received[0]["id"].is_number_integer());
  ASSERT_TRUE(received[1]["id"].is_number_integer());
  EXPECT_NE(received[0]["id"], received[1]["id"]);
}

TEST_F(QmpClientTest, EventBeforeReplyIsCollectedAndTheReplyStillReturned) {
  const json stop_event = {{"event", "STOP"},
                           {"timestamp", {{"seconds", 1700000000}, {"microseconds", 5}}}};
  Serve([&](FakeQmpPeer& peer) {
    std::optional<json> cmd = peer.ReadCommand();
    if (!cmd.has_value()) return;
    peer.SendJson(stop_event);
    peer.SendJson({{"return", json::object()}, {"id", (*cmd)["id"]}});
  });
  std::vector<json> handled;
  QmpClientPtr client = ConnectOrDie([&](const json& event) { handled.push_back(event); });
  ASSERT_NE(client, nullptr);

  api::StatusOr<json> result = client->Execute("stop", nullptr, Soon());
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(*result, json::object());
  EXPECT_EQ(handled, std::vector<json>{stop_event});
  EXPECT_EQ(client->TakeEvents(), std::vector<json>{stop_event});
  EXPECT_TRUE(client->TakeEvents().empty());
}

TEST_F(QmpClientTest, CrlfReplySplitAcrossManyWritesIsReassembled) {
  // The server sends an event and the first half of the reply in one write,
  // waits until the client has handled the event (so it has read that write
  // and holds half a line), then sends the rest one byte per write.
  std::promise<void> event_handled;
  std::future<void> event_handled_future = event_handled.get_future();
  Serve([&](FakeQmpPeer& peer) {
    std::optional<json> cmd = peer.ReadCommand();
    if (!cmd.has_value()) return;
    const std::string reply =
        json({{"return", {{"status", "paused"}, {"running", false}}}, {"id", (*cmd)["id"]}})
            .dump() +
        "\r\n";
    const size_t half = reply.size() / 2;
    peer.Send(R"({"event": "RESUME", "timestamp": {"seconds": 1, "microseconds": 2}})"
              "\r\n" +
              reply.substr(0, half));
    if (event_handled_future.wait_for(kTestDeadline) != std::future_status::ready) {
      ADD_FAILURE() << "client did not handle the event";
      return;
    }
    peer.SendBytewise(reply.substr(half));
  });
  QmpClientPtr client = ConnectOrDie([&](const json&) { event_handled.set_value(); });
  ASSERT_NE(client, nullptr);

  api::StatusOr<json> result = client->Execute("query-status", nullptr, Soon());
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(*result, json({{"status", "paused"}, {"running", false}}));
  std::vector<json> events = client->TakeEvents();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0]["event"], "RESUME");
}

TEST_F(QmpClientTest, ReplyWithAnotherIdIsIgnored) {
  Serve([&](FakeQmpPeer& peer) {
    std::optional<json> cmd = peer.ReadCommand();
    if (!cmd.has_value()) return;
    const int64_t id = (*cmd)["id"].get<int64_t>();
    peer.SendJson({{"return", "stale"}, {"id", id + 1000}});
    peer.SendJson({{"error", {{"class", "GenericError"}, {"desc", "unparsable"}}}});
    peer.SendJson({{"return", "mine"}, {"id", id}});
  });
  QmpClientPtr client = ConnectOrDie();
  ASSERT_NE(client, nullptr);

  api::StatusOr<json> result = client->Execute("query-version", nullptr, Soon());
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(*result, json("mine"));
}

TEST_F(QmpClientTest, ErrorReplyIsFailedPreconditionWithClassAndDesc) {
  Serve([&](FakeQmpPeer& peer) {
    std::optional<json> cmd = peer.ReadCommand();
    if (!cmd.has_value()) return;
    peer.SendJson(
        {{"error",
          {{"class", "GenericError"}, {"desc", "Resetting the Virtual Machine is required"}}},
         {"id", (*cmd)["id"]}});
  });
  QmpClientPtr client = ConnectOrDie();
  ASSERT_NE(client, nullptr);

  api::StatusOr<json> result = client->Execute("cont", nullptr, Soon());
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status(), api::Status::FailedPrecondition(
                                 "GenericError: Resetting the Virtual Machine is required"));
}

TEST_F(QmpClientTest, EofBeforeReplyIsUnavailableNowAndForLaterCommands) {
  Serve([&](FakeQmpPeer& peer) { (void)peer.ReadCommand(); });  // then closes
  QmpClientPtr client = ConnectOrDie();
  ASSERT_NE(client, nullptr);

  api::StatusOr<json> result = client->Execute("query-status", nullptr, Soon());
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status(), api::Status::Unavailable("QMP connection closed"));
  EXPECT_TRUE(client->closed());

  api::StatusOr<json> again = client->Execute("query-status", nullptr, Soon());
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status(), api::Status::Unavailable("QMP connection closed"));
}

TEST_F(QmpClientTest, QuitAnsweredByEofBeforeReplySucceeds) {
  std::string quit_command;
  Serve([&](FakeQmpPeer& peer) {
    std::optional<json> cmd = peer.ReadCommand();
    if (cmd.has_value()) quit_command = cmd->value("execute", "");
    // QEMU announces SHUTDOWN and exits before writing the reply.
    peer.SendJson(
        {{"event", "SHUTDOWN"}, {"data", {{"guest", false}, {"reason", "host-qmp-quit"}}}});
  });
  QmpClientPtr client = ConnectOrDie();
  ASSERT_NE(client, nullptr);

  api::StatusOr<json> result = client->Execute("quit", nullptr, Soon());
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(*result, json::object());
  EXPECT_TRUE(client->closed());
  std::vector<json> events = client->TakeEvents();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0]["data"]["reason"], "host-qmp-quit");
  server_.Join();
  EXPECT_EQ(quit_command, "quit");
}

TEST_F(QmpClientTest, ExecuteWithoutReplyFailsWithDeadlineExceededAtTheDeadline) {
  Serve([&](FakeQmpPeer& peer) {
    (void)peer.ReadCommand();
    EXPECT_TRUE(peer.WaitForClose());  // never answers
  });
  QmpClientPtr client = ConnectOrDie();
  ASSERT_NE(client, nullptr);

  const auto deadline = steady_clock::now() + std::chrono::milliseconds(200);
  api::StatusOr<json> result = client->Execute("query-status", nullptr, deadline);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), api::Status::Code::kDeadlineExceeded) << result.status();
  EXPECT_GE(steady_clock::now(), deadline);
  EXPECT_FALSE(client->closed());
}

TEST_F(QmpClientTest, ConnectWithoutGreetingFailsWithDeadlineExceeded) {
  server_.Start(socket_path_, [](FakeQmpPeer& peer) { EXPECT_TRUE(peer.WaitForClose()); });

  api::StatusOr<QmpClientPtr> client = QmpClient::Connect(
      socket_path_, clock_, steady_clock::now() + std::chrono::milliseconds(200));
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(client.status().code(), api::Status::Code::kDeadlineExceeded) << client.status();
}

TEST_F(QmpClientTest, ConnectWithMalformedGreetingFailsWithInternal) {
  server_.Start(socket_path_, [](FakeQmpPeer& peer) { peer.Send("{\"hello\": 1}\r\n"); });

  api::StatusOr<QmpClientPtr> client = QmpClient::Connect(socket_path_, clock_, Soon());
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(client.status().code(), api::Status::Code::kInternal) << client.status();
}

TEST_F(QmpClientTest, ConnectToMissingSocketIsUnavailableAndRetryable) {
  api::StatusOr<QmpClientPtr> client = QmpClient::Connect(tmp_ + "/absent.sock", clock_, Soon());
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(client.status().code(), api::Status::Code::kUnavailable) << client.status();
  EXPECT_TRUE(client.status().IsRetryable());
}

}  // namespace
}  // namespace vmlet::drivers
