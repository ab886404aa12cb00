// QmpClient's deadlines are on the clock it is given: with a fake clock, a
// server that does not answer fails the call as soon as the clock has
// reached the deadline, and nothing in the test sleeps.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>

#include "drivers/qemu/qmp_client.h"
#include "drivers/unique_fd.h"
#include "tests/fakes/fake_clock.h"

namespace vmlet::drivers {
namespace {

using std::chrono::seconds;

// A QMP socket whose server accepts connections (the kernel's backlog) but
// never says anything.
class SilentQmpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/vmlet-qmpd-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    dir_ = dir;
    socket_path_ = dir_ + "/qmp.sock";
    listener_ = UniqueFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    ASSERT_TRUE(listener_.valid());
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, socket_path_.data(), socket_path_.size());
    ASSERT_EQ(::bind(listener_.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0);
    ASSERT_EQ(::listen(listener_.get(), 4), 0);
  }
  void TearDown() override {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  testing::FakeClock clock_;
  std::string dir_;
  std::string socket_path_;
  UniqueFd listener_;
};

TEST_F(SilentQmpServerTest, ConnectAtItsDeadlineFailsAtOnceWithDeadlineExceeded) {
  api::StatusOr<QmpClientPtr> client =
      QmpClient::Connect(socket_path_, clock_, clock_.MonotonicNow());
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(client.status(), api::Status::DeadlineExceeded("no QMP greeting before the deadline"));
}

TEST_F(SilentQmpServerTest, ExecuteAtItsDeadlineFailsAtOnceWithDeadlineExceeded) {
  // This server greets and completes the handshake, then answers nothing.
  std::thread server([&] {
    UniqueFd peer(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    ASSERT_TRUE(peer.valid());
    const std::string greeting = "{\"QMP\": {\"version\": {}, \"capabilities\": []}}\r\n";
    ASSERT_EQ(::send(peer.get(), greeting.data(), greeting.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(greeting.size()));
    std::string line;
    char c;
    while (::recv(peer.get(), &c, 1, 0) == 1 && c != '\n') line += c;
    ASSERT_NE(line.find("qmp_capabilities"), std::string::npos) << line;
    const std::string reply = "{\"return\": {}, \"id\": 1}\r\n";
    ASSERT_EQ(::send(peer.get(), reply.data(), reply.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(reply.size()));
    while (::recv(peer.get(), &c, 1, 0) == 1) {
    }  // until the client closes
  });
  api::StatusOr<QmpClientPtr> client =
      QmpClient::Connect(socket_path_, clock_, clock_.MonotonicNow() + seconds(30));
  ASSERT_TRUE(client.ok()) << client.status();

  clock_.Advance(seconds(30));
  api::StatusOr<nlohmann::json> result =
      (*client)->Execute("query-status", nullptr, clock_.MonotonicNow());
  EXPECT_EQ(result.status(),
            api::Status::DeadlineExceeded("no reply to QMP command query-status before the "
                                          "deadline"));
  client = api::Status::Unavailable("closed");
  server.join();
}

}  // namespace
}  // namespace vmlet::drivers
