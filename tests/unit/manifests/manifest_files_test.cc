#include "manifests/manifest_files.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "manifests/manifest_parser.h"
#include "tests/support/temp_dir.h"

namespace vmlet::manifests {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::SizeIs;

namespace fs = std::filesystem;

// ---------------------------------------------------------------------------
// Which names are manifests.

TEST(ManifestFilesTest, YamlYmlAndJsonFilesAreManifests) {
  for (std::string_view name : {"web.yaml", "web.yml", "web.json", "web.v2.yaml", "WEB-1.yaml"}) {
    EXPECT_TRUE(IsManifestFileName(name)) << name;
  }
}

TEST(ManifestFilesTest, OtherExtensionsDotfilesAndEditorFilesAreNotManifests) {
  for (std::string_view name :
       {"", "web.txt", "web", "yaml", "web.yaml.bak", ".web.yaml", ".yaml", "..data", "web.yaml~",
        "web.json~", "web.yaml.swp", ".web.yaml.swp", "web.tmp", "web.yaml.tmp", "#web.yaml#"}) {
    EXPECT_FALSE(IsManifestFileName(name)) << name;
  }
}

// ---------------------------------------------------------------------------
// Files on disk: a fresh directory per test.

class ManifestFilesDiskTest : public ::testing::Test {
 protected:
  // `relative` under the test directory, with its parent directories.
  std::string Write(const std::string& relative, const std::string& content = "") {
    std::string path = Path(relative);
    fs::create_directories(fs::path(path).parent_path());
    std::ofstream(path, std::ios::binary) << content;
    return path;
  }
  std::string Path(const std::string& relative) const { return dir_ + "/" + relative; }

  std::vector<std::string> Listed(const std::string& root) {
    api::StatusOr<FileListing> listing = ListManifestFiles(root);
    EXPECT_TRUE(listing.ok()) << listing.status();
    if (!listing.ok()) return {};
    EXPECT_THAT(listing->errors, IsEmpty());
    EXPECT_THAT(listing->unreadable_dirs, IsEmpty());
    return listing->files;
  }

  const testing::TempDir temp_dir_{"files-test"};
  const std::string dir_ = temp_dir_.path();
};

TEST_F(ManifestFilesDiskTest, ListingRecursesAndIsSorted) {
  Write("root/web.yaml");
  Write("root/api.json");
  Write("root/notes.txt");
  Write("root/prod/db.yml");
  Write("root/prod/eu/cache.yaml");
  Write("root/web.yaml.swp");
  Write("root/.web.yaml");

  EXPECT_THAT(Listed(Path("root")),
              ElementsAre(Path("root/api.json"), Path("root/prod/db.yml"),
                          Path("root/prod/eu/cache.yaml"), Path("root/web.yaml")));
}

TEST_F(ManifestFilesDiskTest, RootWithATrailingSlashListsTheSamePaths) {
  Write("root/web.yaml");

  EXPECT_THAT(Listed(Path("root/")), ElementsAre(Path("root/web.yaml")));
}

TEST_F(ManifestFilesDiskTest, DotDirectoriesAreSkippedButFilesLinkedThroughThemAreListed) {
  // A git checkout and a ConfigMap volume: web.yaml -> ..data/web.yaml,
  // ..data -> ..2026_01_01_00_00_00.1, which holds the real file.
  Write("root/.git/config.yaml");
  Write("root/..2026_01_01_00_00_00.1/web.yaml");
  fs::create_directory_symlink("..2026_01_01_00_00_00.1", Path("root/..data"));
  fs::create_symlink("..data/web.yaml", Path("root/web.yaml"));

  EXPECT_THAT(Listed(Path("root")), ElementsAre(Path("root/web.yaml")));
}

TEST_F(ManifestFilesDiskTest, SymlinkedDirectoryIsListedUnderTheLinkName) {
  Write("elsewhere/db.yaml");
  Write("root/web.yaml");
  fs::create_directory_symlink("../elsewhere", Path("root/linked"));

  EXPECT_THAT(Listed(Path("root")),
              ElementsAre(Path("root/linked/db.yaml"), Path("root/web.yaml")));
}

TEST_F(ManifestFilesDiskTest, DanglingSymlinkIsSkipped) {
  Write("root/web.yaml");
  fs::create_symlink("gone.yaml", Path("root/dangling.yaml"));

  EXPECT_THAT(Listed(Path("root")), ElementsAre(Path("root/web.yaml")));
}

TEST_F(ManifestFilesDiskTest, SymlinkLoopIsWalkedOnce) {
  Write("root/web.yaml");
  Write("root/sub/db.yaml");
  fs::create_directory_symlink("..", Path("root/sub/up"));
  fs::create_directory_symlink(".", Path("root/sub/self"));

  EXPECT_THAT(Listed(Path("root")), ElementsAre(Path("root/sub/db.yaml"), Path("root/web.yaml")));
}

TEST_F(ManifestFilesDiskTest, MissingRootIsNotFound) {
  api::StatusOr<FileListing> listing = ListManifestFiles(Path("missing"));

  ASSERT_FALSE(listing.ok());
  EXPECT_TRUE(listing.status().IsNotFound()) << listing.status();
}

TEST_F(ManifestFilesDiskTest, RootThatIsAFileIsListedAlone) {
  std::string file = Write("web.yaml");

  EXPECT_THAT(Listed(file), ElementsAre(file));
}

TEST_F(ManifestFilesDiskTest, ReadReturnsTheWholeFile) {
  std::string content = "kind: VirtualMachine\n" + std::string(40000, '#') + "\n";
  std::string file = Write("web.yaml", content);

  api::StatusOr<std::string> read = ReadManifestFile(file);

  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(*read, content);
}

TEST_F(ManifestFilesDiskTest, ReadAcceptsAFileOfExactlyTheLimit) {
  std::string file = Write("web.yaml", std::string(kMaxManifestBytes, '#'));

  api::StatusOr<std::string> read = ReadManifestFile(file);

  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->size(), kMaxManifestBytes);
}

TEST_F(ManifestFilesDiskTest, ReadRefusesAFileOneByteOverTheLimit) {
  std::string file = Write("web.yaml", std::string(kMaxManifestBytes + 1, '#'));

  api::StatusOr<std::string> read = ReadManifestFile(file);

  ASSERT_FALSE(read.ok());
  EXPECT_TRUE(read.status().IsInvalidArgument());
  EXPECT_EQ(read.status().message(), file + " is larger than 1048576 bytes");
}

TEST_F(ManifestFilesDiskTest, ReadOfAMissingFileIsNotFound) {
  api::StatusOr<std::string> read = ReadManifestFile(Path("missing.yaml"));

  ASSERT_FALSE(read.ok());
  EXPECT_TRUE(read.status().IsNotFound());
}

// ---------------------------------------------------------------------------
// Duplicate VMs.

ManifestVm VmAt(std::string_view ns, std::string_view name, std::string_view file, int line) {
  ManifestVm vm;
  vm.spec.ns = ns;
  vm.spec.name = name;
  vm.spec.kernel = "/boot/vmlinuz";
  vm.location = SourceLocation{std::string(file), line, 1};
  return vm;
}

std::vector<std::string> Keys(const std::vector<ManifestVm>& vms) {
  std::vector<std::string> out;
  for (const ManifestVm& vm : vms) out.push_back(vm.spec.key().ToString());
  return out;
}

std::vector<std::string> Strings(const std::vector<ManifestError>& errors) {
  std::vector<std::string> out;
  for (const ManifestError& e : errors) out.push_back(e.ToString());
  return out;
}

TEST(ManifestFilesTest, UniqueVmsAreKept) {
  std::vector<ManifestVm> vms = {VmAt("prod", "web-1", "a.yaml", 1),
                                 VmAt("staging", "web-1", "a.yaml", 9),
                                 VmAt("prod", "web-2", "b.yaml", 1)};

  EXPECT_THAT(RemoveDuplicateVms(vms), IsEmpty());
  EXPECT_THAT(Keys(vms), ElementsAre("prod/web-1", "staging/web-1", "prod/web-2"));
}

TEST(ManifestFilesTest, TwoCopiesInOneFileAreBothRemovedAndNameEachOther) {
  std::vector<ManifestVm> vms = {VmAt("prod", "web-1", "a.yaml", 1),
                                 VmAt("prod", "web-2", "a.yaml", 9),
                                 VmAt("prod", "web-1", "a.yaml", 17)};

  std::vector<ManifestError> errors = RemoveDuplicateVms(vms);

  EXPECT_THAT(Keys(vms), ElementsAre("prod/web-2"));
  EXPECT_THAT(Strings(errors),
              ElementsAre("a.yaml:1:1: metadata.name: VirtualMachine prod/web-1 is also defined "
                          "at a.yaml:17:1; every copy is ignored until only one remains",
                          "a.yaml:17:1: metadata.name: VirtualMachine prod/web-1 is also defined "
                          "at a.yaml:1:1; every copy is ignored until only one remains"));
  for (const ManifestError& e : errors) {
    EXPECT_EQ(e.kind, ErrorKind::kDuplicateVm);
    EXPECT_EQ(e.key, (api::VmKey{"prod", "web-1"}));
  }
}

TEST(ManifestFilesTest, CopiesInTwoFilesAreBothRemovedAndNameEachOther) {
  std::vector<ManifestVm> vms = {VmAt("prod", "web-1", "b.yaml", 1),
                                 VmAt("prod", "web-1", "a.yaml", 9)};

  std::vector<ManifestError> errors = RemoveDuplicateVms(vms);

  EXPECT_THAT(vms, IsEmpty());
  EXPECT_THAT(Strings(errors),
              ElementsAre("a.yaml:9:1: metadata.name: VirtualMachine prod/web-1 is also defined "
                          "at b.yaml:1:1; every copy is ignored until only one remains",
                          "b.yaml:1:1: metadata.name: VirtualMachine prod/web-1 is also defined "
                          "at a.yaml:9:1; every copy is ignored until only one remains"));
}

TEST(ManifestFilesTest, EachOfThreeCopiesNamesTheOtherTwo) {
  std::vector<ManifestVm> vms = {VmAt("prod", "web-1", "a.yaml", 1),
                                 VmAt("prod", "web-1", "b.yaml", 1),
                                 VmAt("prod", "web-1", "c.yaml", 1)};

  std::vector<ManifestError> errors = RemoveDuplicateVms(vms);

  EXPECT_THAT(vms, IsEmpty());
  ASSERT_THAT(errors, SizeIs(3));
  EXPECT_EQ(errors[0].reason,
            "VirtualMachine prod/web-1 is also defined at b.yaml:1:1, c.yaml:1:1; every copy is "
            "ignored until only one remains");
  EXPECT_EQ(errors[1].reason,
            "VirtualMachine prod/web-1 is also defined at a.yaml:1:1, c.yaml:1:1; every copy is "
            "ignored until only one remains");
  EXPECT_EQ(errors[2].reason,
            "VirtualMachine prod/web-1 is also defined at a.yaml:1:1, b.yaml:1:1; every copy is "
            "ignored until only one remains");
}

// ---------------------------------------------------------------------------
// Loading everything under several paths (`vmlet validate`).

// prod/<name> in seven lines, so that a spec field appended is on line 8.
std::string VmYaml(std::string_view name) {
  std::string yaml =
      "apiVersion: vmlet.dev/v1alpha1\n"
      "kind: VirtualMachine\n"
      "metadata:\n";
  yaml += "  name: " + std::string(name) + "\n";
  yaml +=
      "  namespace: prod\n"
      "spec:\n"
      "  kernel: /boot/vmlinuz\n";
  return yaml;
}

TEST_F(ManifestFilesDiskTest, LoadReportsDuplicatesAcrossPathsAndMissingPaths) {
  Write("team-a/web.yaml", VmYaml("web-1") + "---\n" + VmYaml("web-2"));
  Write("team-b/more.yaml", VmYaml("web-2") + "---\n" + VmYaml("web-3"));
  Write("team-b/bad.yaml", VmYaml("web-4") + "  cpus: 0\n");

  LoadResult result =
      LoadManifests({Path("team-a"), Path("missing"), Path("team-b")}, ParseOptions{});

  EXPECT_THAT(Keys(result.vms), ElementsAre("prod/web-1", "prod/web-3"));
  ASSERT_THAT(result.errors, SizeIs(4));
  EXPECT_EQ(result.errors[0].kind, ErrorKind::kIo);
  EXPECT_EQ(result.errors[0].ToString(), Path("missing") + ":0:0: -: cannot read " +
                                             Path("missing") + ": No such file or directory");
  EXPECT_EQ(result.errors[1].ToString(),
            Path("team-b/bad.yaml") + ":8:9: spec.cpus: cpus must be at least 1");
  const std::string also_defined = ": metadata.name: VirtualMachine prod/web-2 is also defined at ";
  const std::string ignored = "; every copy is ignored until only one remains";
  EXPECT_EQ(result.errors[2].ToString(), Path("team-a/web.yaml") + ":9:1" + also_defined +
                                             Path("team-b/more.yaml") + ":1:1" + ignored);
  EXPECT_EQ(result.errors[3].ToString(), Path("team-b/more.yaml") + ":1:1" + also_defined +
                                             Path("team-a/web.yaml") + ":9:1" + ignored);
}

TEST(ManifestFilesTest, ExampleAndReferenceManifestsAreValid) {
  LoadResult result = LoadManifests(
      {VMLET_SOURCE_DIR "/manifests/examples", VMLET_SOURCE_DIR "/manifests/reference"},
      ParseOptions{});

  EXPECT_THAT(Strings(result.errors), IsEmpty());
  EXPECT_THAT(Keys(result.vms), ElementsAre("demo/batch-worker", "demo/edge-proxy",
                                            "prod/postgres-1", "prod/postgres-2", "ci/builder-3"));
}

}  // namespace
}  // namespace vmlet::manifests
