// QmpClient against a real QEMU (TCG) booting the test guest
// (tests/guest/build-guest, cached): stop, cont and quit, with the events
// they cause. tests/unit/drivers/qmp_client_test.cc holds the scripted-server
// tests.
//
// QEMU is started by VmletProcess and ended by its recorded pid. Every wait
// has a deadline. The test has its own temporary directory.

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/wait.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "drivers/host/real_clock.h"
#include "drivers/qemu/qmp_client.h"
#include "tests/support/files.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_guest.h"
#include "tests/support/vmlet_process.h"

namespace vmlet::drivers {
namespace {

using json = nlohmann::json;
using std::chrono::steady_clock;

constexpr auto kQemuDeadline = std::chrono::seconds(30);

class QmpClientQemuTest : public ::testing::Test {
 protected:
  std::string QemuLog() { return testing::ReadFile(tmp_ + "/qemu.log"); }

  RealClock clock_;
  const testing::TempDir tmp_dir_{"qmpq"};
  const std::string tmp_ = tmp_dir_.path();
  testing::VmletProcess qemu_;
};

TEST_F(QmpClientQemuTest, DrivesARealQemuThroughStopContAndQuit) {
  const testing::Guest& guest = testing::TestGuest();
  ASSERT_EQ(guest.error, "");
  const std::string sock = tmp_ + "/qmp.sock";
  ASSERT_EQ(qemu_.Start("qemu-system-x86_64",
                        {"-accel", "tcg", "-nodefaults", "-no-user-config", "-display", "none",
                         "-m", "256", "-kernel", guest.kernel, "-initrd", guest.initramfs,
                         "-append", "console=ttyS0", "-serial", "file:" + tmp_ + "/serial.log",
                         "-qmp", "unix:" + sock + ",server=on,wait=off", "-no-reboot"},
                        tmp_ + "/qemu.log"),
            "");

  // QEMU creates the socket shortly after start; retry while it is missing.
  const auto deadline = steady_clock::now() + kQemuDeadline;
  api::StatusOr<QmpClientPtr> connected = api::Status::Unavailable("not tried");
  while (steady_clock::now() < deadline) {
    connected = QmpClient::Connect(sock, clock_, deadline);
    if (connected.ok() || !connected.status().IsRetryable()) break;
    if (std::optional<int> status = qemu_.WaitForExit(std::chrono::milliseconds(0))) {
      FAIL() << "QEMU exited (status " << *status << ") before serving QMP:\n" << QemuLog();
    }
    ::poll(nullptr, 0, 20);  // back off between attempts
  }
  ASSERT_TRUE(connected.ok()) << connected.status() << "\n" << QemuLog();
  QmpClientPtr client = std::move(connected).value();

  api::StatusOr<json> status = client->Execute("query-status", nullptr, deadline);
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ((*status)["status"], "running");
  EXPECT_EQ((*status)["running"], true);

  api::StatusOr<json> stopped = client->Execute("stop", nullptr, deadline);
  ASSERT_TRUE(stopped.ok()) << stopped.status();
  EXPECT_EQ(*stopped, json::object());
  status = client->Execute("query-status", nullptr, deadline);
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ((*status)["status"], "paused");
  EXPECT_EQ((*status)["running"], false);
  std::vector<json> events = client->TakeEvents();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0]["event"], "STOP");

  api::StatusOr<json> resumed = client->Execute("cont", nullptr, deadline);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  status = client->Execute("query-status", nullptr, deadline);
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ((*status)["status"], "running");
  events = client->TakeEvents();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0]["event"], "RESUME");

  api::StatusOr<json> quit = client->Execute("quit", nullptr, deadline);
  ASSERT_TRUE(quit.ok()) << quit.status();
  std::optional<int> exit_status = qemu_.WaitForExit(
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady_clock::now()));
  ASSERT_TRUE(exit_status.has_value()) << "QEMU still running after quit";
  EXPECT_TRUE(WIFEXITED(*exit_status) && WEXITSTATUS(*exit_status) == 0) << *exit_status;
}

}  // namespace
}  // namespace vmlet::drivers
