#include "drivers/host/fd_waiter.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "drivers/unique_fd.h"
#include "tests/fakes/fake_clock.h"

namespace vmlet::drivers {
namespace {

using std::chrono::hours;
using std::chrono::seconds;

class FdWaiterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int fds[2];
    ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
    read_ = UniqueFd(fds[0]);
    write_ = UniqueFd(fds[1]);
  }

  void Write() { ASSERT_EQ(::write(write_.get(), "x", 1), 1); }

  testing::FakeClock clock_;
  FdWaiter waiter_{clock_};
  UniqueFd read_;
  UniqueFd write_;
};

TEST_F(FdWaiterTest, ADeadlineTheClockHasReachedEndsTheWaitAtOnce) {
  api::StatusOr<bool> ready = waiter_.Wait(read_.get(), POLLIN, clock_.MonotonicNow());
  ASSERT_TRUE(ready.ok()) << ready.status();
  EXPECT_FALSE(*ready);
  EXPECT_FALSE(waiter_.WaitReadable(read_.get(), clock_.MonotonicNow() - seconds(1)));
}

TEST_F(FdWaiterTest, AReadyFdIsReadyEvenAtTheDeadline) {
  Write();
  api::StatusOr<bool> ready = waiter_.Wait(read_.get(), POLLIN, clock_.MonotonicNow());
  ASSERT_TRUE(ready.ok()) << ready.status();
  EXPECT_TRUE(*ready);
  EXPECT_TRUE(FdWaiter::IsReadable(read_.get()));
}

TEST_F(FdWaiterTest, ReadinessEndsAWaitLongBeforeItsDeadline) {
  bool ready = false;
  const FdWaiter::Deadline deadline = clock_.MonotonicNow() + hours(1);
  std::thread waiting([&] { ready = waiter_.WaitReadable(read_.get(), deadline); });
  Write();
  waiting.join();
  EXPECT_TRUE(ready);
}

}  // namespace
}  // namespace vmlet::drivers
