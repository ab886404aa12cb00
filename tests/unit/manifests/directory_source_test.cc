#include "manifests/directory_source.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "manifests/spec_json.h"
#include "tests/support/files.h"
#include "tests/support/manifest_builder.h"
#include "tests/support/temp_dir.h"

namespace vmlet::manifests {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

constexpr uid_t kNobody = 65534;

api::VmKey Key(std::string_view name) { return api::VmKey{"prod", std::string(name)}; }

// One valid VirtualMachine document.
std::string Vm(std::string_view name, int cpus = 2,
               std::string_view kernel = "/var/lib/vmlet/images/vmlinuz") {
  return testing::MinimalVmManifest(Key(name), cpus, std::string(kernel));
}

using testing::MakeDir;
using testing::SwapSymlink;
using testing::Symlink;
using testing::WriteFile;
using testing::WriteFileAtomically;

// The cpus of VM prod/`name` in `snapshot`, or -1 when it is not there.
int CpusOf(const Snapshot& snapshot, std::string_view name) {
  const auto it = snapshot.vms.find(Key(name));
  return it == snapshot.vms.end() ? -1 : static_cast<int>(it->second->spec.cpus);
}

class DirectorySourceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Traversable by "nobody", for the tests that check permissions.
    ASSERT_EQ(chmod(dir_.c_str(), 0755), 0);
    root_ = dir_ + "/manifests";
    MakeDir(root_);
  }

  void TearDown() override {
    if (geteuid() == 0) setfsuid(0);
  }

  // Makes permission bits apply to this thread, also when the tests run as
  // root (who reads anything): the thread's file-system uid becomes "nobody",
  // which drops its CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH. TearDown()
  // restores it. False when permissions still cannot be enforced.
  bool EnforcePermissions() {
    const std::string probe = dir_ + "/probe";
    WriteFile(probe, "x");
    chmod(probe.c_str(), 0);
    if (geteuid() == 0) setfsuid(kNobody);
    const int fd = open(probe.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return true;
    close(fd);
    return false;
  }

  const testing::TempDir temp_dir_{"directory-source"};
  const std::string dir_ = temp_dir_.path();  // the test's temporary directory
  std::string root_;                          // the manifest directory, inside dir_
};

TEST_F(DirectorySourceTest, FirstScanAddsEveryVmWithItsHashAndSource) {
  WriteFile(root_ + "/web.yaml", Vm("web-1") + "---\n" + Vm("web-2", 4));
  WriteFile(root_ + "/db.yml", Vm("db-1", 8));
  ManifestDirectory source(root_, ParseOptions{});

  const SourceUpdate update = source.Rescan();

  ASSERT_TRUE(update.source_status.ok()) << update.source_status;
  EXPECT_THAT(update.errors, IsEmpty());
  EXPECT_THAT(update.invalid, IsEmpty());
  EXPECT_THAT(update.diff.added, ElementsAre(Key("db-1"), Key("web-1"), Key("web-2")));
  EXPECT_THAT(update.diff.changed, IsEmpty());
  EXPECT_THAT(update.diff.removed, IsEmpty());
  ASSERT_THAT(update.snapshot->vms, SizeIs(3));
  const DesiredVm& web2 = *update.snapshot->vms.at(Key("web-2"));
  EXPECT_EQ(web2.spec.cpus, 4u);
  EXPECT_EQ(web2.spec.memory_mb, 512u);
  EXPECT_EQ(web2.spec.driver, "qemu");
  EXPECT_EQ(web2.spec_hash, BootHash(web2.spec));
  EXPECT_EQ(web2.source.file, root_ + "/web.yaml");
  EXPECT_EQ(web2.source.line, 11);  // the first line after the "---" on line 10
  EXPECT_EQ(source.snapshot(), update.snapshot);
}

TEST_F(DirectorySourceTest, EmptyDirectoryGivesEmptySnapshot) {
  ManifestDirectory source(root_, ParseOptions{});

  const SourceUpdate update = source.Rescan();

  EXPECT_TRUE(update.source_status.ok());
  EXPECT_THAT(update.snapshot->vms, IsEmpty());
  EXPECT_TRUE(update.diff.empty());
}

TEST_F(DirectorySourceTest, VmsInSubdirectoriesAreFound) {
  MakeDir(root_ + "/team-a");
  MakeDir(root_ + "/team-a/prod");
  WriteFile(root_ + "/team-a/prod/web.yaml", Vm("web-1"));
  WriteFile(root_ + "/top.json",
            R"({"apiVersion": "vmlet.dev/v1alpha1", "kind": "VirtualMachine",
                "metadata": {"name": "top", "namespace": "prod"},
                "spec": {"kernel": "/k", "cpus": 1, "memoryMb": 256}})");
  ManifestDirectory source(root_, ParseOptions{});

  const SourceUpdate update = source.Rescan();

  EXPECT_THAT(update.errors, IsEmpty());
  EXPECT_THAT(update.diff.added, ElementsAre(Key("top"), Key("web-1")));
  EXPECT_EQ(update.snapshot->vms.at(Key("web-1"))->source.file, root_ + "/team-a/prod/web.yaml");
}

TEST_F(DirectorySourceTest, DotfilesHiddenDirectoriesAndEditorTempFilesAreIgnored) {
  WriteFile(root_ + "/web.yaml", Vm("web-1"));
  WriteFile(root_ + "/.hidden.yaml", Vm("dotfile"));
  MakeDir(root_ + "/.git");
  WriteFile(root_ + "/.git/vm.yaml", Vm("in-dot-git"));
  MakeDir(root_ + "/.hidden");
  WriteFile(root_ + "/.hidden/vm.yaml", Vm("in-hidden-dir"));
  WriteFile(root_ + "/web.yaml~", Vm("backup"));
  WriteFile(root_ + "/.web.yaml.swp", "binary swap file\n");
  WriteFile(root_ + "/web.yaml.swp", "binary swap file\n");
  WriteFile(root_ + "/web.tmp", Vm("tmp"));
  WriteFile(root_ + "/#web.yaml#", Vm("emacs-autosave"));
  WriteFile(root_ + "/README.md", "not a manifest\n");
  ManifestDirectory source(root_, ParseOptions{});

  const SourceUpdate update = source.Rescan();

  EXPECT_THAT(update.errors, IsEmpty());
  EXPECT_THAT(update.diff.added, ElementsAre(Key("web-1")));
}

TEST_F(DirectorySourceTest, WriteTempThenRenameChangesTheSpec) {
  WriteFile(root_ + "/web.yaml", Vm("web-1", 2));
  WriteFile(root_ + "/db.yaml", Vm("db-1"));
  ManifestDirectory source(root_, ParseOptions{});
  source.Rescan();

  WriteFileAtomically(root_ + "/web.yaml", Vm("web-1", 6));
  const SourceUpdate update = source.Rescan();

  EXPECT_THAT(update.diff.changed, ElementsAre(Key("web-1")));
  EXPECT_THAT(update.diff.added, IsEmpty());
  EXPECT_THAT(update.diff.removed, IsEmpty());
  EXPECT_EQ(CpusOf(*update.snapshot, "web-1"), 6);
  EXPECT_EQ(update.snapshot->vms.at(Key("web-1"))->spec_hash,
            BootHash(update.snapshot->vms.at(Key("web-1"))->spec));
}

TEST_F(DirectorySourceTest, InPlaceRewriteChangesTheSpec) {
  WriteFile(root_ + "/web.yaml", Vm("web-1", 2));
  ManifestDirectory source(root_, ParseOptions{});
  source.Rescan();

  WriteFile(root_ + "/web.yaml", Vm("web-1", 16));
  const SourceUpdate update = source.Rescan();

  EXPECT_THAT(update.diff.changed, ElementsAre(Key("web-1")));
  EXPECT_EQ(CpusOf(*update.snapshot, "web-1"), 16);
}

TEST_F(DirectorySourceTest, DeletedFileRemovesItsVms) {
  WriteFile(root_ + "/web.yaml", Vm("web-1") + "---\n" + Vm("web-2"));
  WriteFile(root_ + "/db.yaml", Vm("db-1"));
  ManifestDirectory source(root_, ParseOptions{});
  source.Rescan();

  ASSERT_EQ(unlink((root_ + "/web.yaml").c_str()), 0);
  const SourceUpdate update = source.Rescan();

  EXPECT_TRUE(update.source_status.ok());
  EXPECT_THAT(update.diff.removed, ElementsAre(Key("web-1"), Key("web-2")));
  EXPECT_THAT(update.diff.added, IsEmpty());
  EXPECT_THAT(update.diff.changed, IsEmpty());
  EXPECT_THAT(update.snapshot->vms, SizeIs(1));
  EXPECT_EQ(CpusOf(*update.snapshot, "db-1"), 2);
}

TEST_F(DirectorySourceTest, RescanWithoutChangesReportsNothing) {
  WriteFile(root_ + "/web.yaml", Vm("web-1"));
  ManifestDirectory source(root_, ParseOptions{});
  const SourceUpdate first = source.Rescan();

  const SourceUpdate second = source.Rescan();

  EXPECT_TRUE(second.diff.empty());
  EXPECT_THAT(second.errors, IsEmpty());
  EXPECT_EQ(second.snapshot->vms.at(Key("web-1")), first.snapshot->vms.at(Key("web-1")));
}

TEST_F(DirectorySourceTest, UnchangedVmsKeepTheirEntryWhenAnotherFileChanges) {
  WriteFile(root_ + "/web.yaml", Vm("web-1"));
  WriteFile(root_ + "/db.yaml", Vm("db-1"));
  ManifestDirectory source(root_, ParseOptions{});
  const SourceUpdate first = source.Rescan();

  WriteFileAtomically(root_ + "/web.yaml", Vm("web-1", 3));
  const SourceUpdate second = source.Rescan();

  EXPECT_EQ(second.snapshot->vms.at(Key("db-1")), first.snapshot->vms.at(Key("db-1")));
  EXPECT_NE(second.snapshot->vms.at(Key("web-1")), first.snapshot->vms.at(Key("web-1")));
}

TEST_F(DirectorySourceTest, RewrittenFileWithSameVmKeepsItsEntryAndReportsNoChange) {
  WriteFile(root_ + "/web.yaml", Vm("web-1"));
  ManifestDirectory source(root_, ParseOptions{});
  const SourceUpdate first = source.Rescan();

  WriteFileAtomically(root_ + "/web.yaml", Vm("web-1"));  // new inode, same content
  const SourceUpdate second = source.Rescan();

  EXPECT_TRUE(second.diff.empty());
  EXPECT_EQ(second.snapshot->vms.at(Key("web-1")), first.snapshot->vms.at(Key("web-1")));
}

// Observable through --image-root: whether the kernel path is inside it is
// checked when a file is parsed, so a verdict that does not follow a change
// of the kernel link shows the file was not parsed again.
TEST_F(DirectorySourceTest, FileIsParsedAgainOnlyWhenItsStatChanges) {
  const std::string images = dir_ + "/images";
  MakeDir(images);
  WriteFile(images + "/vmlinuz-6.1", "kernel");
  Symlink(images + "/vmlinuz-6.1", images + "/vmlinuz");
  WriteFile(root_ + "/web.yaml", Vm("web-1", 2, images + "/vmlinuz"));
  ParseOptions options;
  options.image_roots = {images};
  ManifestDirectory source(root_, options);
  ASSERT_THAT(source.Rescan().errors, IsEmpty());

  // The kernel now resolves outside the image root; the manifest is unchanged.
  SwapSymlink("/etc/hostname", images + "/vmlinuz");
  EXPECT_THAT(source.Rescan().errors, IsEmpty());

  // Touching the manifest changes its stat: it is parsed again.
  const timeval long_ago[2] = {{1000000000, 0}, {1000000000, 0}};
  ASSERT_EQ(utimes((root_ + "/web.yaml").c_str(), long_ago), 0);
  const SourceUpdate update = source.Rescan();
  ASSERT_THAT(update.errors, SizeIs(1));
  EXPECT_EQ(update.errors[0].kind, ErrorKind::kOutsideImageRoot);
  EXPECT_EQ(CpusOf(*update.snapshot, "web-1"), 2);  // last good kept
  EXPECT_TRUE(update.invalid.contains(Key("web-1")));
}

TEST_F(DirectorySourceTest, InvalidEditKeepsTheLastGoodSpecAndReportsTheError) {
  WriteFile(root_ + "/web.yaml", Vm("web-1", 2));
  ManifestDirectory source(root_, ParseOptions{});
  const SourceUpdate good = source.Rescan();

  WriteFileAtomically(root_ + "/web.yaml", Vm("web-1", 0));
  const SourceUpdate update = source.Rescan();

  EXPECT_TRUE(update.source_status.ok());
  EXPECT_TRUE(update.diff.empty());
  EXPECT_EQ(update.snapshot->vms.at(Key("web-1")), good.snapshot->vms.at(Key("web-1")));
  ASSERT_THAT(update.errors, SizeIs(1));
  EXPECT_EQ(update.errors[0].field, "spec.cpus");
  EXPECT_EQ(update.errors[0].location.file, root_ + "/web.yaml");
  EXPECT_EQ(update.errors[0].location.line, 8);
  ASSERT_TRUE(update.invalid.contains(Key("web-1")));
  EXPECT_EQ(update.invalid.at(Key("web-1")), update.errors[0]);
}

TEST_F(DirectorySourceTest, FixingAnInvalidFileAppliesTheFixedSpecAndClearsTheError) {
  WriteFile(root_ + "/web.yaml", Vm("web-1", 2));
  ManifestDirectory source(root_, ParseOptions{});
  source.Rescan();
  WriteFileAtomically(root_ + "/web.yaml", Vm("web-1", 0));
  ASSERT_THAT(source.Rescan().errors, SizeIs(1));

  WriteFileAtomically(root_ + "/web.yaml", Vm("web-1", 4));
  const SourceUpdate update = source.Rescan();

  EXPECT_THAT(update.errors, IsEmpty());
  EXPECT_THAT(update.invalid, IsEmpty());
  EXPECT_THAT(update.diff.changed, ElementsAre(Key("web-1")));
  EXPECT_EQ(CpusOf(*update.snapshot, "web-1"), 4);
}

TEST_F(DirectorySourceTest, SyntaxErrorKeepsEveryVmOfTheFile) {
  WriteFile(root_ + "/web.yaml", Vm("web-1") + "---\n" + Vm("web-2"));
  ManifestDirectory source(root_, ParseOptions{});
  const SourceUpdate good = source.Rescan();

  // What a reader may see of a file being written: cut short mid-mapping.
  WriteFileAtomically(root_ + "/web.yaml",
                      "apiVersion: vmlet.dev/v1alpha1\nkind: [VirtualMachine\n");
  const SourceUpdate update = source.Rescan();

  EXPECT_TRUE(update.diff.empty());
  EXPECT_EQ(update.snapshot->vms, good.snapshot->vms);
  ASSERT_THAT(update.errors, SizeIs(1));
  EXPECT_EQ(update.errors[0].kind, ErrorKind::kSyntax);
  ASSERT_THAT(update.invalid, SizeIs(2));
  EXPECT_EQ(update.invalid.at(Key("web-1")), update.errors[0]);
  EXPECT_EQ(update.invalid.at(Key("web-2")), update.errors[0]);
}

TEST_F(DirectorySourceTest, EmptiedFileKeepsItsVms) {
  WriteFile(root_ + "/web.yaml", Vm("web-1"));
  ManifestDirectory source(root_, ParseOptions{});
  source.Rescan();

  WriteFile(root_ + "/web.yaml", "");  // truncated by a writer that is not done
  const SourceUpdate update = source.Rescan();

  EXPECT_TRUE(update.diff.empty());
  EXPECT_EQ(CpusOf(*update.snapshot, "web-1"), 2);
  EXPECT_THAT(update.errors, SizeIs(1));
  EXPECT_TRUE(update.invalid.contains(Key("web-1")));
}

TEST_F(DirectorySourceTest, InvalidDocumentDoesNotHoldBackAValidDocumentOfTheSameFile) {
  WriteFile(root_ + "/web.yaml", Vm("web-1", 2) + "---\n" + Vm("web-2", 2));
  ManifestDirectory source(root_, ParseOptions{});
  source.Rescan();

  WriteFileAtomically(root_ + "/web.yaml", Vm("web-1", 0) + "---\n" + Vm("web-2", 4));
  const SourceUpdate update = source.Rescan();

  EXPECT_THAT(update.diff.changed, ElementsAre(Key("web-2")));
  EXPECT_EQ(CpusOf(*update.snapshot, "web-1"), 2);
  EXPECT_EQ(CpusOf(*update.snapshot, "web-2"), 4);
  ASSERT_THAT(update.invalid, SizeIs(1));
  EXPECT_EQ(update.invalid.at(Key("web-1")).field, "spec.cpus");
}

TEST_F(DirectorySourceTest, NewVmWithInvalidManifestIsReportedButNotAdded) {
  WriteFile(root_ + "/web.yaml", Vm("web-1", 0));
  ManifestDirectory source(root_, ParseOptions{});

  const SourceUpdate update = source.Rescan();

  EXPECT_THAT(update.snapshot->vms, IsEmpty());
  EXPECT_TRUE(update.diff.empty());
  ASSERT_THAT(update.invalid, SizeIs(1));
  EXPECT_EQ(update.invalid.at(Key("web-1")).field, "spec.cpus");
}

TEST_F(DirectorySourceTest, DuplicateVmAcrossFilesRejectsEveryCopyAndKeepsTheLastGood) {
  WriteFile(root_ + "/a.yaml", Vm("web-1", 2));
  ManifestDirectory source(root_, ParseOptions{});
  const SourceUpdate good = source.Rescan();

  WriteFile(root_ + "/b.yaml", Vm("web-1", 8) + "---\n" + Vm("web-2"));
  const SourceUpdate update = source.Rescan();

  EXPECT_THAT(update.diff.added, ElementsAre(Key("web-2")));
  EXPECT_THAT(update.diff.changed, IsEmpty());
  EXPECT_EQ(update.snapshot->vms.at(Key("web-1")), good.snapshot->vms.at(Key("web-1")));
  ASSERT_THAT(update.errors, SizeIs(2));
  EXPECT_EQ(update.errors[0].kind, ErrorKind::kDuplicateVm);
  EXPECT_EQ(update.errors[0].location.file, root_ + "/a.yaml");
  EXPECT_THAT(update.errors[0].reason, HasSubstr(root_ + "/b.yaml"));
  EXPECT_EQ(update.errors[1].location.file, root_ + "/b.yaml");
  EXPECT_THAT(update.errors[1].reason, HasSubstr(root_ + "/a.yaml"));
  ASSERT_THAT(update.invalid, SizeIs(1));
  EXPECT_EQ(update.invalid.at(Key("web-1")).kind, ErrorKind::kDuplicateVm);

  // Removing one copy makes the other the only definition again.
  ASSERT_EQ(unlink((root_ + "/a.yaml").c_str()), 0);
  const SourceUpdate resolved = source.Rescan();
  EXPECT_THAT(resolved.errors, IsEmpty());
  EXPECT_THAT(resolved.invalid, IsEmpty());
  EXPECT_THAT(resolved.diff.changed, ElementsAre(Key("web-1")));
  EXPECT_EQ(CpusOf(*resolved.snapshot, "web-1"), 8);
}

TEST_F(DirectorySourceTest, DuplicateVmThatNeverHadASpecIsNotAdded) {
  WriteFile(root_ + "/a.yaml", Vm("web-1", 2));
  WriteFile(root_ + "/b.yaml", Vm("web-1", 4));
  ManifestDirectory source(root_, ParseOptions{});

  const SourceUpdate update = source.Rescan();

  EXPECT_THAT(update.snapshot->vms, IsEmpty());
  EXPECT_THAT(update.errors, SizeIs(2));
  EXPECT_TRUE(update.invalid.contains(Key("web-1")));
}

TEST_F(DirectorySourceTest, MissingRootIsASourceErrorAndRemovesNothing) {
  WriteFile(root_ + "/web.yaml", Vm("web-1"));
  ManifestDirectory source(root_, ParseOptions{});
  const SourceUpdate good = source.Rescan();

  ASSERT_EQ(rename(root_.c_str(), (dir_ + "/elsewhere").c_str()), 0);
  const SourceUpdate update = source.Rescan();

  EXPECT_TRUE(update.source_status.IsNotFound()) << update.source_status;
  EXPECT_TRUE(update.diff.empty());
  EXPECT_EQ(update.snapshot, good.snapshot);
  EXPECT_EQ(source.snapshot(), good.snapshot);
}

TEST_F(DirectorySourceTest, RootThatComesBackIsScannedAgain) {
  WriteFile(root_ + "/web.yaml", Vm("web-1", 2));
  WriteFile(root_ + "/db.yaml", Vm("db-1"));
  ManifestDirectory source(root_, ParseOptions{});
  source.Rescan();
  ASSERT_EQ(rename(root_.c_str(), (dir_ + "/elsewhere").c_str()), 0);
  ASSERT_FALSE(source.Rescan().source_status.ok());

  MakeDir(root_);
  WriteFile(root_ + "/web.yaml", Vm("web-1", 4));
  const SourceUpdate update = source.Rescan();

  EXPECT_TRUE(update.source_status.ok());
  EXPECT_THAT(update.diff.changed, ElementsAre(Key("web-1")));
  EXPECT_THAT(update.diff.removed, ElementsAre(Key("db-1")));
  EXPECT_EQ(CpusOf(*update.snapshot, "web-1"), 4);
}

TEST_F(DirectorySourceTest, RootThatIsNeitherDirectoryNorFileIsASourceError) {
  const std::string fifo = dir_ + "/fifo";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0644), 0);
  ManifestDirectory source(fifo, ParseOptions{});

  const SourceUpdate update = source.Rescan();

  EXPECT_TRUE(update.source_status.IsInvalidArgument()) << update.source_status;
  EXPECT_THAT(update.snapshot->vms, IsEmpty());
}

TEST_F(DirectorySourceTest, UnreadableRootIsASourceErrorAndRemovesNothing) {
  WriteFile(root_ + "/web.yaml", Vm("web-1"));
  ManifestDirectory source(root_, ParseOptions{});
  const SourceUpdate good = source.Rescan();
  ASSERT_THAT(good.snapshot->vms, SizeIs(1));

  ASSERT_EQ(chmod(root_.c_str(), 0), 0);
  if (!EnforcePermissions()) GTEST_SKIP() << "cannot make a directory unreadable here";
  const SourceUpdate update = source.Rescan();

  EXPECT_EQ(update.source_status.code(), api::Status::Code::kPermissionDenied)
      << update.source_status;
  EXPECT_TRUE(update.diff.empty());
  EXPECT_EQ(update.snapshot, good.snapshot);
}

TEST_F(DirectorySourceTest, UnreadableSubdirectoryKeepsItsVmsAndReportsAnError) {
  MakeDir(root_ + "/team-a");
  WriteFile(root_ + "/team-a/web.yaml", Vm("web-1"));
  WriteFile(root_ + "/db.yaml", Vm("db-1"));
  ManifestDirectory source(root_, ParseOptions{});
  const SourceUpdate good = source.Rescan();

  ASSERT_EQ(chmod((root_ + "/team-a").c_str(), 0), 0);
  if (!EnforcePermissions()) GTEST_SKIP() << "cannot make a directory unreadable here";
  const SourceUpdate update = source.Rescan();

  EXPECT_TRUE(update.source_status.ok());
  EXPECT_TRUE(update.diff.empty());
  EXPECT_EQ(update.snapshot->vms, good.snapshot->vms);
  ASSERT_THAT(update.errors, SizeIs(1));
  EXPECT_EQ(update.errors[0].kind, ErrorKind::kIo);
  EXPECT_EQ(update.errors[0].location.file, root_ + "/team-a");
  ASSERT_THAT(update.invalid, SizeIs(1));
  EXPECT_EQ(update.invalid.at(Key("web-1")), update.errors[0]);
}

TEST_F(DirectorySourceTest, UnreadableFileKeepsItsVmsAndReportsAnError) {
  WriteFile(root_ + "/web.yaml", Vm("web-1"));
  ManifestDirectory source(root_, ParseOptions{});
  const SourceUpdate good = source.Rescan();

  ASSERT_EQ(chmod((root_ + "/web.yaml").c_str(), 0), 0);
  if (!EnforcePermissions()) GTEST_SKIP() << "cannot make a file unreadable here";
  const SourceUpdate update = source.Rescan();

  EXPECT_TRUE(update.diff.empty());
  EXPECT_EQ(update.snapshot->vms, good.snapshot->vms);
  ASSERT_THAT(update.errors, SizeIs(1));
  EXPECT_EQ(update.errors[0].kind, ErrorKind::kIo);
  EXPECT_EQ(update.errors[0].location.file, root_ + "/web.yaml");
  EXPECT_TRUE(update.invalid.contains(Key("web-1")));
}

// A Kubernetes ConfigMap volume: the data lives in a timestamped directory,
// "..data" links to it, and each file is a link through "..data". An update
// writes a new timestamped directory and renames a new "..data" link over
// the old one.
TEST_F(DirectorySourceTest, ConfigMapSymlinkSwapChangesTheSpec) {
  MakeDir(root_ + "/..2026_11_28_01");
  WriteFile(root_ + "/..2026_11_28_01/vm.yaml", Vm("web-1", 2));
  Symlink("..2026_11_28_01", root_ + "/..data");
  Symlink("..data/vm.yaml", root_ + "/vm.yaml");
  ManifestDirectory source(root_, ParseOptions{});
  const SourceUpdate first = source.Rescan();
  ASSERT_THAT(first.diff.added, ElementsAre(Key("web-1")));
  EXPECT_EQ(first.snapshot->vms.at(Key("web-1"))->source.file, root_ + "/vm.yaml");

  MakeDir(root_ + "/..2026_11_28_02");
  WriteFile(root_ + "/..2026_11_28_02/vm.yaml", Vm("web-1", 4));
  SwapSymlink("..2026_11_28_02", root_ + "/..data");
  const SourceUpdate update = source.Rescan();

  EXPECT_THAT(update.errors, IsEmpty());
  EXPECT_THAT(update.diff.changed, ElementsAre(Key("web-1")));
  EXPECT_THAT(update.snapshot->vms, SizeIs(1));
  EXPECT_EQ(CpusOf(*update.snapshot, "web-1"), 4);
  EXPECT_EQ(update.snapshot->vms.at(Key("web-1"))->source.file, root_ + "/vm.yaml");
}

// git-sync: the root is a symlink to a worktree, swapped atomically for a
// new one.
TEST_F(DirectorySourceTest, RootSymlinkSwapAppliesTheNewWorktree) {
  MakeDir(dir_ + "/rev-1");
  WriteFile(dir_ + "/rev-1/web.yaml", Vm("web-1", 2));
  WriteFile(dir_ + "/rev-1/db.yaml", Vm("db-1"));
  MakeDir(dir_ + "/rev-2");
  WriteFile(dir_ + "/rev-2/web.yaml", Vm("web-1", 4));
  WriteFile(dir_ + "/rev-2/cache.yaml", Vm("cache-1"));
  const std::string root = dir_ + "/current";
  Symlink("rev-1", root);
  ManifestDirectory source(root, ParseOptions{});
  ASSERT_THAT(source.Rescan().snapshot->vms, SizeIs(2));

  SwapSymlink("rev-2", root);
  const SourceUpdate update = source.Rescan();

  EXPECT_THAT(update.diff.added, ElementsAre(Key("cache-1")));
  EXPECT_THAT(update.diff.changed, ElementsAre(Key("web-1")));
  EXPECT_THAT(update.diff.removed, ElementsAre(Key("db-1")));
  EXPECT_EQ(CpusOf(*update.snapshot, "web-1"), 4);
}

// What `git checkout` of another commit does: several files replaced,
// removed and added between two scans.
TEST_F(DirectorySourceTest, CheckoutChangingSeveralFilesIsOneConsistentUpdate) {
  MakeDir(root_ + "/sub");
  WriteFile(root_ + "/a.yaml", Vm("a", 1));
  WriteFile(root_ + "/b.yaml", Vm("b", 1));
  WriteFile(root_ + "/sub/c.yaml", Vm("c", 1));
  WriteFile(root_ + "/d.yaml", Vm("d", 1));
  ManifestDirectory source(root_, ParseOptions{});
  source.Rescan();

  WriteFileAtomically(root_ + "/a.yaml", Vm("a", 2));
  ASSERT_EQ(unlink((root_ + "/b.yaml").c_str()), 0);
  WriteFile(root_ + "/sub/c.yaml", Vm("c", 12));  // in place
  WriteFile(root_ + "/sub/e.yaml", Vm("e", 1));
  // A VM moved from one file to another is neither added nor removed.
  ASSERT_EQ(rename((root_ + "/d.yaml").c_str(), (root_ + "/sub/d.yaml").c_str()), 0);
  const SourceUpdate update = source.Rescan();

  EXPECT_THAT(update.errors, IsEmpty());
  EXPECT_THAT(update.diff.added, ElementsAre(Key("e")));
  EXPECT_THAT(update.diff.changed, ElementsAre(Key("a"), Key("c"), Key("d")));
  EXPECT_THAT(update.diff.removed, ElementsAre(Key("b")));
  EXPECT_EQ(update.snapshot->vms.at(Key("d"))->source.file, root_ + "/sub/d.yaml");
}

TEST_F(DirectorySourceTest, SymlinkLoopIsWalkedOnce) {
  MakeDir(root_ + "/sub");
  WriteFile(root_ + "/sub/web.yaml", Vm("web-1"));
  Symlink("..", root_ + "/sub/up");
  Symlink(root_, root_ + "/self");

  ManifestDirectory source(root_, ParseOptions{});
  const SourceUpdate update = source.Rescan();

  EXPECT_TRUE(update.source_status.ok());
  EXPECT_THAT(update.errors, IsEmpty());
  EXPECT_THAT(update.diff.added, ElementsAre(Key("web-1")));
}

TEST_F(DirectorySourceTest, DanglingSymlinkIsNotAManifest) {
  WriteFile(root_ + "/web.yaml", Vm("web-1"));
  Symlink("nowhere.yaml", root_ + "/dangling.yaml");
  ManifestDirectory source(root_, ParseOptions{});

  const SourceUpdate update = source.Rescan();

  EXPECT_THAT(update.errors, IsEmpty());
  EXPECT_THAT(update.diff.added, ElementsAre(Key("web-1")));
}

}  // namespace
}  // namespace vmlet::manifests
