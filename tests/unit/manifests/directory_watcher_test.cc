#include "manifests/directory_watcher.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tests/support/files.h"
#include "tests/support/manifest_builder.h"
#include "tests/support/temp_dir.h"

namespace vmlet::manifests {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::SizeIs;
using namespace std::chrono_literals;

// How long a test waits for a condition before it fails.
constexpr auto kDeadline = 10s;

api::VmKey Key(std::string_view name) { return api::VmKey{"prod", std::string(name)}; }

// One valid VirtualMachine document.
std::string Vm(std::string_view name, int cpus = 2) {
  return testing::MinimalVmManifest(Key(name), cpus);
}

using testing::MakeDir;
using testing::SwapSymlink;
using testing::Symlink;
using testing::WriteFile;
using testing::WriteFileAtomically;

// The cpus of VM prod/`name` in `update`'s snapshot, or -1 when it is not there.
int CpusOf(const SourceUpdate& update, std::string_view name) {
  const auto it = update.snapshot->vms.find(Key(name));
  return it == update.snapshot->vms.end() ? -1 : static_cast<int>(it->second->spec.cpus);
}

class DirectoryWatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = dir_ + "/manifests";
    MakeDir(root_);
  }

  void TearDown() override { watcher_.reset(); }

  // Starts a watcher on `root` (root_ by default) and waits until it is
  // watching. Await() looks only at the updates after that.
  void StartWatcher(DirectoryWatcher::Options options = {.rescan_interval = 1h, .settle = 20ms},
                    std::string root = "") {
    source_ = std::make_unique<ManifestDirectory>(root.empty() ? root_ : root, ParseOptions{});
    watcher_ = std::make_unique<DirectoryWatcher>(
        *source_, options, [this](const SourceUpdate& update) { Record(update); });
    ASSERT_TRUE(watcher_->Start().ok());
    {
      std::lock_guard<std::mutex> lock(mu_);
      next_ = updates_.size();
    }
    SyncWithWatcher(root.empty() ? root_ : root);
  }

  // Returns once the watcher has dealt with every change made so far, so that
  // what a test changes next can only be seen through inotify (or the timer):
  // makes a change it must report (a broken manifest) and waits for the
  // report, then undoes it and waits for that report too.
  void SyncWithWatcher(const std::string& root) {
    const std::string barrier = root + "/barrier.yaml";
    WriteFile(barrier, "kind: [\n");
    ASSERT_TRUE(Await([&](const SourceUpdate& u) { return HasErrorIn(u, barrier); }))
        << "the watcher did not start";
    ASSERT_EQ(unlink(barrier.c_str()), 0);
    ASSERT_TRUE(Await([&](const SourceUpdate& u) { return !HasErrorIn(u, barrier); }))
        << "the watcher did not start";
  }

  static bool HasErrorIn(const SourceUpdate& update, const std::string& file) {
    for (const ManifestError& error : update.errors) {
      if (error.location.file == file) return true;
    }
    return false;
  }

  void Record(const SourceUpdate& update) {
    std::lock_guard<std::mutex> lock(mu_);
    updates_.push_back(update);
    cv_.notify_all();
  }

  // Waits, up to kDeadline, for an update not returned before that satisfies
  // `condition`, and returns it; nothing when none came.
  std::optional<SourceUpdate> Await(const std::function<bool(const SourceUpdate&)>& condition) {
    std::unique_lock<std::mutex> lock(mu_);
    std::optional<SourceUpdate> found;
    cv_.wait_for(lock, kDeadline, [&] {
      for (; next_ < updates_.size(); ++next_) {
        if (condition(updates_[next_])) {
          found = updates_[next_++];
          return true;
        }
      }
      return false;
    });
    return found;
  }

  size_t UpdateCount() {
    std::lock_guard<std::mutex> lock(mu_);
    return updates_.size();
  }

  SourceUpdate FirstUpdate() {
    std::lock_guard<std::mutex> lock(mu_);
    return updates_.at(0);
  }

  const testing::TempDir temp_dir_{"directory-watcher"};
  const std::string dir_ = temp_dir_.path();  // the test's temporary directory
  std::string root_;                          // the manifest directory, inside dir_
  std::unique_ptr<ManifestDirectory> source_;
  std::unique_ptr<DirectoryWatcher> watcher_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<SourceUpdate> updates_;  // guarded by mu_
  size_t next_ = 0;                    // guarded by mu_: the first update Await() looks at
};

TEST_F(DirectoryWatcherTest, StartDeliversTheFirstScanBeforeReturning) {
  WriteFile(root_ + "/web.yaml", Vm("web-1"));
  ManifestDirectory source(root_, ParseOptions{});
  DirectoryWatcher watcher(source, {}, [this](const SourceUpdate& u) { Record(u); });

  ASSERT_TRUE(watcher.Start().ok());

  ASSERT_EQ(UpdateCount(), 1u);
  const SourceUpdate update = FirstUpdate();
  EXPECT_TRUE(update.source_status.ok());
  EXPECT_THAT(update.diff.added, ElementsAre(Key("web-1")));
}

TEST_F(DirectoryWatcherTest, StartDeliversTheFirstScanOfAnEmptyDirectory) {
  ManifestDirectory source(root_, ParseOptions{});
  DirectoryWatcher watcher(source, {}, [this](const SourceUpdate& u) { Record(u); });

  ASSERT_TRUE(watcher.Start().ok());

  ASSERT_EQ(UpdateCount(), 1u);
  EXPECT_THAT(FirstUpdate().snapshot->vms, IsEmpty());
}

TEST_F(DirectoryWatcherTest, StartWithAMissingRootDeliversTheSourceError) {
  ManifestDirectory source(dir_ + "/missing", ParseOptions{});
  DirectoryWatcher watcher(source, {}, [this](const SourceUpdate& u) { Record(u); });

  ASSERT_TRUE(watcher.Start().ok());

  ASSERT_EQ(UpdateCount(), 1u);
  EXPECT_TRUE(FirstUpdate().source_status.IsNotFound()) << FirstUpdate().source_status;
}

TEST_F(DirectoryWatcherTest, WriteTempThenRenameIsDelivered) {
  WriteFile(root_ + "/web.yaml", Vm("web-1", 2));
  StartWatcher();

  WriteFileAtomically(root_ + "/web.yaml", Vm("web-1", 4));

  const auto update = Await([](const SourceUpdate& u) { return !u.diff.changed.empty(); });
  ASSERT_TRUE(update) << "no update within the deadline";
  EXPECT_THAT(update->diff.changed, ElementsAre(Key("web-1")));
  EXPECT_EQ(CpusOf(*update, "web-1"), 4);
}

TEST_F(DirectoryWatcherTest, NewFileIsDelivered) {
  StartWatcher();

  WriteFile(root_ + "/web.yaml", Vm("web-1"));

  const auto update = Await([](const SourceUpdate& u) { return !u.diff.added.empty(); });
  ASSERT_TRUE(update) << "no update within the deadline";
  EXPECT_THAT(update->diff.added, ElementsAre(Key("web-1")));
}

TEST_F(DirectoryWatcherTest, DeletionIsDelivered) {
  WriteFile(root_ + "/web.yaml", Vm("web-1"));
  WriteFile(root_ + "/db.yaml", Vm("db-1"));
  StartWatcher();

  ASSERT_EQ(unlink((root_ + "/web.yaml").c_str()), 0);

  const auto update = Await([](const SourceUpdate& u) { return !u.diff.removed.empty(); });
  ASSERT_TRUE(update) << "no update within the deadline";
  EXPECT_THAT(update->diff.removed, ElementsAre(Key("web-1")));
  EXPECT_THAT(update->snapshot->vms, SizeIs(1));
}

TEST_F(DirectoryWatcherTest, ConfigMapDataSwapIsDelivered) {
  MakeDir(root_ + "/..2026_11_28_01");
  WriteFile(root_ + "/..2026_11_28_01/vm.yaml", Vm("web-1", 2));
  Symlink("..2026_11_28_01", root_ + "/..data");
  Symlink("..data/vm.yaml", root_ + "/vm.yaml");
  StartWatcher();

  MakeDir(root_ + "/..2026_11_28_02");
  WriteFile(root_ + "/..2026_11_28_02/vm.yaml", Vm("web-1", 4));
  SwapSymlink("..2026_11_28_02", root_ + "/..data");

  const auto update = Await([](const SourceUpdate& u) { return CpusOf(u, "web-1") == 4; });
  ASSERT_TRUE(update) << "no update within the deadline";
  EXPECT_THAT(update->diff.changed, ElementsAre(Key("web-1")));
  EXPECT_THAT(update->snapshot->vms, SizeIs(1));
}

TEST_F(DirectoryWatcherTest, InPlaceEditOfASymlinkedFilesTargetIsDelivered) {
  MakeDir(dir_ + "/data");
  WriteFile(dir_ + "/data/vm.yaml", Vm("web-1", 2));
  Symlink(dir_ + "/data/vm.yaml", root_ + "/vm.yaml");
  StartWatcher();

  WriteFile(dir_ + "/data/vm.yaml", Vm("web-1", 12));

  const auto update = Await([](const SourceUpdate& u) { return CpusOf(u, "web-1") == 12; });
  ASSERT_TRUE(update) << "no update within the deadline";
  EXPECT_THAT(update->diff.changed, ElementsAre(Key("web-1")));
}

TEST_F(DirectoryWatcherTest, RootSymlinkSwapIsDelivered) {
  MakeDir(dir_ + "/rev-1");
  WriteFile(dir_ + "/rev-1/web.yaml", Vm("web-1", 2));
  MakeDir(dir_ + "/rev-2");
  WriteFile(dir_ + "/rev-2/web.yaml", Vm("web-1", 4));
  Symlink("rev-1", dir_ + "/current");
  StartWatcher({.rescan_interval = 1h, .settle = 20ms}, dir_ + "/current");

  SwapSymlink("rev-2", dir_ + "/current");

  const auto update = Await([](const SourceUpdate& u) { return CpusOf(u, "web-1") == 4; });
  ASSERT_TRUE(update) << "no update within the deadline";

  // The new worktree is watched too.
  WriteFileAtomically(dir_ + "/rev-2/web.yaml", Vm("web-1", 6));
  ASSERT_TRUE(Await([](const SourceUpdate& u) { return CpusOf(u, "web-1") == 6; }))
      << "no update within the deadline";
}

TEST_F(DirectoryWatcherTest, FilesInASubdirectoryCreatedAfterStartAreDelivered) {
  StartWatcher();

  MakeDir(root_ + "/team-a");
  MakeDir(root_ + "/team-a/prod");
  WriteFile(root_ + "/team-a/prod/web.yaml", Vm("web-1"));
  ASSERT_TRUE(Await([](const SourceUpdate& u) { return CpusOf(u, "web-1") == 2; }))
      << "no update within the deadline";

  WriteFile(root_ + "/team-a/prod/db.yaml", Vm("db-1"));
  const auto update = Await([](const SourceUpdate& u) { return !u.diff.added.empty(); });
  ASSERT_TRUE(update) << "no update within the deadline";
  EXPECT_THAT(update->diff.added, ElementsAre(Key("db-1")));
}

TEST_F(DirectoryWatcherTest, InvalidEditIsDeliveredAsAnErrorAndKeepsTheLastGoodSpec) {
  WriteFile(root_ + "/web.yaml", Vm("web-1", 2));
  StartWatcher();

  WriteFileAtomically(root_ + "/web.yaml", Vm("web-1", 0));

  const auto update = Await([](const SourceUpdate& u) { return !u.errors.empty(); });
  ASSERT_TRUE(update) << "no update within the deadline";
  EXPECT_TRUE(update->diff.empty());
  EXPECT_EQ(CpusOf(*update, "web-1"), 2);
  ASSERT_TRUE(update->invalid.contains(Key("web-1")));
  EXPECT_EQ(update->invalid.at(Key("web-1")).field, "spec.cpus");

  WriteFileAtomically(root_ + "/web.yaml", Vm("web-1", 3));
  const auto fixed = Await([](const SourceUpdate& u) { return u.errors.empty(); });
  ASSERT_TRUE(fixed) << "no update within the deadline";
  EXPECT_THAT(fixed->invalid, IsEmpty());
  EXPECT_EQ(CpusOf(*fixed, "web-1"), 3);
}

TEST_F(DirectoryWatcherTest, MissingRootIsDeliveredAndSoIsItsReturn) {
  WriteFile(root_ + "/web.yaml", Vm("web-1", 2));
  StartWatcher();

  ASSERT_EQ(rename(root_.c_str(), (dir_ + "/elsewhere").c_str()), 0);
  const auto missing = Await([](const SourceUpdate& u) { return !u.source_status.ok(); });
  ASSERT_TRUE(missing) << "no update within the deadline";
  EXPECT_TRUE(missing->source_status.IsNotFound()) << missing->source_status;
  EXPECT_EQ(CpusOf(*missing, "web-1"), 2);

  MakeDir(dir_ + "/incoming");
  WriteFile(dir_ + "/incoming/web.yaml", Vm("web-1", 4));
  ASSERT_EQ(rename((dir_ + "/incoming").c_str(), root_.c_str()), 0);
  const auto back = Await([](const SourceUpdate& u) { return u.source_status.ok(); });
  ASSERT_TRUE(back) << "no update within the deadline";
  EXPECT_EQ(CpusOf(*back, "web-1"), 4);
}

// Rescanning every millisecond, with events that change nothing in between:
// the listener hears of the two real changes only.
TEST_F(DirectoryWatcherTest, ListenerIsCalledOnlyWhenSomethingChanged) {
  WriteFile(root_ + "/web.yaml", Vm("web-1", 2));
  StartWatcher({.rescan_interval = 1ms, .settle = 1ms});
  const size_t before = UpdateCount();

  WriteFile(root_ + "/notes.tmp", "scratch");
  WriteFile(root_ + "/.web.yaml.swp", "swap");
  WriteFileAtomically(root_ + "/web.yaml", Vm("web-1", 2));  // same content, new inode
  WriteFileAtomically(root_ + "/db.yaml", Vm("db-1"));       // atomic: no half-written file to see
  const auto added = Await([](const SourceUpdate& u) { return !u.diff.added.empty(); });
  ASSERT_TRUE(added) << "no update within the deadline";
  EXPECT_THAT(added->diff.added, ElementsAre(Key("db-1")));
  ASSERT_EQ(unlink((root_ + "/db.yaml").c_str()), 0);
  const auto removed = Await([](const SourceUpdate& u) { return !u.diff.removed.empty(); });
  ASSERT_TRUE(removed) << "no update within the deadline";

  EXPECT_EQ(UpdateCount(), before + 2);
}

// A change inotify cannot see: the link the manifest resolves through lives
// in a directory nobody watches.
class DirectoryWatcherUnwatchedChangeTest : public DirectoryWatcherTest {
 protected:
  void SetUp() override {
    DirectoryWatcherTest::SetUp();
    MakeDir(dir_ + "/links");
    MakeDir(dir_ + "/v1");
    MakeDir(dir_ + "/v2");
    WriteFile(dir_ + "/v1/vm.yaml", Vm("web-1", 2));
    WriteFile(dir_ + "/v2/vm.yaml", Vm("web-1", 4));
    Symlink(dir_ + "/v1/vm.yaml", dir_ + "/links/vm.yaml");
    Symlink(dir_ + "/links/vm.yaml", root_ + "/vm.yaml");
  }

  void ChangeUnseen() { SwapSymlink(dir_ + "/v2/vm.yaml", dir_ + "/links/vm.yaml"); }
};

TEST_F(DirectoryWatcherUnwatchedChangeTest, PeriodicRescanDeliversIt) {
  StartWatcher({.rescan_interval = 100ms, .settle = 20ms});

  ChangeUnseen();

  ASSERT_TRUE(Await([](const SourceUpdate& u) { return CpusOf(u, "web-1") == 4; }))
      << "no update within the deadline";
}

TEST_F(DirectoryWatcherUnwatchedChangeTest, RequestRescanDeliversIt) {
  StartWatcher({.rescan_interval = 1h, .settle = 20ms});

  ChangeUnseen();
  watcher_->RequestRescan();

  ASSERT_TRUE(Await([](const SourceUpdate& u) { return CpusOf(u, "web-1") == 4; }))
      << "no update within the deadline";
}

TEST_F(DirectoryWatcherTest, StopReturnsPromptlyAndIsIdempotent) {
  WriteFile(root_ + "/web.yaml", Vm("web-1"));
  StartWatcher();

  auto stopped = std::async(std::launch::async, [this] {
    watcher_->Stop();
    watcher_->Stop();
  });

  ASSERT_EQ(stopped.wait_for(kDeadline), std::future_status::ready);
  const size_t count = UpdateCount();
  WriteFile(root_ + "/db.yaml", Vm("db-1"));
  watcher_->RequestRescan();  // ignored once stopped
  watcher_.reset();
  EXPECT_EQ(UpdateCount(), count);
}

TEST_F(DirectoryWatcherTest, StopWithoutStartDoesNothing) {
  source_ = std::make_unique<ManifestDirectory>(root_, ParseOptions{});
  DirectoryWatcher watcher(*source_, {}, [this](const SourceUpdate& u) { Record(u); });

  watcher.Stop();
  watcher.RequestRescan();

  EXPECT_EQ(UpdateCount(), 0u);
}

TEST_F(DirectoryWatcherTest, SecondStartFails) {
  StartWatcher();
  const size_t before = UpdateCount();

  const api::Status status = watcher_->Start();

  EXPECT_EQ(status.code(), api::Status::Code::kFailedPrecondition);
  EXPECT_EQ(UpdateCount(), before);
}

TEST_F(DirectoryWatcherTest, StartAfterStopFails) {
  StartWatcher();
  watcher_->Stop();

  EXPECT_EQ(watcher_->Start().code(), api::Status::Code::kFailedPrecondition);
}

}  // namespace
}  // namespace vmlet::manifests
