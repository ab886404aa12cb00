#include "drivers/host/ready_marker_watcher.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tests/fakes/fake_clock.h"
#include "tests/support/temp_dir.h"

namespace vmlet::drivers {
namespace {

using testing::FakeClock;
using Ready = ReadyMarkerWatcher::Ready;

// How long a test waits for the watcher's thread before it fails.
constexpr auto kDeadline = std::chrono::seconds(10);

std::optional<std::string> Parse(std::string_view line) {
  return ReadyMarkerWatcher::ParseMarkerLine(line);
}

// ---------------------------------------------------------------------------
// The parser.

TEST(ReadyMarkerParseTest, AcceptsAMarkerWithAnIpv4Address) {
  EXPECT_EQ(Parse("VMRS_READY 10.0.0.7"), "10.0.0.7");
}

TEST(ReadyMarkerParseTest, AcceptsAMarkerWithAnIpv6Address) {
  EXPECT_EQ(Parse("VMRS_READY fd00::7"), "fd00::7");
  EXPECT_EQ(Parse("VMRS_READY 2001:db8::1"), "2001:db8::1");
}

TEST(ReadyMarkerParseTest, AcceptsTabsAndSpacesAroundTheToken) {
  EXPECT_EQ(Parse("VMRS_READY\t \t10.0.0.7 \t "), "10.0.0.7");
}

TEST(ReadyMarkerParseTest, AcceptsConsoleNoiseBeforeTheMarkerWord) {
  EXPECT_EQ(Parse("[    3.141] cloud-init[1]: VMRS_READY 10.0.0.7"), "10.0.0.7");
  EXPECT_EQ(Parse("\tVMRS_READY 10.0.0.7"), "10.0.0.7");
  EXPECT_EQ(Parse("\rVMRS_READY 10.0.0.7"), "10.0.0.7");
  EXPECT_EQ(Parse("xVMRS_READY VMRS_READY 10.0.0.7"), "10.0.0.7");
}

TEST(ReadyMarkerParseTest, RejectsAMarkerWithoutAToken) {
  EXPECT_EQ(Parse("VMRS_READY"), std::nullopt);
  EXPECT_EQ(Parse("VMRS_READY "), std::nullopt);
  EXPECT_EQ(Parse("VMRS_READY \t "), std::nullopt);
}

TEST(ReadyMarkerParseTest, RejectsATruncatedAddress) {
  EXPECT_EQ(Parse("VMRS_READY 10.0."), std::nullopt);
  EXPECT_EQ(Parse("VMRS_READY 10.0.0"), std::nullopt);
  EXPECT_EQ(Parse("VMRS_READY fd00:"), std::nullopt);
}

TEST(ReadyMarkerParseTest, RejectsAnAddressOutOfRange) {
  EXPECT_EQ(Parse("VMRS_READY 999.1.1.1"), std::nullopt);
  EXPECT_EQ(Parse("VMRS_READY 10.0.0.256"), std::nullopt);
}

TEST(ReadyMarkerParseTest, RejectsATokenThatIsNoPlainAddress) {
  EXPECT_EQ(Parse("VMRS_READY [init]"), std::nullopt);
  EXPECT_EQ(Parse("VMRS_READY localhost"), std::nullopt);
  EXPECT_EQ(Parse("VMRS_READY [::1]"), std::nullopt);
  EXPECT_EQ(Parse("VMRS_READY fe80::1%eth0"), std::nullopt);
  EXPECT_EQ(Parse("VMRS_READY 10.0.0.7:22"), std::nullopt);
  EXPECT_EQ(Parse("VMRS_READY 10.0.0.7/24"), std::nullopt);
}

TEST(ReadyMarkerParseTest, RejectsATokenWithANulByte) {
  EXPECT_EQ(Parse(std::string_view("VMRS_READY 10.0.0.7\0x", 21)), std::nullopt);
}

TEST(ReadyMarkerParseTest, RejectsTwoTokens) {
  EXPECT_EQ(Parse("VMRS_READY 10.0.0.7 10.0.0.8"), std::nullopt);
  EXPECT_EQ(Parse("VMRS_READY 10.0.0.7 ok"), std::nullopt);
}

TEST(ReadyMarkerParseTest, RejectsAMarkerThatIsNotAWholeWord) {
  EXPECT_EQ(Parse("VMRS_READYX 1.2.3.4"), std::nullopt);
  EXPECT_EQ(Parse("xVMRS_READY 1.2.3.4"), std::nullopt);
  EXPECT_EQ(Parse("VMRS_READY:1.2.3.4"), std::nullopt);
  EXPECT_EQ(Parse("VMRS_READY1.2.3.4"), std::nullopt);
}

// ---------------------------------------------------------------------------
// The watcher, on real files in a per-test temporary directory.

class ReadyMarkerWatcherTest : public ::testing::Test {
 protected:
  void TearDown() override { watcher_.Stop(); }

  // Makes the directory of VM `name` with a serial.log holding `content`, and
  // returns the directory.
  std::string MakeVm(const std::string& name, std::string_view content = "") {
    const std::string vm_dir = tmp_ + "/" + name;
    std::filesystem::create_directories(vm_dir);
    WriteFile(Log(vm_dir), content);
    return vm_dir;
  }

  // Makes VM `name` and watches its serial.log.
  std::string WatchNewVm(const std::string& name, std::string_view content = "") {
    const std::string vm_dir = MakeVm(name, content);
    const api::Status status = watcher_.Watch(vm_dir, Log(vm_dir));
    EXPECT_TRUE(status.ok()) << status;
    return vm_dir;
  }

  static std::string Log(const std::string& vm_dir) { return vm_dir + "/serial.log"; }

  // Creates or truncates `path` (O_TRUNC, as a VMM re-opening it) and writes
  // `content`.
  static void WriteFile(const std::string& path, std::string_view content) {
    Write(path, O_WRONLY | O_CREAT | O_TRUNC, content);
  }
  // Appends `bytes` in one write, as a VMM's serial device does.
  static void Append(const std::string& path, std::string_view bytes) {
    Write(path, O_WRONLY | O_APPEND, bytes);
  }

  static void Write(const std::string& path, int flags, std::string_view bytes) {
    const int fd = ::open(path.c_str(), flags | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0) << path;
    while (!bytes.empty()) {
      const ssize_t n = ::write(fd, bytes.data(), bytes.size());
      ASSERT_GT(n, 0) << path;
      bytes.remove_prefix(static_cast<size_t>(n));
    }
    ::close(fd);
  }

  void StartWatcher() {
    const api::Status status =
        watcher_.Start([this](const std::string& vm_dir) { Record(vm_dir); });
    ASSERT_TRUE(status.ok()) << status;
  }

  void Record(const std::string& vm_dir) {
    std::lock_guard lock(mu_);
    calls_.push_back(vm_dir);
    cv_.notify_all();
  }

  // Waits, up to kDeadline, until the listener has been called for `vm_dir`.
  bool AwaitCall(const std::string& vm_dir) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, kDeadline, [&] {
      for (const std::string& call : calls_) {
        if (call == vm_dir) return true;
      }
      return false;
    });
  }

  std::vector<std::string> Calls() {
    std::lock_guard lock(mu_);
    return calls_;
  }

  const testing::TempDir tmp_dir_{"ready"};
  const std::string tmp_ = tmp_dir_.path();
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> calls_;  // guarded by mu_: the listener's calls, in order

  FakeClock clock_;
  const api::Clock::MonotonicTime start_ = clock_.MonotonicNow();
  ReadyMarkerWatcher watcher_{clock_};  // last: stopped before what its listener uses
};

TEST_F(ReadyMarkerWatcherTest, WatchOfAFileHoldingTheMarkerIsReadyAtOnce) {
  const std::string vm = MakeVm("a", "boot noise\nVMRS_READY 10.0.0.7\nlogin: ");
  clock_.Advance(std::chrono::seconds(5));
  ASSERT_TRUE(watcher_.Watch(vm, Log(vm)).ok());
  clock_.Advance(std::chrono::seconds(1));
  EXPECT_EQ(watcher_.Poll(vm), (Ready{"10.0.0.7", start_ + std::chrono::seconds(5)}));
}

TEST_F(ReadyMarkerWatcherTest, EmptyFileIsNotReady) {
  const std::string vm = WatchNewVm("a");
  EXPECT_EQ(watcher_.Poll(vm), std::nullopt);
}

TEST_F(ReadyMarkerWatcherTest, HalfWrittenLineIsNotReadyUntilItsNewline) {
  const std::string vm = WatchNewVm("a");
  Append(Log(vm), "VMRS_READY 10.0.");
  EXPECT_EQ(watcher_.Poll(vm), std::nullopt);
  Append(Log(vm), "0.7");
  EXPECT_EQ(watcher_.Poll(vm), std::nullopt);
  clock_.Advance(std::chrono::seconds(2));
  Append(Log(vm), "\n");
  EXPECT_EQ(watcher_.Poll(vm), (Ready{"10.0.0.7", start_ + std::chrono::seconds(2)}));
}

TEST_F(ReadyMarkerWatcherTest, HalfWrittenAddressIsNeverAccepted) {
  const std::string vm = WatchNewVm("a");
  Append(Log(vm), "VMRS_READY 10.0.");
  EXPECT_EQ(watcher_.Poll(vm), std::nullopt);
  Append(Log(vm), "\n[init] ready\n");
  EXPECT_EQ(watcher_.Poll(vm), std::nullopt);
}

TEST_F(ReadyMarkerWatcherTest, MarkerWrittenOneByteAtATimeIsFoundWhenItsLineEnds) {
  const std::string vm = WatchNewVm("a");
  const std::string line = "VMRS_READY 10.0.0.7\r\n";
  for (size_t i = 0; i + 1 < line.size(); ++i) {
    Append(Log(vm), line.substr(i, 1));
    EXPECT_EQ(watcher_.Poll(vm), std::nullopt) << "after " << i + 1 << " bytes";
  }
  Append(Log(vm), "\n");
  EXPECT_EQ(watcher_.Poll(vm), (Ready{"10.0.0.7", start_}));
}

TEST_F(ReadyMarkerWatcherTest, CarriageReturnBeforeTheNewlineIsDropped) {
  const std::string vm = WatchNewVm("a", "VMRS_READY fd00::7\r\n");
  EXPECT_EQ(watcher_.Poll(vm), (Ready{"fd00::7", start_}));
}

TEST_F(ReadyMarkerWatcherTest, MarkerWithoutATokenNeverTakesTheNextLinesToken) {
  const std::string vm = WatchNewVm("a", "VMRS_READY \n[init] ready\nVMRS_READY\n10.0.0.7\n");
  EXPECT_EQ(watcher_.Poll(vm), std::nullopt);
}

TEST_F(ReadyMarkerWatcherTest, InvalidMarkersBeforeAValidOneAreSkipped) {
  const std::string vm =
      WatchNewVm("a", "VMRS_READY [init]\nVMRS_READY 10.0.\nVMRS_READY 10.0.0.9\n");
  EXPECT_EQ(watcher_.Poll(vm), (Ready{"10.0.0.9", start_}));
}

TEST_F(ReadyMarkerWatcherTest, FirstValidMarkerWinsAndKeepsItsTime) {
  const std::string vm = WatchNewVm("a", "VMRS_READY 10.0.0.1\nVMRS_READY 10.0.0.2\n");
  EXPECT_EQ(watcher_.Poll(vm), (Ready{"10.0.0.1", start_}));
  clock_.Advance(std::chrono::seconds(3));
  Append(Log(vm), "VMRS_READY 10.0.0.3\n");
  EXPECT_EQ(watcher_.Poll(vm), (Ready{"10.0.0.1", start_}));
}

TEST_F(ReadyMarkerWatcherTest, LineOfExactlyTheCapIsScanned) {
  std::string line = "VMRS_READY 10.0.0.7";
  line.resize(ReadyMarkerWatcher::kMaxLineBytes, ' ');
  const std::string vm = WatchNewVm("a", line + "\n");
  EXPECT_EQ(watcher_.Poll(vm), (Ready{"10.0.0.7", start_}));
}

TEST_F(ReadyMarkerWatcherTest, LineLongerThanTheCapIsDiscardedThroughItsNewline) {
  std::string line = "VMRS_READY 10.0.0.7";
  line.resize(ReadyMarkerWatcher::kMaxLineBytes + 1, ' ');
  const std::string vm = WatchNewVm("a", line + "\n");
  EXPECT_EQ(watcher_.Poll(vm), std::nullopt);
  Append(Log(vm), "VMRS_READY 10.0.0.8\n");
  EXPECT_EQ(watcher_.Poll(vm), (Ready{"10.0.0.8", start_}));
}

TEST_F(ReadyMarkerWatcherTest, TailOfAnOverlongLineNeverMatches) {
  const std::string vm = WatchNewVm("a", std::string(3 * ReadyMarkerWatcher::kMaxLineBytes, 'x'));
  EXPECT_EQ(watcher_.Poll(vm), std::nullopt);
  Append(Log(vm), " VMRS_READY 10.0.0.7\n");
  EXPECT_EQ(watcher_.Poll(vm), std::nullopt);
}

TEST_F(ReadyMarkerWatcherTest, MarkerAcrossAReadChunkBoundaryIsFound) {
  // Noise lines up to 6 bytes before the chunk boundary, then the marker.
  std::string content;
  const std::string noise = std::string(99, 'n') + "\n";
  while (content.size() + noise.size() <= ReadyMarkerWatcher::kReadChunkBytes - 6) {
    content += noise;
  }
  content += std::string(ReadyMarkerWatcher::kReadChunkBytes - 6 - content.size() - 1, 'm') + "\n";
  ASSERT_EQ(content.size(), ReadyMarkerWatcher::kReadChunkBytes - 6);
  content += "VMRS_READY 10.0.0.7\n";
  const std::string vm = WatchNewVm("a", content);
  EXPECT_EQ(watcher_.Poll(vm), (Ready{"10.0.0.7", start_}));
}

TEST_F(ReadyMarkerWatcherTest, MarkerAfterManyChunksOfNoiseIsFound) {
  std::string content;
  const std::string noise = std::string(999, 'n') + "\n";
  while (content.size() < 4 * ReadyMarkerWatcher::kReadChunkBytes) content += noise;
  const std::string vm = WatchNewVm("a", content + "VMRS_READY 10.0.0.7\n");
  EXPECT_EQ(watcher_.Poll(vm), (Ready{"10.0.0.7", start_}));
}

TEST_F(ReadyMarkerWatcherTest, TruncatedFileForgetsTheStaleMarker) {
  const std::string vm = WatchNewVm("a", "VMRS_READY 10.0.0.1\n");
  EXPECT_EQ(watcher_.Poll(vm), (Ready{"10.0.0.1", start_}));
  WriteFile(Log(vm), "");
  EXPECT_EQ(watcher_.Poll(vm), std::nullopt);
  clock_.Advance(std::chrono::seconds(3));
  Append(Log(vm), "VMRS_READY 10.0.0.2\n");
  EXPECT_EQ(watcher_.Poll(vm), (Ready{"10.0.0.2", start_ + std::chrono::seconds(3)}));
}

TEST_F(ReadyMarkerWatcherTest, TruncatedFileIsReadAgainFromTheStart) {
  const std::string vm = WatchNewVm("a", "noise noise noise noise\n");
  EXPECT_EQ(watcher_.Poll(vm), std::nullopt);
  WriteFile(Log(vm), "VMRS_READY 10.0.0.2\n");  // shorter than what was read
  EXPECT_EQ(watcher_.Poll(vm), (Ready{"10.0.0.2", start_}));
}

TEST_F(ReadyMarkerWatcherTest, TruncationDiscardsThePartialLine) {
  const std::string vm = WatchNewVm("a", "VMRS_READY 10.0");
  EXPECT_EQ(watcher_.Poll(vm), std::nullopt);
  WriteFile(Log(vm), "");
  EXPECT_EQ(watcher_.Poll(vm), std::nullopt);
  Append(Log(vm), ".0.9\n");
  EXPECT_EQ(watcher_.Poll(vm), std::nullopt);
}

TEST_F(ReadyMarkerWatcherTest, RemovedFileKeepsItsState) {
  const std::string vm = WatchNewVm("a", "VMRS_READY 10.0.0.1\n");
  ASSERT_EQ(::unlink(Log(vm).c_str()), 0);
  EXPECT_EQ(watcher_.Poll(vm), (Ready{"10.0.0.1", start_}));
}

TEST_F(ReadyMarkerWatcherTest, ReplacedFileIsNotReadUntilWatchedAgain) {
  const std::string vm = WatchNewVm("a", "VMRS_READY 10.0");
  EXPECT_EQ(watcher_.Poll(vm), std::nullopt);
  // Read on from the old offset with the old partial line, the new file
  // would complete "VMRS_READY 10.0" + ".0.2".
  WriteFile(vm + "/serial.log.new", "VMRS_READY 10.0.0.2\n");
  ASSERT_EQ(::rename((vm + "/serial.log.new").c_str(), Log(vm).c_str()), 0);
  EXPECT_EQ(watcher_.Poll(vm), std::nullopt);

  clock_.Advance(std::chrono::seconds(1));
  ASSERT_TRUE(watcher_.Watch(vm, Log(vm)).ok());
  EXPECT_EQ(watcher_.Poll(vm), (Ready{"10.0.0.2", start_ + std::chrono::seconds(1)}));
}

TEST_F(ReadyMarkerWatcherTest, WatchAgainStartsAfresh) {
  const std::string vm = WatchNewVm("a", "VMRS_READY 10.0.0.1\n");
  EXPECT_EQ(watcher_.Poll(vm), (Ready{"10.0.0.1", start_}));
  const std::string other = MakeVm("b", "VMRS_READY 10.0.0.2\n");
  clock_.Advance(std::chrono::seconds(7));
  ASSERT_TRUE(watcher_.Watch(vm, Log(other)).ok());
  EXPECT_EQ(watcher_.Poll(vm), (Ready{"10.0.0.2", start_ + std::chrono::seconds(7)}));
}

TEST_F(ReadyMarkerWatcherTest, TwoVmsDoNotMix) {
  const std::string a = WatchNewVm("a");
  const std::string b = WatchNewVm("b");
  Append(Log(a), "VMRS_READY 10.0");
  Append(Log(b), ".0.9\n");
  EXPECT_EQ(watcher_.Poll(a), std::nullopt);
  EXPECT_EQ(watcher_.Poll(b), std::nullopt);

  Append(Log(a), ".0.1\n");
  clock_.Advance(std::chrono::seconds(1));
  Append(Log(b), "VMRS_READY 10.0.0.2\n");
  EXPECT_EQ(watcher_.Poll(b), (Ready{"10.0.0.2", start_ + std::chrono::seconds(1)}));
  EXPECT_EQ(watcher_.Poll(a), (Ready{"10.0.0.1", start_ + std::chrono::seconds(1)}));
}

TEST_F(ReadyMarkerWatcherTest, PollOfAVmNotWatchedIsEmpty) {
  EXPECT_EQ(watcher_.Poll(tmp_ + "/nobody"), std::nullopt);
}

TEST_F(ReadyMarkerWatcherTest, UnwatchForgetsTheVmAndIsIdempotent) {
  const std::string vm = WatchNewVm("a", "VMRS_READY 10.0.0.1\n");
  watcher_.Unwatch(vm);
  EXPECT_EQ(watcher_.Poll(vm), std::nullopt);
  watcher_.Unwatch(vm);
  EXPECT_EQ(watcher_.Poll(vm), std::nullopt);
}

TEST_F(ReadyMarkerWatcherTest, WatchOfAMissingFileIsNotFound) {
  const api::Status status = watcher_.Watch(tmp_ + "/a", tmp_ + "/a/serial.log");
  EXPECT_EQ(status.code(), api::Status::Code::kNotFound) << status;
  EXPECT_EQ(watcher_.Poll(tmp_ + "/a"), std::nullopt);
}

TEST_F(ReadyMarkerWatcherTest, FailedWatchDropsThePreviousWatch) {
  const std::string vm = WatchNewVm("a", "VMRS_READY 10.0.0.1\n");
  const api::Status status = watcher_.Watch(vm, vm + "/missing.log");
  EXPECT_EQ(status.code(), api::Status::Code::kNotFound) << status;
  EXPECT_EQ(watcher_.Poll(vm), std::nullopt);
}

TEST_F(ReadyMarkerWatcherTest, WatchOfADirectoryIsInvalidArgument) {
  const std::string vm = MakeVm("a");
  const api::Status status = watcher_.Watch(vm, vm);
  EXPECT_EQ(status.code(), api::Status::Code::kInvalidArgument) << status;
}

TEST_F(ReadyMarkerWatcherTest, WatchOfAnUnreadableFileIsPermissionDenied) {
  if (::geteuid() == 0) GTEST_SKIP() << "root reads any file";
  const std::string vm = MakeVm("a", "VMRS_READY 10.0.0.1\n");
  ASSERT_EQ(::chmod(Log(vm).c_str(), 0), 0);
  const api::Status status = watcher_.Watch(vm, Log(vm));
  EXPECT_EQ(status.code(), api::Status::Code::kPermissionDenied) << status;
}

// ---------------------------------------------------------------------------
// With the thread: inotify drives reads and listener calls.

TEST_F(ReadyMarkerWatcherTest, StartTwiceIsFailedPrecondition) {
  StartWatcher();
  const api::Status status = watcher_.Start([](const std::string&) {});
  EXPECT_EQ(status.code(), api::Status::Code::kFailedPrecondition) << status;
}

TEST_F(ReadyMarkerWatcherTest, MarkerWrittenAfterWatchCallsTheListenerOnce) {
  StartWatcher();
  const std::string a = WatchNewVm("a", "booting\n");
  const std::string b = WatchNewVm("b");
  clock_.Advance(std::chrono::seconds(4));
  Append(Log(a), "VMRS_READY 10.0.0.1\n");
  ASSERT_TRUE(AwaitCall(a)) << "no listener call within the deadline";
  EXPECT_EQ(watcher_.Poll(a), (Ready{"10.0.0.1", start_ + std::chrono::seconds(4)}));

  // Another marker for a is not reported again; b's, written after it, is.
  Append(Log(a), "VMRS_READY 10.0.0.3\n");
  Append(Log(b), "VMRS_READY 10.0.0.2\n");
  ASSERT_TRUE(AwaitCall(b)) << "no listener call within the deadline";
  EXPECT_EQ(Calls(), (std::vector<std::string>{a, b}));
  EXPECT_EQ(watcher_.Poll(a), (Ready{"10.0.0.1", start_ + std::chrono::seconds(4)}));
  EXPECT_EQ(watcher_.Poll(b), (Ready{"10.0.0.2", start_ + std::chrono::seconds(4)}));
}

TEST_F(ReadyMarkerWatcherTest, MarkerSplitAcrossWritesIsReportedWhenItsLineEnds) {
  StartWatcher();
  const std::string a = WatchNewVm("a");
  const std::string b = WatchNewVm("b");
  Append(Log(a), "VMRS_READY 10.0.");
  // b's marker, written after a's half line, shows the thread read that far.
  Append(Log(b), "VMRS_READY 10.0.0.2\n");
  ASSERT_TRUE(AwaitCall(b)) << "no listener call within the deadline";
  EXPECT_EQ(Calls(), (std::vector<std::string>{b}));

  Append(Log(a), "0.1\r\n");
  ASSERT_TRUE(AwaitCall(a)) << "no listener call within the deadline";
  EXPECT_EQ(Calls(), (std::vector<std::string>{b, a}));
  EXPECT_EQ(watcher_.Poll(a), (Ready{"10.0.0.1", start_}));
}

TEST_F(ReadyMarkerWatcherTest, WatchOfAFileHoldingTheMarkerWhileStartedIsReadyAtOnceAndReported) {
  StartWatcher();
  // Once b is reported, the thread has nothing left to do: only the watcher's
  // own wake-up can make it report a, whose file gets no more writes.
  const std::string b = WatchNewVm("b");
  Append(Log(b), "VMRS_READY 10.0.0.2\n");
  ASSERT_TRUE(AwaitCall(b)) << "no listener call within the deadline";

  const std::string a = WatchNewVm("a", "VMRS_READY 10.0.0.7\n");
  EXPECT_EQ(watcher_.Poll(a), (Ready{"10.0.0.7", start_}));
  ASSERT_TRUE(AwaitCall(a)) << "no listener call within the deadline";
  EXPECT_EQ(Calls(), (std::vector<std::string>{b, a}));
}

TEST_F(ReadyMarkerWatcherTest, MarkerSeenBeforeStartIsReportedAfterStart) {
  const std::string vm = WatchNewVm("a", "VMRS_READY 10.0.0.7\n");
  EXPECT_EQ(watcher_.Poll(vm), (Ready{"10.0.0.7", start_}));
  StartWatcher();
  ASSERT_TRUE(AwaitCall(vm)) << "no listener call within the deadline";
  EXPECT_EQ(Calls(), (std::vector<std::string>{vm}));
}

TEST_F(ReadyMarkerWatcherTest, MarkerWrittenBeforeStartAndNotPolledIsFoundByTheThread) {
  const std::string vm = WatchNewVm("a");
  Append(Log(vm), "VMRS_READY 10.0.0.7\n");
  clock_.Advance(std::chrono::seconds(2));
  StartWatcher();
  ASSERT_TRUE(AwaitCall(vm)) << "no listener call within the deadline";
  EXPECT_EQ(watcher_.Poll(vm), (Ready{"10.0.0.7", start_ + std::chrono::seconds(2)}));
}

TEST_F(ReadyMarkerWatcherTest, UnwatchedVmIsNotReported) {
  StartWatcher();
  const std::string a = WatchNewVm("a");
  const std::string b = WatchNewVm("b");
  watcher_.Unwatch(a);
  Append(Log(a), "VMRS_READY 10.0.0.1\n");
  // b's name sorts after a's, and its marker was written later: a report for
  // a would have come first.
  Append(Log(b), "VMRS_READY 10.0.0.2\n");
  ASSERT_TRUE(AwaitCall(b)) << "no listener call within the deadline";
  EXPECT_EQ(Calls(), (std::vector<std::string>{b}));
  EXPECT_EQ(watcher_.Poll(a), std::nullopt);
}

TEST_F(ReadyMarkerWatcherTest, MovedAwayFileKeepsItsStateAndIsNoLongerRead) {
  StartWatcher();
  const std::string a = WatchNewVm("a");
  const std::string b = WatchNewVm("b");
  Append(Log(a), "VMRS_READY 10.0");
  ASSERT_EQ(::rename(Log(a).c_str(), (a + "/serial.log.1").c_str()), 0);
  Append(a + "/serial.log.1", ".0.1\n");
  Append(Log(b), "VMRS_READY 10.0.0.2\n");
  ASSERT_TRUE(AwaitCall(b)) << "no listener call within the deadline";
  EXPECT_EQ(Calls(), (std::vector<std::string>{b}));
  EXPECT_EQ(watcher_.Poll(a), std::nullopt);
}

TEST_F(ReadyMarkerWatcherTest, RemovedFileKeepsItsStateWhileStarted) {
  StartWatcher();
  const std::string a = WatchNewVm("a", "VMRS_READY 10.0.0.1\n");
  const std::string b = WatchNewVm("b");
  ASSERT_TRUE(AwaitCall(a)) << "no listener call within the deadline";
  ASSERT_EQ(::unlink(Log(a).c_str()), 0);
  Append(Log(b), "VMRS_READY 10.0.0.2\n");
  ASSERT_TRUE(AwaitCall(b)) << "no listener call within the deadline";
  EXPECT_EQ(watcher_.Poll(a), (Ready{"10.0.0.1", start_}));
}

TEST_F(ReadyMarkerWatcherTest, SameFileForTwoVmsIsInvalidArgumentWhileStarted) {
  StartWatcher();
  const std::string a = WatchNewVm("a");
  const api::Status status = watcher_.Watch(tmp_ + "/b", Log(a));
  EXPECT_EQ(status.code(), api::Status::Code::kInvalidArgument) << status;
  Append(Log(a), "VMRS_READY 10.0.0.1\n");
  ASSERT_TRUE(AwaitCall(a)) << "no listener call within the deadline";
  EXPECT_EQ(watcher_.Poll(tmp_ + "/b"), std::nullopt);
}

TEST_F(ReadyMarkerWatcherTest, ListenerMayPollTheVmItIsCalledFor) {
  std::optional<Ready> polled;
  const api::Status status = watcher_.Start([&](const std::string& vm_dir) {
    // Would deadlock if the listener ran under the watcher's mutex.
    std::optional<Ready> ready = watcher_.Poll(vm_dir);
    std::lock_guard lock(mu_);
    polled = ready;
    calls_.push_back(vm_dir);
    cv_.notify_all();
  });
  ASSERT_TRUE(status.ok()) << status;
  const std::string vm = WatchNewVm("a");
  Append(Log(vm), "VMRS_READY 10.0.0.7\n");
  ASSERT_TRUE(AwaitCall(vm)) << "no listener call within the deadline";
  std::lock_guard lock(mu_);
  EXPECT_EQ(polled, (Ready{"10.0.0.7", start_}));
}

TEST_F(ReadyMarkerWatcherTest, StopIsIdempotentAndEndsReports) {
  StartWatcher();
  const std::string vm = WatchNewVm("a");
  watcher_.Stop();
  watcher_.Stop();
  Append(Log(vm), "VMRS_READY 10.0.0.1\n");
  EXPECT_EQ(watcher_.Poll(vm), (Ready{"10.0.0.1", start_}));
  EXPECT_EQ(Calls(), std::vector<std::string>{});

  // Started again, it reports what it saw meanwhile.
  StartWatcher();
  ASSERT_TRUE(AwaitCall(vm)) << "no listener call within the deadline";
  EXPECT_EQ(Calls(), (std::vector<std::string>{vm}));
}

TEST_F(ReadyMarkerWatcherTest, StopWithoutStartDoesNothing) {
  watcher_.Stop();
  const std::string vm = WatchNewVm("a", "VMRS_READY 10.0.0.1\n");
  EXPECT_EQ(watcher_.Poll(vm), (Ready{"10.0.0.1", start_}));
}

TEST_F(ReadyMarkerWatcherTest, PollsRacingTheThreadSeeOneMarkerReportedOnce) {
  StartWatcher();
  const std::string vm = WatchNewVm("a");
  const std::string line = "noise\nVMRS_READY 10.0.0.7\nVMRS_READY 10.0.0.8\n";
  for (char c : line) {
    Append(Log(vm), std::string(1, c));
    const std::optional<Ready> ready = watcher_.Poll(vm);
    if (ready) {
      EXPECT_EQ(*ready, (Ready{"10.0.0.7", start_}));
    }
  }
  EXPECT_EQ(watcher_.Poll(vm), (Ready{"10.0.0.7", start_}));
  ASSERT_TRUE(AwaitCall(vm)) << "no listener call within the deadline";
  // A sentinel VM's report shows every event for a was handled.
  const std::string b = WatchNewVm("b");
  Append(Log(b), "VMRS_READY 10.0.0.2\n");
  ASSERT_TRUE(AwaitCall(b)) << "no listener call within the deadline";
  EXPECT_EQ(Calls(), (std::vector<std::string>{vm, b}));
}

}  // namespace
}  // namespace vmlet::drivers
