// The seed's validation tests (vm-rs VmConfig::validate), ported, and the
// rules vmlet adds. The seed's rules apply to the namespace as to the name.
#include "api/validation.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/support/vm_specs.h"

namespace vmlet::api {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

VmSpec TestSpec(std::string name) {
  VmSpec spec = testing::MinimalVmSpec({"test", std::move(name)}, "/tmp/kernel", 1, 256);
  spec.driver = "qemu";
  return spec;
}

TEST(ValidationTest, AcceptsValidConfig) { EXPECT_TRUE(ValidateSpec(TestSpec("my-vm.01")).ok()); }

TEST(ValidationTest, RejectsEmptyName) {
  Status s = ValidateSpec(TestSpec(""));
  ASSERT_TRUE(s.IsInvalidArgument());
  EXPECT_EQ(s.message(), "metadata.name: must not be empty");
}

TEST(ValidationTest, RejectsPathTraversalInName) {
  Status s = ValidateSpec(TestSpec("../etc"));
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr("alphanumeric"));
}

TEST(ValidationTest, RejectsZeroCpus) {
  VmSpec spec = TestSpec("good-name");
  spec.cpus = 0;
  EXPECT_EQ(ValidateSpec(spec).message(), "spec.cpus: cpus must be at least 1");
}

TEST(ValidationTest, RejectsZeroMemory) {
  VmSpec spec = TestSpec("good-name");
  spec.memory_mb = 0;
  EXPECT_EQ(ValidateSpec(spec).message(), "spec.memoryMb: memoryMb must be at least 1");
}

TEST(ValidationTest, RejectsEmptyKernel) {
  VmSpec spec = TestSpec("good-name");
  spec.kernel = "";
  EXPECT_EQ(ValidateSpec(spec).message(), "spec.kernel: kernel path must not be empty");
}

TEST(ValidationTest, NameOf128CharactersIsAcceptedAnd129Rejected) {
  EXPECT_TRUE(ValidateName(std::string(128, 'a')).ok());
  Status s = ValidateName(std::string(129, 'a'));
  EXPECT_EQ(s.message(), "must be 128 characters or fewer (got 129)");
}

TEST(ValidationTest, NameMustNotStartWithDotOrDash) {
  EXPECT_EQ(ValidateName(".hidden").message(), "must not start with '.' or '-'");
  EXPECT_EQ(ValidateName("-flag").message(), "must not start with '.' or '-'");
  EXPECT_TRUE(ValidateName("a.b-c_d").ok());
}

TEST(ValidationTest, NameAllowsOnlyAlnumDotDashUnderscore) {
  for (const char* bad : {"web/1", "web 1", "web:1", "wéb", "web\n1"}) {
    EXPECT_FALSE(ValidateName(bad).ok()) << bad;
  }
}

TEST(ValidationTest, SeedRulesApplyToTheNamespace) {
  struct Case {
    std::string ns;
    std::string message;
  };
  for (const Case& c : std::vector<Case>{
           {"", "metadata.namespace: must not be empty"},
           {std::string(129, 'n'), "metadata.namespace: must be 128 characters or fewer (got 129)"},
           {"prod/eu",
            "metadata.namespace: must contain only alphanumeric characters, hyphens, "
            "underscores, and dots"},
           {".prod", "metadata.namespace: must not start with '.' or '-'"},
           {"-prod", "metadata.namespace: must not start with '.' or '-'"}}) {
    VmSpec spec = TestSpec("web-1");
    spec.ns = c.ns;
    EXPECT_EQ(ValidateSpec(spec).message(), c.message) << c.ns;
  }
}

TEST(ValidationTest, FindSpecErrorsReportsEveryErrorInFieldOrder) {
  VmSpec spec = TestSpec("");
  spec.cpus = 0;
  spec.memory_mb = 0;
  spec.kernel = "";
  EXPECT_THAT(FindSpecErrors(spec),
              ElementsAre(FieldError{"metadata.name", "must not be empty"},
                          FieldError{"spec.kernel", "kernel path must not be empty"},
                          FieldError{"spec.cpus", "cpus must be at least 1"},
                          FieldError{"spec.memoryMb", "memoryMb must be at least 1"}));
}

TEST(ValidationTest, UnknownDriverIsRejected) {
  VmSpec spec = TestSpec("web-1");
  spec.driver = "kvm";
  EXPECT_EQ(ValidateSpec(spec).message(),
            "spec.driver: unknown driver \"kvm\" (known: qemu, cloud-hypervisor, fake)");
}

TEST(ValidationTest, RosettaIsRejectedByEveryLinuxDriver) {
  for (std::string_view driver : kKnownDrivers) {
    VmSpec spec = TestSpec("web-1");
    spec.driver = driver;
    spec.rosetta = true;
    std::vector<FieldError> errors = FindSpecErrors(spec);
    ASSERT_EQ(errors.size(), 1u) << driver;
    EXPECT_EQ(errors[0].field, "spec.rosetta");
    EXPECT_THAT(errors[0].reason, HasSubstr("only on macOS"));
  }
}

TEST(ValidationTest, MacAddressesMustBeWellFormedUnicastAndUnique) {
  EXPECT_TRUE(IsMacAddress("52:54:00:12:34:56"));
  EXPECT_TRUE(IsMacAddress("52:54:00:AB:cd:EF"));
  EXPECT_FALSE(IsMacAddress("52:54:00:12:34"));
  EXPECT_FALSE(IsMacAddress("52-54-00-12-34-56"));
  EXPECT_FALSE(IsMacAddress("52:54:00:12:34:5g"));

  VmSpec spec = TestSpec("web-1");
  spec.networks = {{"tap0", "53:54:00:00:00:01"},
                   {"tap1", "52:54:00:00:00:01"},
                   {"tap2", "52:54:00:00:00:01"},
                   {"tap3", "00:00:00:00:00:00"}};
  std::vector<FieldError> errors = FindSpecErrors(spec);
  ASSERT_EQ(errors.size(), 3u);
  EXPECT_EQ(errors[0].field, "spec.networks[0].mac");
  EXPECT_THAT(errors[0].reason, HasSubstr("unicast"));
  EXPECT_EQ(errors[1].field, "spec.networks[2].mac");
  EXPECT_THAT(errors[1].reason, HasSubstr("used twice"));
  EXPECT_EQ(errors[2].field, "spec.networks[3].mac");
}

TEST(ValidationTest, TapNamesFollowLinuxInterfaceRules) {
  VmSpec spec = TestSpec("web-1");
  spec.networks = {{"tap-ok_1", std::nullopt},
                   {"tap-sixteen-char", std::nullopt},
                   {"tap.dot", std::nullopt},
                   {"tap-ok_1", std::nullopt}};
  std::vector<FieldError> errors = FindSpecErrors(spec);
  ASSERT_EQ(errors.size(), 3u);
  EXPECT_EQ(errors[0].field, "spec.networks[1].tap");
  EXPECT_EQ(errors[1].field, "spec.networks[2].tap");
  EXPECT_EQ(errors[2].field, "spec.networks[3].tap");
  EXPECT_THAT(errors[2].reason, HasSubstr("attached twice"));
}

TEST(ValidationTest, PathsMustBeAbsoluteWithoutDotDot) {
  EXPECT_TRUE(IsCleanAbsolutePath("/var/lib/vmlet/images/vmlinuz"));
  EXPECT_TRUE(IsCleanAbsolutePath("/var/lib/..hidden/x"));
  EXPECT_FALSE(IsCleanAbsolutePath("var/lib/vmlinuz"));
  EXPECT_FALSE(IsCleanAbsolutePath("/var/lib/../../etc/shadow"));
  EXPECT_FALSE(IsCleanAbsolutePath("/var/lib/.."));

  VmSpec spec = TestSpec("web-1");
  spec.initramfs = "initrd.img";
  spec.root_disk = "/disks/../etc/passwd";
  std::vector<FieldError> errors = FindSpecErrors(spec);
  ASSERT_EQ(errors.size(), 2u);
  EXPECT_EQ(errors[0],
            (FieldError{"spec.initramfs",
                        "must be an absolute path (starting with '/'), got \"initrd.img\""}));
  EXPECT_EQ(errors[1].field, "spec.rootDisk");
}

TEST(ValidationTest, SharedDirTagsMustBeUnique) {
  VmSpec spec = TestSpec("web-1");
  spec.shared_dirs = {{"/srv/a", "data", true}, {"/srv/b", "data", false}};
  EXPECT_EQ(ValidateSpec(spec).message(),
            "spec.sharedDirs[1].tag: tag \"data\" is used by another shared directory");
}

TEST(ValidationTest, TimeoutsMustNotBeNegative) {
  VmSpec spec = TestSpec("web-1");
  spec.readiness_timeout = std::chrono::seconds(-1);
  spec.stop_grace_period = std::chrono::seconds(-5);
  EXPECT_THAT(FindSpecErrors(spec),
              ElementsAre(FieldError{"spec.readiness.timeoutSeconds", "must not be negative"},
                          FieldError{"spec.stopGracePeriodSeconds", "must not be negative"}));
  spec.readiness_timeout = std::chrono::seconds(0);
  spec.stop_grace_period = std::chrono::seconds(0);
  EXPECT_THAT(FindSpecErrors(spec), IsEmpty());
}

TEST(ValidationTest, MachineIdMustBeBase64) {
  VmSpec spec = TestSpec("web-1");
  spec.machine_id = "3q2+7w==";
  EXPECT_TRUE(ValidateSpec(spec).ok());
  spec.machine_id = "not base64!";
  EXPECT_EQ(ValidateSpec(spec).message(),
            "spec.machineId: must be base64 (A-Z a-z 0-9 + /, padded with '=')");
}

TEST(ValidationTest, LabelsFollowKubernetesSyntax) {
  VmSpec spec = TestSpec("web-1");
  spec.labels = {{"app", "web"}, {"vmlet.dev/tier", "front-end"}, {"empty", ""}};
  EXPECT_TRUE(ValidateSpec(spec).ok());
  spec.labels = {{"-app", "web"}};
  EXPECT_THAT(ValidateSpec(spec).message(), HasSubstr("metadata.labels.-app: label key"));
  spec.labels = {{"app", "web server"}};
  EXPECT_THAT(ValidateSpec(spec).message(), HasSubstr("label value"));
}

TEST(ValidationTest, KernelCommandLineIsBounded) {
  VmSpec spec = TestSpec("web-1");
  spec.cmdline = std::string(2048, 'x');
  EXPECT_TRUE(ValidateSpec(spec).ok());
  spec.cmdline = std::string(2049, 'x');
  EXPECT_EQ(ValidateSpec(spec).message(),
            "spec.cmdline: kernel command line must be at most 2048 bytes (got 2049)");
}

}  // namespace
}  // namespace vmlet::api
