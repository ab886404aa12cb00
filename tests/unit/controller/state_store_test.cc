#include "controller/state_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/fakes/fake_clock.h"
#include "tests/support/temp_dir.h"
#include "tests/unit/controller/state_samples.h"

namespace vmlet::controller {
namespace {

using namespace ::vmlet::controller::state_samples;

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::StartsWith;
using namespace std::chrono_literals;
using namespace std::string_literals;
using nlohmann::json;

namespace fs = std::filesystem;

// ---------------------------------------------------------------------------
// The store on disk: a fresh directory per test.

class StateStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { state_dir_ = dir_ + "/state"; }

  // A store on state_dir_, initialised, with the VM directory of kWeb.
  std::unique_ptr<StateStore> NewStore(StateStore::Options options = {}) {
    auto store = std::make_unique<StateStore>(state_dir_, clock_, options);
    EXPECT_TRUE(store->Init().ok());
    EXPECT_TRUE(store->EnsureVmDir(kWeb).ok());
    return store;
  }

  static std::set<std::string> Entries(const std::string& dir) {
    std::set<std::string> names;
    for (const auto& entry : fs::directory_iterator(dir)) {
      names.insert(entry.path().filename().string());
    }
    return names;
  }
  static std::string Read(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  static void Write(const std::string& path, const std::string& content) {
    std::ofstream(path, std::ios::binary) << content;
  }
  static mode_t Mode(const std::string& path) {
    struct stat st {};
    EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
    return st.st_mode & 0777;
  }
  static size_t LineCount(const std::string& path) {
    const std::string content = Read(path);
    return static_cast<size_t>(std::count(content.begin(), content.end(), '\n'));
  }

  const api::VmKey kWeb{"default", "web"};
  const testing::TempDir temp_dir_{"state-store-test"};
  const std::string dir_ = temp_dir_.path();
  std::string state_dir_;
  testing::FakeClock clock_;
};

// Init and directories.

TEST_F(StateStoreTest, InitCreatesStateDirWithParentsAndVmsWithExactModes) {
  state_dir_ = dir_ + "/var/lib/vmlet";
  StateStore store(state_dir_, clock_);
  const mode_t old_umask = ::umask(0077);
  api::Status status = store.Init();
  ::umask(old_umask);

  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(Mode(state_dir_), 0711u);
  EXPECT_EQ(Mode(state_dir_ + "/vms"), 0700u);
  EXPECT_THAT(Entries(state_dir_ + "/vms"), IsEmpty());
}

TEST_F(StateStoreTest, TrailingSlashesOfTheStateDirAreDropped) {
  StateStore store(state_dir_ + "//", clock_);
  EXPECT_EQ(store.state_dir(), state_dir_);
  ASSERT_TRUE(store.Init().ok());
  EXPECT_EQ(Mode(state_dir_), 0711u);
  EXPECT_EQ(store.VmDir(kWeb), state_dir_ + "/vms/default/web");
}

TEST_F(StateStoreTest, InitKeepsExistingDirectoriesAndTheirContents) {
  auto store = NewStore();
  ASSERT_TRUE(store->SaveRecord(kWeb, MinimalRecord()).ok());

  StateStore again(state_dir_, clock_);
  ASSERT_TRUE(again.Init().ok());
  api::StatusOr<StateStore::LoadedRecord> loaded = again.LoadRecord(kWeb);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->record, MinimalRecord());
}

TEST_F(StateStoreTest, InitFailsWhenStateDirIsAFile) {
  Write(state_dir_, "not a directory");
  StateStore store(state_dir_, clock_);
  api::Status status = store.Init();
  EXPECT_EQ(status.code(), api::Status::Code::kFailedPrecondition) << status;
  EXPECT_THAT(status.message(), HasSubstr("not a directory"));
}

TEST_F(StateStoreTest, EnsureVmDirCreatesNamespaceAndVmDirsWithMode0700) {
  StateStore store(state_dir_, clock_);
  ASSERT_TRUE(store.Init().ok());
  EXPECT_FALSE(store.VmDirExists(kWeb));

  ASSERT_TRUE(store.EnsureVmDir(kWeb).ok());
  EXPECT_EQ(store.VmDir(kWeb), state_dir_ + "/vms/default/web");
  EXPECT_TRUE(store.VmDirExists(kWeb));
  EXPECT_EQ(Mode(state_dir_ + "/vms/default"), 0700u);
  EXPECT_EQ(Mode(state_dir_ + "/vms/default/web"), 0700u);
  EXPECT_TRUE(store.EnsureVmDir(kWeb).ok());  // again: nothing to do
}

TEST_F(StateStoreTest, KeysThatAreNotNamesAreRejectedWithoutTouchingTheDisk) {
  auto store = NewStore();
  const api::VmKey bad_keys[] = {{".", "web"},      {"..", "web"},      {"default", "."},
                                 {"default", ".."}, {"default", "a/b"}, {"", "web"},
                                 {"default", ""}};
  for (const api::VmKey& key : bad_keys) {
    EXPECT_TRUE(store->EnsureVmDir(key).IsInvalidArgument()) << key;
    EXPECT_TRUE(store->RemoveVmDir(key).IsInvalidArgument()) << key;
    EXPECT_TRUE(store->SaveRecord(key, MinimalRecord()).IsInvalidArgument()) << key;
    EXPECT_TRUE(store->LoadRecord(key).status().IsInvalidArgument()) << key;
    EXPECT_FALSE(store->VmDirExists(key)) << key;
  }
  EXPECT_EQ(Entries(state_dir_), (std::set<std::string>{"vms"}));
  EXPECT_EQ(Entries(state_dir_ + "/vms"), (std::set<std::string>{"default"}));
  EXPECT_EQ(Entries(state_dir_ + "/vms/default"), (std::set<std::string>{"web"}));
}

// record.json.

TEST_F(StateStoreTest, SavedRecordLoadsBackAndIsTheOnlyFileLeft) {
  auto store = NewStore();
  ASSERT_TRUE(store->SaveRecord(kWeb, FullRecord()).ok());

  const std::string path = store->VmDir(kWeb) + "/record.json";
  EXPECT_EQ(json::parse(Read(path)), ToJson(FullRecord()));
  EXPECT_EQ(Mode(path), 0600u);
  EXPECT_EQ(Entries(store->VmDir(kWeb)), (std::set<std::string>{"record.json"}));

  api::StatusOr<StateStore::LoadedRecord> loaded = store->LoadRecord(kWeb);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->record, FullRecord());
  EXPECT_EQ(loaded->quarantined_to, std::nullopt);
  EXPECT_EQ(loaded->problem, "");
}

TEST_F(StateStoreTest, SaveRecordReplacesThePreviousRecord) {
  auto store = NewStore();
  ASSERT_TRUE(store->SaveRecord(kWeb, FullRecord()).ok());
  ASSERT_TRUE(store->SaveRecord(kWeb, MinimalRecord()).ok());

  api::StatusOr<StateStore::LoadedRecord> loaded = store->LoadRecord(kWeb);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->record, MinimalRecord());
  EXPECT_EQ(Entries(store->VmDir(kWeb)), (std::set<std::string>{"record.json"}));
}

TEST_F(StateStoreTest, AtomicOnlyRecordWriteReplacesTheRecordLikeADurableOne) {
  auto store = NewStore();
  ASSERT_TRUE(store->SaveRecord(kWeb, FullRecord()).ok());
  ASSERT_TRUE(store->SaveRecord(kWeb, MinimalRecord(), StateStore::Durability::kAtomic).ok());

  api::StatusOr<StateStore::LoadedRecord> loaded = store->LoadRecord(kWeb);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->record, MinimalRecord());
  EXPECT_EQ(Mode(store->VmDir(kWeb) + "/record.json"), 0600u);
  EXPECT_EQ(Entries(store->VmDir(kWeb)), (std::set<std::string>{"record.json"}));
}

TEST_F(StateStoreTest, SaveRecordWithoutVmDirIsNotFound) {
  StateStore store(state_dir_, clock_);
  ASSERT_TRUE(store.Init().ok());
  api::Status status = store.SaveRecord(kWeb, MinimalRecord());
  EXPECT_TRUE(status.IsNotFound()) << status;
  EXPECT_THAT(Entries(state_dir_ + "/vms"), IsEmpty());
}

TEST_F(StateStoreTest, FailedSaveRecordRemovesItsTemporaryFile) {
  auto store = NewStore();
  // A directory in the way makes the rename fail after the write.
  fs::create_directories(store->VmDir(kWeb) + "/record.json/in-the-way");

  api::Status status = store->SaveRecord(kWeb, FullRecord());
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(status.message(), HasSubstr("cannot rename"));
  EXPECT_EQ(Entries(store->VmDir(kWeb)), (std::set<std::string>{"record.json"}));
}

TEST_F(StateStoreTest, MissingRecordIsNoRecordAndNotAnError) {
  auto store = NewStore();
  for (const api::VmKey& key : {kWeb, api::VmKey{"default", "never-created"}}) {
    api::StatusOr<StateStore::LoadedRecord> loaded = store->LoadRecord(key);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    EXPECT_EQ(loaded->record, std::nullopt);
    EXPECT_EQ(loaded->quarantined_to, std::nullopt);
  }
}

struct CorruptCase {
  const char* name;
  std::string content;
  std::string problem;  // a prefix of LoadedRecord::problem
};

class CorruptRecordTest : public StateStoreTest,
                          public ::testing::WithParamInterface<CorruptCase> {};

TEST_P(CorruptRecordTest, IsMovedAsideWithItsBytesAndThenAbsent) {
  auto store = NewStore();
  const std::string vm_dir = store->VmDir(kWeb);
  Write(vm_dir + "/record.json", GetParam().content);
  clock_.Advance(3h + 4min + 5s + 500ms);

  api::StatusOr<StateStore::LoadedRecord> loaded = store->LoadRecord(kWeb);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->record, std::nullopt);
  EXPECT_EQ(loaded->quarantined_to, vm_dir + "/record.json.corrupt-20261128T030405Z");
  EXPECT_THAT(loaded->problem, StartsWith(GetParam().problem));
  EXPECT_EQ(Entries(vm_dir), (std::set<std::string>{"record.json.corrupt-20261128T030405Z"}));
  EXPECT_EQ(Read(vm_dir + "/record.json.corrupt-20261128T030405Z"), GetParam().content);

  api::StatusOr<StateStore::LoadedRecord> again = store->LoadRecord(kWeb);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->record, std::nullopt);
  EXPECT_EQ(again->quarantined_to, std::nullopt);
}

INSTANTIATE_TEST_SUITE_P(
    StateStoreTest, CorruptRecordTest,
    ::testing::Values(
        CorruptCase{"Garbage", "{\"version\":1,\"driver\":\"qe\x00\xff"s, "not valid JSON: "},
        CorruptCase{"EmptyFile", "", "empty file"},
        CorruptCase{"WrongType", R"({"version":1,"driver":5,"specHash":"abc"})",
                    "driver: must be a string"},
        CorruptCase{"UnknownVersion", R"({"version":2,"driver":"qemu","specHash":"abc"})",
                    "version: 2 is not a known record version (1)"},
        CorruptCase{"NotAnObject", "[1, 2, 3]\n", "record: must be a JSON object"},
        CorruptCase{"TornWrite", R"({"version":1,"driver":"qemu","spec)", "not valid JSON: "}),
    [](const ::testing::TestParamInfo<CorruptCase>& info) { return info.param.name; });

TEST_F(StateStoreTest, SecondCorruptRecordInTheSameSecondGetsACounterSuffix) {
  auto store = NewStore();
  const std::string vm_dir = store->VmDir(kWeb);
  Write(vm_dir + "/record.json", "first");
  ASSERT_TRUE(store->LoadRecord(kWeb).ok());
  Write(vm_dir + "/record.json", "second");
  Write(vm_dir + "/record.json.corrupt-20261128T000000Z-1", "an older one");

  api::StatusOr<StateStore::LoadedRecord> loaded = store->LoadRecord(kWeb);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->quarantined_to, vm_dir + "/record.json.corrupt-20261128T000000Z-2");
  EXPECT_EQ(Read(vm_dir + "/record.json.corrupt-20261128T000000Z"), "first");
  EXPECT_EQ(Read(vm_dir + "/record.json.corrupt-20261128T000000Z-1"), "an older one");
  EXPECT_EQ(Read(vm_dir + "/record.json.corrupt-20261128T000000Z-2"), "second");
}

TEST_F(StateStoreTest, UnreadableRecordIsAnErrorAndStaysWhereItIs) {
  auto store = NewStore();
  const std::string vm_dir = store->VmDir(kWeb);
  // Root reads through any mode bits; a directory gives EISDIR on read().
  fs::create_directory(vm_dir + "/record.json");

  api::StatusOr<StateStore::LoadedRecord> loaded = store->LoadRecord(kWeb);
  ASSERT_FALSE(loaded.ok());
  EXPECT_TRUE(loaded.status().IsRetryable()) << loaded.status();
  EXPECT_THAT(loaded.status().message(), HasSubstr("Is a directory"));
  EXPECT_EQ(Entries(vm_dir), (std::set<std::string>{"record.json"}));
}

// status.json.

TEST_F(StateStoreTest, SavedStatusLoadsBackAndLeavesNoTemporaryFile) {
  for (bool sync : {false, true}) {
    auto store = NewStore({.sync_status = sync});
    ASSERT_TRUE(store->SaveStatus(kWeb, FullStatus()).ok());
    EXPECT_EQ(store->LoadStatus(kWeb), FullStatus());
    EXPECT_EQ(Entries(store->VmDir(kWeb)), (std::set<std::string>{"status.json"}));
  }
}

TEST_F(StateStoreTest, MissingOrMalformedStatusIsNone) {
  auto store = NewStore();
  EXPECT_EQ(store->LoadStatus(kWeb), std::nullopt);
  Write(store->VmDir(kWeb) + "/status.json", "{\"phase\":");
  EXPECT_EQ(store->LoadStatus(kWeb), std::nullopt);
  Write(store->VmDir(kWeb) + "/status.json", R"({"phase":7})");
  EXPECT_EQ(store->LoadStatus(kWeb), std::nullopt);
  // Not quarantined: status is re-derived.
  EXPECT_EQ(Entries(store->VmDir(kWeb)), (std::set<std::string>{"status.json"}));
}

TEST_F(StateStoreTest, StatusWithInvalidUtf8IsSavedWithReplacementCharacters) {
  auto store = NewStore();
  VmStatus status;
  status.reason = "bad \xff byte";
  ASSERT_TRUE(store->SaveStatus(kWeb, status).ok());
  std::optional<VmStatus> loaded = store->LoadStatus(kWeb);
  ASSERT_TRUE(loaded.has_value());
  EXPECT_EQ(loaded->reason, "bad \xEF\xBF\xBD byte");
}

// events.jsonl.

TEST_F(StateStoreTest, RecentEventsAreTheLastOnesOldestFirst) {
  auto store = NewStore();
  EXPECT_THAT(store->RecentEvents(kWeb, 10), IsEmpty());
  ASSERT_TRUE(store->AppendEvent(kWeb, MakeEvent(kT0, "Booted", "pid 4242")).ok());
  ASSERT_TRUE(store->AppendEvent(kWeb, MakeEvent(kT0 + 1s, "Ready")).ok());
  ASSERT_TRUE(store->AppendEvent(kWeb, MakeEvent(kT0 + 2s, "Paused")).ok());

  EXPECT_THAT(store->RecentEvents(kWeb, 10),
              ElementsAre(MakeEvent(kT0, "Booted", "pid 4242"), MakeEvent(kT0 + 1s, "Ready"),
                          MakeEvent(kT0 + 2s, "Paused")));
  EXPECT_THAT(store->RecentEvents(kWeb, 2),
              ElementsAre(MakeEvent(kT0 + 1s, "Ready"), MakeEvent(kT0 + 2s, "Paused")));
  EXPECT_THAT(store->RecentEvents(kWeb, 0), IsEmpty());
  EXPECT_EQ(Read(store->VmDir(kWeb) + "/events.jsonl"),
            ToJson(MakeEvent(kT0, "Booted", "pid 4242")).dump() + "\n" +
                ToJson(MakeEvent(kT0 + 1s, "Ready")).dump() + "\n" +
                ToJson(MakeEvent(kT0 + 2s, "Paused")).dump() + "\n");
}

TEST_F(StateStoreTest, RecentEventsSkipMalformedAndTornLines) {
  auto store = NewStore();
  Write(store->VmDir(kWeb) + "/events.jsonl",
        ToJson(MakeEvent(kT0, "Booted")).dump() + "\n" +  //
            "not json\n" +                                //
            "\n" +                                        //
            R"({"time":"yesterday","type":"Normal","reason":"Ready"})" + "\n" +
            ToJson(MakeEvent(kT0 + 1s, "Ready")).dump() + "\n" +  //
            R"({"time":"2026-11-28T00:00:02.000Z","type":"Norm)");

  EXPECT_THAT(store->RecentEvents(kWeb, 10),
              ElementsAre(MakeEvent(kT0, "Booted"), MakeEvent(kT0 + 1s, "Ready")));
  EXPECT_THAT(store->RecentEvents(kWeb, 1), ElementsAre(MakeEvent(kT0 + 1s, "Ready")));
}

TEST_F(StateStoreTest, AppendAfterATornLineStartsANewLine) {
  auto store = NewStore();
  Write(store->VmDir(kWeb) + "/events.jsonl",
        ToJson(MakeEvent(kT0, "Booted")).dump() + "\n" + R"({"time":"2026-11-28T00:0)");

  ASSERT_TRUE(store->AppendEvent(kWeb, MakeEvent(kT0 + 1s, "Ready")).ok());
  EXPECT_THAT(store->RecentEvents(kWeb, 10),
              ElementsAre(MakeEvent(kT0, "Booted"), MakeEvent(kT0 + 1s, "Ready")));
}

TEST_F(StateStoreTest, EventsAreTrimmedToTheLastMaxEventsWhenPastTwiceThat) {
  auto store = NewStore({.max_events = 5});
  const std::string path = store->VmDir(kWeb) + "/events.jsonl";
  std::vector<Event> events;
  for (int i = 0; i < 16; ++i) {
    events.push_back(MakeEvent(kT0 + i * 1s, "Event" + std::to_string(i)));
  }

  for (int i = 0; i < 10; ++i) ASSERT_TRUE(store->AppendEvent(kWeb, events[i]).ok());
  EXPECT_EQ(LineCount(path), 10u);  // twice max_events: not yet

  ASSERT_TRUE(store->AppendEvent(kWeb, events[10]).ok());
  EXPECT_EQ(LineCount(path), 5u);
  EXPECT_EQ(store->RecentEvents(kWeb, 100),
            std::vector<Event>(events.begin() + 6, events.begin() + 11));

  for (int i = 11; i < 16; ++i) ASSERT_TRUE(store->AppendEvent(kWeb, events[i]).ok());
  EXPECT_EQ(LineCount(path), 10u);
  ASSERT_TRUE(store->AppendEvent(kWeb, MakeEvent(kT0 + 16s, "Event16")).ok());
  EXPECT_EQ(LineCount(path), 5u);
  EXPECT_EQ(store->RecentEvents(kWeb, 100).front(), events[12]);
  EXPECT_EQ(Entries(store->VmDir(kWeb)), (std::set<std::string>{"events.jsonl"}));
}

TEST_F(StateStoreTest, ANewStoreCountsTheEventsAlreadyOnDiskBeforeTrimming) {
  {
    auto store = NewStore({.max_events = 5});
    for (int i = 0; i < 10; ++i) {
      ASSERT_TRUE(store->AppendEvent(kWeb, MakeEvent(kT0 + i * 1s, "Old")).ok());
    }
  }
  auto store = NewStore({.max_events = 5});
  ASSERT_TRUE(store->AppendEvent(kWeb, MakeEvent(kT0 + 10s, "New")).ok());

  EXPECT_EQ(LineCount(store->VmDir(kWeb) + "/events.jsonl"), 5u);
  EXPECT_EQ(store->RecentEvents(kWeb, 100).back(), MakeEvent(kT0 + 10s, "New"));
}

TEST_F(StateStoreTest, AppendEventWithoutVmDirIsNotFound) {
  StateStore store(state_dir_, clock_);
  ASSERT_TRUE(store.Init().ok());
  api::Status status = store.AppendEvent(kWeb, MakeEvent(kT0, "Booted"));
  EXPECT_TRUE(status.IsNotFound()) << status;
}

// Removal and listing.

TEST_F(StateStoreTest, RemoveVmDirRemovesTheVmAndItsNowEmptyNamespace) {
  auto store = NewStore();
  ASSERT_TRUE(store->SaveRecord(kWeb, FullRecord()).ok());
  fs::create_directories(store->VmDir(kWeb) + "/nested/deeper");
  Write(store->VmDir(kWeb) + "/nested/deeper/serial.log", "boot");

  ASSERT_TRUE(store->RemoveVmDir(kWeb).ok());
  EXPECT_FALSE(store->VmDirExists(kWeb));
  EXPECT_THAT(Entries(state_dir_ + "/vms"), IsEmpty());
  EXPECT_TRUE(store->RemoveVmDir(kWeb).ok());  // already gone
}

TEST_F(StateStoreTest, RemoveVmDirKeepsANamespaceThatHasAnotherVm) {
  auto store = NewStore();
  const api::VmKey db{"default", "db"};
  ASSERT_TRUE(store->EnsureVmDir(db).ok());

  ASSERT_TRUE(store->RemoveVmDir(kWeb).ok());
  EXPECT_EQ(Entries(state_dir_ + "/vms/default"), (std::set<std::string>{"db"}));
  EXPECT_TRUE(store->VmDirExists(db));
}

TEST_F(StateStoreTest, RemovedVmStartsAFreshEventLog) {
  auto store = NewStore({.max_events = 2});
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(store->AppendEvent(kWeb, MakeEvent(kT0, "Old")).ok());
  ASSERT_TRUE(store->RemoveVmDir(kWeb).ok());
  ASSERT_TRUE(store->EnsureVmDir(kWeb).ok());

  ASSERT_TRUE(store->AppendEvent(kWeb, MakeEvent(kT0 + 1s, "New")).ok());
  EXPECT_THAT(store->RecentEvents(kWeb, 10), ElementsAre(MakeEvent(kT0 + 1s, "New")));
}

TEST_F(StateStoreTest, ListVmsIsSortedAndSkipsJunk) {
  auto store = NewStore();
  for (const api::VmKey& key : {api::VmKey{"prod", "zeta"}, api::VmKey{"default", "web"},
                                api::VmKey{"prod", "alpha"}, api::VmKey{"default", "db"}}) {
    ASSERT_TRUE(store->EnsureVmDir(key).ok());
  }
  const std::string vms = state_dir_ + "/vms";
  fs::create_directories(vms + "/.hidden/vm");
  fs::create_directories(vms + "/bad name/vm");
  fs::create_directories(vms + "/default/.web.tmp");
  fs::create_directories(vms + "/default/-dash");
  Write(vms + "/default/notes.txt", "a file, not a VM");
  Write(vms + "/stray-file", "");
  fs::create_directory_symlink(vms + "/default/web", vms + "/prod/link");

  api::StatusOr<std::vector<api::VmKey>> vms_listed = store->ListVms();
  ASSERT_TRUE(vms_listed.ok()) << vms_listed.status();
  EXPECT_THAT(*vms_listed, ElementsAre(api::VmKey{"default", "db"}, api::VmKey{"default", "web"},
                                       api::VmKey{"prod", "alpha"}, api::VmKey{"prod", "zeta"}));
}

TEST_F(StateStoreTest, ListVmsWithoutVmsDirIsEmpty) {
  StateStore store(state_dir_, clock_);  // no Init()
  api::StatusOr<std::vector<api::VmKey>> vms = store.ListVms();
  ASSERT_TRUE(vms.ok()) << vms.status();
  EXPECT_THAT(*vms, IsEmpty());
}

// Threads.

TEST_F(StateStoreTest, DifferentKeysCanBeWrittenFromSeveralThreadsAtOnce) {
  auto store = NewStore({.max_events = 10});
  constexpr int kThreads = 8;
  constexpr int kRounds = 50;
  std::vector<api::VmKey> keys;
  for (int t = 0; t < kThreads; ++t) {
    keys.push_back({"ns" + std::to_string(t % 2), "vm" + std::to_string(t)});
  }

  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, key = keys[t]] {
      ASSERT_TRUE(store->EnsureVmDir(key).ok());
      for (int i = 0; i < kRounds; ++i) {
        VmRecord record = MinimalRecord();
        record.restart_count = static_cast<uint32_t>(i);
        ASSERT_TRUE(store->SaveRecord(key, record).ok());
        ASSERT_TRUE(store->AppendEvent(key, MakeEvent(kT0 + i * 1s, "Round")).ok());
      }
    });
  }
  for (std::thread& thread : threads) thread.join();

  for (const api::VmKey& key : keys) {
    api::StatusOr<StateStore::LoadedRecord> loaded = store->LoadRecord(key);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    ASSERT_TRUE(loaded->record.has_value()) << key;
    EXPECT_EQ(loaded->record->restart_count, 49u) << key;
    // 50 appends, trimmed to 10 at the 21st, 32nd and 43rd: 17 lines.
    std::vector<Event> events = store->RecentEvents(key, 100);
    EXPECT_EQ(events.size(), 17u) << key;
    EXPECT_EQ(events.back().time, kT0 + 49s) << key;
    EXPECT_EQ(Entries(store->VmDir(key)), (std::set<std::string>{"events.jsonl", "record.json"}));
  }
}

}  // namespace
}  // namespace vmlet::controller
