#include "controller/cli.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tests/fakes/fake_clock.h"
#include "tests/support/temp_dir.h"

namespace vmlet::controller {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

namespace fs = std::filesystem;

// describe's "now"; nothing here reads it.
const api::Clock& Clock() {
  static const testing::FakeClock clock;
  return clock;
}

const std::string kExamples = std::string(VMLET_SOURCE_DIR) + "/manifests/examples";
const std::string kReference = std::string(VMLET_SOURCE_DIR) + "/manifests/reference";

struct CliResult {
  int code;
  std::string out;
  std::string err;
};

CliResult RunVmlet(std::vector<std::string> args) {
  args.insert(args.begin(), "vmlet");
  std::vector<const char*> argv;
  for (const std::string& a : args) argv.push_back(a.c_str());
  std::ostringstream out, err;
  int code = RunCli(static_cast<int>(argv.size()), argv.data(), out, err, Clock());
  return {code, out.str(), err.str()};
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

class CliTest : public ::testing::Test {
 protected:
  std::string Write(const std::string& name, const std::string& content) {
    std::string path = dir_ + "/" + name;
    fs::create_directories(fs::path(path).parent_path());
    std::ofstream(path) << content;
    return path;
  }

  const testing::TempDir temp_dir_{"cli"};
  const std::string dir_ = temp_dir_.path();
};

constexpr const char* kValid = R"(apiVersion: vmlet.dev/v1alpha1
kind: VirtualMachine
metadata:
  name: web-1
  namespace: prod
spec:
  kernel: /images/vmlinuz
)";

TEST_F(CliTest, VersionSubcommandAndFlagPrintTheVersion) {
  CliResult sub = RunVmlet({"version"});
  EXPECT_EQ(sub.code, 0);
  EXPECT_EQ(sub.out, std::string("vmlet ") + VMLET_VERSION + "\n");
  CliResult flag = RunVmlet({"--version"});
  EXPECT_EQ(flag.code, 0);
  EXPECT_EQ(flag.out, sub.out);
}

TEST_F(CliTest, ShippedExamplesAreAllValid) {
  CliResult r = RunVmlet({"validate", kExamples, kReference});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_THAT(r.out, HasSubstr("ok demo/edge-proxy "));
  EXPECT_THAT(r.out, HasSubstr("ok ci/builder-3 "));
  EXPECT_THAT(r.out, HasSubstr(", 0 errors\n"));
}

TEST_F(CliTest, InvalidManifestExitsOneAndPrintsFileLineColumnFieldReason) {
  std::string path = Write("bad.yaml", std::string(kValid) + "  cpus: 0\n");
  CliResult r = RunVmlet({"validate", path});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, path + ":8:9: spec.cpus: cpus must be at least 1\n");
  EXPECT_THAT(r.out, HasSubstr("0 valid VirtualMachines, 1 error\n"));
}

TEST_F(CliTest, EveryErrorIsPrintedOnItsOwnLine) {
  Write("a.yaml", std::string(kValid) + "  cpus: \"2\"\n  memoryMb: 0\n");
  Write("sub/b.yaml", "kind: VirtualMachine\n");
  Write("c.json", "{\"apiVersion\": 1,}");
  CliResult r = RunVmlet({"validate", dir_});
  EXPECT_EQ(r.code, 1);
  std::vector<std::string> lines = Lines(r.err);
  ASSERT_EQ(lines.size(), 6u) << r.err;
  EXPECT_EQ(lines[0], dir_ + "/a.yaml:8:9: spec.cpus: must be an integer, got string \"2\"");
  EXPECT_EQ(lines[1], dir_ + "/a.yaml:9:13: spec.memoryMb: memoryMb must be at least 1");
  EXPECT_THAT(lines[2], StartsWith(dir_ + "/c.json:1:18: -: invalid JSON: syntax error"));
  EXPECT_EQ(lines[3], dir_ + "/sub/b.yaml:1:1: apiVersion: required field is missing");
  EXPECT_EQ(lines[4], dir_ + "/sub/b.yaml:1:1: metadata: required field is missing");
  EXPECT_EQ(lines[5], dir_ + "/sub/b.yaml:1:1: spec: required field is missing");
}

TEST_F(CliTest, SameVmInTwoFilesIsAnErrorNamingBothPlaces) {
  std::string a = Write("a.yaml", kValid);
  std::string b = Write("b.yaml", std::string("# copy\n") + kValid);
  CliResult r = RunVmlet({"validate", dir_});
  EXPECT_EQ(r.code, 1);
  std::vector<std::string> lines = Lines(r.err);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_THAT(lines[0], StartsWith(a +
                                   ":1:1: metadata.name: VirtualMachine prod/web-1 is also "
                                   "defined at " +
                                   b + ":2:1"));
  EXPECT_THAT(lines[1], StartsWith(b +
                                   ":2:1: metadata.name: VirtualMachine prod/web-1 is also "
                                   "defined at " +
                                   a + ":1:1"));
}

TEST_F(CliTest, MissingPathIsAnError) {
  CliResult r = RunVmlet({"validate", dir_ + "/nope"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err,
              StartsWith(dir_ + "/nope:0:0: -: cannot read " + dir_ + "/nope: No such file"));
}

TEST_F(CliTest, ImageRootConfinesEveryPathField) {
  fs::create_directories(dir_ + "/images");
  std::string inside =
      Write("in.yaml", std::string(kValid).replace(std::string(kValid).find("/images/vmlinuz"), 15,
                                                   dir_ + "/images/vmlinuz"));
  CliResult ok = RunVmlet({"validate", "--image-root", dir_ + "/images", inside});
  EXPECT_EQ(ok.code, 0) << ok.err;

  std::string outside = Write("out.yaml", kValid);
  CliResult bad =
      RunVmlet({"validate", "--image-root", dir_ + "/images", "--image-root", "/srv/x", outside});
  EXPECT_EQ(bad.code, 1);
  EXPECT_EQ(bad.err, outside +
                         ":7:11: spec.kernel: resolves to \"/images/vmlinuz\", outside every "
                         "--image-root (" +
                         dir_ + "/images, /srv/x)\n");
}

// A root flag takes one directory: the manifest paths after it are paths,
// not more roots (each of the two files is read and its error reported).
TEST_F(CliTest, RootFlagsTakeOneDirectoryEachAndLeaveThePathsAfterThem) {
  fs::create_directories(dir_ + "/images");
  const std::string a = Write("a.yaml", kValid);
  const std::string b = Write(
      "b.yaml", std::string(kValid).replace(std::string(kValid).find("name: web"), 9, "name: db"));
  CliResult r = RunVmlet(
      {"validate", "--image-root", dir_ + "/images", "--share-root", dir_ + "/shares", a, b});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find(a + ":7:11: spec.kernel: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(b + ":7:11: spec.kernel: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("outside every --image-root (" + dir_ + "/images)\n"), std::string::npos)
      << r.err;
}

TEST_F(CliTest, DefaultDriverIsChecked) {
  std::string path = Write("a.yaml", kValid);
  EXPECT_EQ(RunVmlet({"validate", "--default-driver", "fake", path}).code, 0);
  CliResult r = RunVmlet({"validate", "--default-driver", "kvm", path});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("unknown driver"));
}

TEST_F(CliTest, UsageErrorsExitTwo) {
  EXPECT_EQ(RunVmlet({}).code, 2);
  EXPECT_EQ(RunVmlet({"validate"}).code, 2);
  EXPECT_EQ(RunVmlet({"frobnicate"}).code, 2);
}

}  // namespace
}  // namespace vmlet::controller

namespace vmlet::controller {
namespace {

TEST(ParseDurationTest, ReadsEveryUnitAndBareSeconds) {
  EXPECT_EQ(ParseDuration("500ms"), std::chrono::milliseconds(500));
  EXPECT_EQ(ParseDuration("90s"), std::chrono::milliseconds(90'000));
  EXPECT_EQ(ParseDuration("2m"), std::chrono::milliseconds(120'000));
  EXPECT_EQ(ParseDuration("1h"), std::chrono::milliseconds(3'600'000));
  EXPECT_EQ(ParseDuration("1.5s"), std::chrono::milliseconds(1500));
  EXPECT_EQ(ParseDuration("60"), std::chrono::milliseconds(60'000));
  EXPECT_EQ(ParseDuration("0"), std::chrono::milliseconds(0));
}

TEST(ParseDurationTest, RejectsGarbageAndNegatives) {
  for (const char* bad : {"", "s", "ms", "-1s", "1x", "1 s", "abc", "1e30h", "nan", "1s2"}) {
    EXPECT_EQ(ParseDuration(bad), std::nullopt) << bad;
  }
}

TEST(RunFlagsTest, RunParsesEveryFlagIntoRunOptions) {
  std::optional<RunOptions> seen;
  RunDaemon daemon = [&](const RunOptions& o) {
    seen = o;
    return 7;
  };
  std::vector<const char*> argv = {"vmlet",        "run",    "--manifests",       "/m",
                                   "--state-dir",  "/s",     "--driver",          "fake",
                                   "--image-root", "/a",     "--image-root",      "/b",
                                   "--node-name",  "host-a", "--workers",         "8",
                                   "--resync",     "2m",     "--fake-boot-delay", "3s",
                                   "--log-level",  "debug"};
  std::ostringstream out, err;
  EXPECT_EQ(RunCli(static_cast<int>(argv.size()), argv.data(), out, err, Clock(), daemon), 7)
      << err.str();
  ASSERT_TRUE(seen.has_value());
  EXPECT_EQ(seen->manifests_dir, "/m");
  EXPECT_EQ(seen->state_dir, "/s");
  EXPECT_EQ(seen->default_driver, "fake");
  EXPECT_EQ(seen->image_roots, (std::vector<std::string>{"/a", "/b"}));
  EXPECT_EQ(seen->node_name, "host-a");
  EXPECT_EQ(seen->workers, 8);
  EXPECT_EQ(seen->resync, std::chrono::minutes(2));
  EXPECT_EQ(seen->fake_boot_delay, std::chrono::seconds(3));
  EXPECT_EQ(seen->log_level, "debug");
}

TEST(RunFlagsTest, RunDefaultsMatchTheDesign) {
  std::optional<RunOptions> seen;
  RunDaemon daemon = [&](const RunOptions& o) {
    seen = o;
    return 0;
  };
  std::vector<const char*> argv = {"vmlet", "run", "--manifests", "/m"};
  std::ostringstream out, err;
  EXPECT_EQ(RunCli(static_cast<int>(argv.size()), argv.data(), out, err, Clock(), daemon), 0);
  ASSERT_TRUE(seen.has_value());
  EXPECT_EQ(seen->state_dir, "/var/lib/vmlet");
  EXPECT_EQ(seen->default_driver, "qemu");
  EXPECT_EQ(seen->workers, 4);
  EXPECT_EQ(seen->resync, std::chrono::seconds(60));
}

TEST(RunFlagsTest, BadRunFlagsAreUsageErrors) {
  RunDaemon daemon = [](const RunOptions&) { return 0; };
  for (std::vector<const char*> argv : std::vector<std::vector<const char*>>{
           {"vmlet", "run"},
           {"vmlet", "run", "--manifests", "/m", "--driver", "kvm"},
           {"vmlet", "run", "--manifests", "/m", "--resync", "soon"},
           {"vmlet", "run", "--manifests", "/m", "--workers", "0"}}) {
    std::ostringstream out, err;
    EXPECT_EQ(RunCli(static_cast<int>(argv.size()), argv.data(), out, err, Clock(), daemon), 2)
        << argv.back();
  }
}

}  // namespace
}  // namespace vmlet::controller

namespace vmlet::controller {
namespace {

TEST_F(CliTest, RequireNodeNameRejectsAManifestWithoutOneWithAClearError) {
  std::string path = Write("fleet.yaml", std::string(kValid));
  CliResult plain = RunVmlet({"validate", path});
  EXPECT_EQ(plain.code, 0) << plain.err;
  CliResult fleet = RunVmlet({"validate", "--require-node-name", path});
  EXPECT_EQ(fleet.code, 1);
  EXPECT_THAT(fleet.err, HasSubstr(path + ":"));
  EXPECT_THAT(fleet.err, HasSubstr(": spec.nodeName: required here (--require-node-name): a "
                                   "fleet repository must name the host of every VM\n"));
  std::string named = Write("named.yaml", std::string(kValid) + "  nodeName: host-a\n");
  EXPECT_EQ(RunVmlet({"validate", "--require-node-name", named}).code, 0);
}

}  // namespace
}  // namespace vmlet::controller
