#include "manifests/manifest_parser.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <ostream>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "api/vm_spec.h"
#include "manifests/manifest_error.h"
#include "tests/support/temp_dir.h"

namespace vmlet::manifests {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::SizeIs;
using namespace std::string_literals;
using namespace std::chrono_literals;

// ---------------------------------------------------------------------------
// Building manifests. Every helper documents which line its argument starts
// on, so that the positions in the tests can be checked by eye.

// apiVersion and kind on lines 1-2; `rest` starts on line 3.
std::string Document(std::string_view rest) {
  return "apiVersion: vmlet.dev/v1alpha1\n"
         "kind: VirtualMachine\n" +
         std::string(rest);
}

// Lines 3-5 of Vm().
constexpr std::string_view kMetadata =
    "metadata:\n"
    "  name: web-1\n"
    "  namespace: prod\n";

// A spec with nothing but its required kernel: two lines.
constexpr std::string_view kSpec =
    "spec:\n"
    "  kernel: /boot/vmlinuz\n";

// A valid VirtualMachine prod/<name>; `spec_lines` (indented by two to be
// spec fields, unindented to be top-level fields) start on line 8:
//   1 apiVersion: vmlet.dev/v1alpha1
//   2 kind: VirtualMachine
//   3 metadata:
//   4   name: <name>
//   5   namespace: prod
//   6 spec:
//   7   kernel: /boot/vmlinuz
std::string Vm(std::string_view name, std::string_view spec_lines = "") {
  return Document("metadata:\n  name: " + std::string(name) + "\n  namespace: prod\n" +
                  std::string(kSpec) + std::string(spec_lines));
}

// Vm("web-1", spec_lines): `spec_lines` start on line 8.
std::string Manifest(std::string_view spec_lines) { return Vm("web-1", spec_lines); }

// Lines 1-6 of Manifest(), without the kernel: `spec_lines` start on line 7.
std::string SpecWithoutKernel(std::string_view spec_lines) {
  return Document(std::string(kMetadata) + "spec:\n" + std::string(spec_lines));
}

// apiVersion, kind and kSpec on lines 1-4; `metadata_block` (which starts
// with "metadata:") starts on line 5, so its first field is on line 6.
std::string MetadataLast(std::string_view metadata_block) {
  return Document(std::string(kSpec) + std::string(metadata_block));
}

// The same layout as a JSON file: apiVersion and kind on lines 1-3 ("{" is
// line 1); `rest` starts on line 4.
std::string Json(std::string_view rest) {
  return "{\n"
         "  \"apiVersion\": \"vmlet.dev/v1alpha1\",\n"
         "  \"kind\": \"VirtualMachine\",\n" +
         std::string(rest);
}

// The rest of a valid JSON manifest, three lines.
constexpr std::string_view kJsonTail =
    "  \"metadata\": {\"name\": \"web-1\"},\n"
    "  \"spec\": {\"kernel\": \"/boot/vmlinuz\"}\n"
    "}\n";

std::string Repeat(char c, size_t n) { return std::string(n, c); }

ParseResult Parse(std::string_view content, std::string_view file = "web.yaml",
                  const ParseOptions& options = ParseOptions{}) {
  return ParseManifest(file, content, options);
}

std::vector<std::string> Strings(const std::vector<ManifestError>& errors) {
  std::vector<std::string> out;
  for (const ManifestError& e : errors) out.push_back(e.ToString());
  return out;
}

std::string Describe(const std::vector<ManifestError>& errors) {
  std::string out;
  for (const ManifestError& e : errors) {
    out += "\n  " + e.ToString() + " [" + std::string(ErrorKindName(e.kind)) + "]";
  }
  return out;
}

// ---------------------------------------------------------------------------
// Bad manifests: each yields exactly one error, at an exact place.

struct BadManifestCase {
  std::string name;
  std::string content;
  int line;
  int column;
  std::string field;
  ErrorKind kind;
  std::string reason_substring;
  std::string file = "web.yaml";
  size_t valid_vms = 0;  // the other, valid documents of the file
};

void PrintTo(const BadManifestCase& c, std::ostream* os) { *os << c.name; }

std::string CaseName(const ::testing::TestParamInfo<BadManifestCase>& info) {
  return info.param.name;
}

std::vector<BadManifestCase> BadManifestCases() {
  using enum ErrorKind;
  const std::string kJson = "x.json";
  const std::string kName129 = Repeat('a', 129);
  // Columns are 1-based and name the first character of the offending key or
  // value (the opening quote of a quoted value, the tag of a tagged one), or
  // of the enclosing mapping for a missing field.
  return {
      // --- YAML syntax ---
      {"UnclosedFlowSequenceIsReportedWhereTheClosingBracketWasExpected",
       Manifest("  networks: [{tap: tap0}\n"
                "  cpus: 2\n"),
       9, 3, "-", kSyntax, "end of sequence flow not found"},
      {"UnclosedFlowMappingIsReportedAtTheEndOfTheFile",
       Manifest("  readiness: {timeoutSeconds: 60\n"), 9, 1, "-", kSyntax,
       "end of map flow not found"},
      {"UnderIndentedKeyIsASyntaxErrorAtThatKey",
       Document("metadata:\n"
                "  name: web-1\n"
                " namespace: prod\n" +
                std::string(kSpec)),
       5, 2, "-", kSyntax, "end of map not found"},
      {"SecondColonInAPlainValueIsASyntaxError", Manifest("  cmdline: a: b\n"), 8, 13, "-", kSyntax,
       "illegal map value"},
      {"AliasOfAnUndefinedAnchorIsASyntaxError", Manifest("  cpus: *nope\n"), 8, 9, "-", kSyntax,
       "anchor is not defined"},

      // --- JSON syntax (x.json) ---
      {"TrailingCommaInJsonIsReportedAtTheClosingBrace",
       Json("  \"metadata\": {\"name\": \"web-1\",},\n"
            "  \"spec\": {\"kernel\": \"/boot/vmlinuz\"}\n"
            "}\n"),
       4, 32, "-", kSyntax, "unexpected '}'", kJson},
      {"CommentInJsonIsASyntaxError", Json("  // the web server\n" + std::string(kJsonTail)), 4, 3,
       "-", kSyntax, "invalid literal", kJson},
      {"UnquotedKeyInJsonIsASyntaxError",
       Json("  metadata: {\"name\": \"web-1\"},\n"
            "  \"spec\": {\"kernel\": \"/boot/vmlinuz\"}\n"
            "}\n"),
       4, 3, "-", kSyntax, "invalid literal", kJson},
      {"SecondValueAfterTheJsonObjectIsASyntaxError", Json(std::string(kJsonTail) + "{}\n"), 7, 1,
       "-", kSyntax, "expected end of input", kJson},

      // --- JSON, valid syntax but a bad manifest ---
      {"QuotedNumberForCpusInJsonIsAWrongType",
       Json("  \"metadata\": {\"name\": \"web-1\"},\n"
            "  \"spec\": {\"kernel\": \"/boot/vmlinuz\", \"cpus\": \"2\"}\n"
            "}\n"),
       5, 47, "spec.cpus", kWrongType, "must be an integer, got string \"2\"", kJson},
      {"NumberForNameInJsonIsAWrongType",
       Json("  \"metadata\": {\"name\": 7},\n"
            "  \"spec\": {\"kernel\": \"/boot/vmlinuz\"}\n"
            "}\n"),
       4, 24, "metadata.name", kWrongType, "must be a string, got integer \"7\"", kJson},
      {"UnknownFieldInJsonSuggestsTheRightOne",
       Json("  \"metadata\": {\"name\": \"web-1\"},\n"
            "  \"spec\": {\"kernel\": \"/boot/vmlinuz\", \"memory\": 512}\n"
            "}\n"),
       5, 39, "spec.memory", kUnknownField, "unknown field \"memory\" (did you mean \"memoryMb\"?)",
       kJson},
      {"DuplicateKeyInJsonIsReportedAtTheSecondCopy",
       Json("  \"kind\": \"VirtualMachine\",\n" + std::string(kJsonTail)), 4, 3, "kind",
       kDuplicateKey, "duplicate key \"kind\" (first at line 3)", kJson},

      // --- unknown fields, at every level ---
      {"UnknownTopLevelField", Manifest("status: {phase: Running}\n"), 8, 1, "status",
       kUnknownField, "unknown field \"status\""},
      {"MiscapitalisedTopLevelFieldSuggestsTheRightOne", Manifest("Kind: VirtualMachine\n"), 8, 1,
       "Kind", kUnknownField, "unknown field \"Kind\" (did you mean \"kind\"?)"},
      {"UnknownMetadataField",
       MetadataLast("metadata:\n"
                    "  name: web-1\n"
                    "  annotations: {owner: ops}\n"),
       7, 3, "metadata.annotations", kUnknownField, "unknown field \"annotations\""},
      {"SnakeCaseSpecFieldSuggestsTheCamelCaseOne", Manifest("  memory_mb: 512\n"), 8, 3,
       "spec.memory_mb", kUnknownField, "unknown field \"memory_mb\" (did you mean \"memoryMb\"?)"},
      {"LowercaseSpecFieldSuggestsTheCamelCaseOne", Manifest("  desiredstate: Running\n"), 8, 3,
       "spec.desiredstate", kUnknownField,
       "unknown field \"desiredstate\" (did you mean \"desiredState\"?)"},
      {"UnknownReadinessField",
       Manifest("  readiness:\n"
                "    timeoutSeconds: 60\n"
                "    periodSeconds: 5\n"),
       10, 5, "spec.readiness.periodSeconds", kUnknownField, "unknown field \"periodSeconds\""},
      {"UnknownNetworkField",
       Manifest("  networks:\n"
                "    - tap: tap0\n"
                "      bridge: br0\n"),
       10, 7, "spec.networks[0].bridge", kUnknownField, "unknown field \"bridge\""},
      {"UnknownFieldInSecondSharedDirSuggestsTheRightOne",
       Manifest("  sharedDirs:\n"
                "    - {hostPath: /srv/a, tag: a}\n"
                "    - {hostPath: /srv/b, tag: b, readonly: true}\n"),
       10, 34, "spec.sharedDirs[1].readonly", kUnknownField,
       "unknown field \"readonly\" (did you mean \"readOnly\"?)"},

      // --- duplicate keys, at every level ---
      {"DuplicateTopLevelKey", Manifest("kind: VirtualMachine\n"), 8, 1, "kind", kDuplicateKey,
       "duplicate key \"kind\" (first at line 2)"},
      {"DuplicateMetadataKey",
       MetadataLast("metadata:\n"
                    "  name: web-1\n"
                    "  name: web-2\n"),
       7, 3, "metadata.name", kDuplicateKey, "duplicate key \"name\" (first at line 6)"},
      {"DuplicateSpecKey",
       Manifest("  cpus: 2\n"
                "  cpus: 4\n"),
       9, 3, "spec.cpus", kDuplicateKey, "duplicate key \"cpus\" (first at line 8)"},
      {"DuplicateKeyInsideANetwork",
       Manifest("  networks:\n"
                "    - {tap: tap0, tap: tap1}\n"),
       9, 19, "spec.networks[0].tap", kDuplicateKey, "duplicate key \"tap\" (first at line 9)"},
      {"DuplicateLabel",
       MetadataLast("metadata:\n"
                    "  name: web-1\n"
                    "  labels:\n"
                    "    app: web\n"
                    "    app: api\n"),
       9, 5, "metadata.labels.app", kDuplicateKey, "duplicate key \"app\" (first at line 8)"},

      // --- wrong types ---
      {"QuotedNumberForCpusIsAWrongType", Manifest("  cpus: \"2\"\n"), 8, 9, "spec.cpus",
       kWrongType, "must be an integer, got string \"2\""},
      {"NumberForNameIsAWrongType", MetadataLast("metadata:\n  name: 123\n"), 6, 9, "metadata.name",
       kWrongType, "must be a string, got integer \"123\" (quote it to make it a string)"},
      {"NumberForKernelIsAWrongType", SpecWithoutKernel("  kernel: 42\n"), 7, 11, "spec.kernel",
       kWrongType, "must be a string, got integer \"42\""},
      {"BooleanForNodeNameIsAWrongType", Manifest("  nodeName: true\n"), 8, 13, "spec.nodeName",
       kWrongType, "must be a string, got boolean \"true\" (quote it to make it a string)"},
      {"YesForVsockIsAStringNotABoolean", Manifest("  vsock: yes\n"), 8, 10, "spec.vsock",
       kWrongType, "must be a boolean (true or false), got string \"yes\""},
      {"QuotedTrueForReadOnlyIsAWrongType",
       Manifest("  sharedDirs:\n"
                "    - {hostPath: /srv/web, tag: web, readOnly: \"true\"}\n"),
       9, 48, "spec.sharedDirs[0].readOnly", kWrongType,
       "must be a boolean (true or false), got string \"true\""},
      {"MappingForCmdlineIsAWrongType", Manifest("  cmdline: {console: ttyS0}\n"), 8, 12,
       "spec.cmdline", kWrongType, "must be a string, got mapping"},
      {"ListForSpecIsAWrongType", Document(std::string(kMetadata) + "spec: []\n"), 6, 7, "spec",
       kWrongType, "must be a mapping, got list"},
      {"ScalarForMetadataIsAWrongType", MetadataLast("metadata: web-1\n"), 5, 11, "metadata",
       kWrongType, "must be a mapping, got string \"web-1\""},
      {"NumberForReadinessIsAWrongType", Manifest("  readiness: 5\n"), 8, 14, "spec.readiness",
       kWrongType, "must be a mapping, got integer \"5\""},
      {"ScalarForNetworksIsAWrongType", Manifest("  networks: tap0\n"), 8, 13, "spec.networks",
       kWrongType, "must be a list, got string \"tap0\""},
      {"ScalarNetworkItemIsAWrongType",
       Manifest("  networks:\n"
                "    - tap0\n"),
       9, 7, "spec.networks[0]", kWrongType, "must be a mapping with tap and mac, got string"},
      {"NumberForLabelValueIsAWrongType",
       MetadataLast("metadata:\n"
                    "  name: web-1\n"
                    "  labels:\n"
                    "    version: 1\n"),
       8, 14, "metadata.labels.version", kWrongType, "must be a string, got integer \"1\""},
      {"FloatForCpusIsAWrongType", Manifest("  cpus: 2.5\n"), 8, 9, "spec.cpus", kWrongType,
       "must be an integer, got number \"2.5\""},
      {"CustomTagIsAWrongType", Manifest("  cpus: !foo 2\n"), 8, 9, "spec.cpus", kWrongType,
       "unsupported YAML tag \"!foo\""},
      {"ListDocumentIsAWrongType", "- apiVersion: vmlet.dev/v1alpha1\n", 1, 1, "-", kWrongType,
       "a manifest document must be a mapping"},

      // --- integers out of range ---
      {"CpusAbove32BitsIsOutOfRange", Manifest("  cpus: 4294967296\n"), 8, 9, "spec.cpus",
       kInvalidValue, "integer 4294967296 is out of range"},
      {"MemoryAbove64BitsIsOutOfRange", Manifest("  memoryMb: 99999999999999999999\n"), 8, 13,
       "spec.memoryMb", kInvalidValue, "integer 99999999999999999999 is out of range"},
      {"MemoryWhoseByteCountOverflowsIsTooLarge", Manifest("  memoryMb: 9223372036854775807\n"), 8,
       13, "spec.memoryMb", kInvalidValue, "memoryMb is too large"},
      {"ReadinessTimeoutBeyondTheLimitIsOutOfRange",
       Manifest("  readiness: {timeoutSeconds: 1099511627777}\n"), 8, 31,
       "spec.readiness.timeoutSeconds", kInvalidValue, "integer 1099511627777 is out of range"},
      {"NegativeCpusIsOutOfRange", Manifest("  cpus: -1\n"), 8, 9, "spec.cpus", kInvalidValue,
       "must not be negative, got -1"},

      // --- missing fields: at the enclosing mapping; null values: at the value ---
      {"MissingApiVersion", "kind: VirtualMachine\n" + std::string(kMetadata) + std::string(kSpec),
       1, 1, "apiVersion", kMissingField, "required field is missing"},
      {"MissingKind",
       "apiVersion: vmlet.dev/v1alpha1\n" + std::string(kMetadata) + std::string(kSpec), 1, 1,
       "kind", kMissingField, "required field is missing"},
      {"MissingMetadata", Document(kSpec), 1, 1, "metadata", kMissingField,
       "required field is missing"},
      {"MissingName", Document("metadata:\n  namespace: prod\n" + std::string(kSpec)), 4, 3,
       "metadata.name", kMissingField, "required field is missing"},
      {"MissingNameInEmptyFlowMetadata", Document("metadata: {}\n" + std::string(kSpec)), 3, 11,
       "metadata.name", kMissingField, "required field is missing"},
      {"MissingSpec", Document(kMetadata), 1, 1, "spec", kMissingField,
       "required field is missing"},
      {"MissingKernel", SpecWithoutKernel("  cpus: 2\n"), 7, 3, "spec.kernel", kMissingField,
       "required field is missing"},
      {"MissingTapOfSecondNetwork",
       Manifest("  networks:\n"
                "    - {tap: tap0}\n"
                "    - {mac: \"52:54:00:12:34:56\"}\n"),
       10, 7, "spec.networks[1].tap", kMissingField, "required field is missing"},
      {"MissingHostPathOfSharedDir",
       Manifest("  sharedDirs:\n"
                "    - tag: web\n"
                "      readOnly: true\n"),
       9, 7, "spec.sharedDirs[0].hostPath", kMissingField, "required field is missing"},
      {"MissingTagOfSharedDir",
       Manifest("  sharedDirs:\n"
                "    - {hostPath: /srv/web}\n"),
       9, 7, "spec.sharedDirs[0].tag", kMissingField, "required field is missing"},
      {"NullKernelIsMissing", SpecWithoutKernel("  kernel: null\n"), 7, 11, "spec.kernel",
       kMissingField, "required field must not be empty"},
      {"TildeNameIsMissing", MetadataLast("metadata:\n  name: ~\n"), 6, 9, "metadata.name",
       kMissingField, "required field must not be empty"},

      // --- invalid values ---
      {"WrongApiVersion",
       "apiVersion: vmlet.dev/v1\nkind: VirtualMachine\n" + std::string(kMetadata) +
           std::string(kSpec),
       1, 13, "apiVersion", kInvalidValue, "must be \"vmlet.dev/v1alpha1\", got \"vmlet.dev/v1\""},
      {"WrongKind",
       "apiVersion: vmlet.dev/v1alpha1\nkind: VM\n" + std::string(kMetadata) + std::string(kSpec),
       2, 7, "kind", kInvalidValue, "must be \"VirtualMachine\", got \"VM\""},
      {"LowercaseDesiredStateIsInvalid", Manifest("  desiredState: running\n"), 8, 17,
       "spec.desiredState", kInvalidValue,
       "must be one of Running, Paused, Stopped, got \"running\""},
      {"UnknownRestartPolicyIsInvalid", Manifest("  restartPolicy: Sometimes\n"), 8, 18,
       "spec.restartPolicy", kInvalidValue,
       "must be one of Always, OnFailure, Never, got \"Sometimes\""},
      {"UnknownDriverIsInvalid", Manifest("  driver: firecracker\n"), 8, 11, "spec.driver",
       kInvalidValue, "unknown driver \"firecracker\" (known: qemu, cloud-hypervisor, fake)"},
      {"EmptyNameIsInvalid", MetadataLast("metadata:\n  name: \"\"\n"), 6, 9, "metadata.name",
       kInvalidValue, "must not be empty"},
      {"NameOf129CharactersIsInvalid", MetadataLast("metadata:\n  name: " + kName129 + "\n"), 6, 9,
       "metadata.name", kInvalidValue, "must be 128 characters or fewer (got 129)"},
      {"NameWithASlashIsInvalid", MetadataLast("metadata:\n  name: web/1\n"), 6, 9, "metadata.name",
       kInvalidValue, "must contain only alphanumeric characters, hyphens, underscores, and dots"},
      {"NameStartingWithADotIsInvalid", MetadataLast("metadata:\n  name: .web\n"), 6, 9,
       "metadata.name", kInvalidValue, "must not start with '.' or '-'"},
      {"NameStartingWithAHyphenIsInvalid", MetadataLast("metadata:\n  name: \"-web\"\n"), 6, 9,
       "metadata.name", kInvalidValue, "must not start with '.' or '-'"},
      {"EmptyNamespaceIsInvalid", MetadataLast("metadata:\n  name: web-1\n  namespace: \"\"\n"), 7,
       14, "metadata.namespace", kInvalidValue, "must not be empty"},
      {"NamespaceOf129CharactersIsInvalid",
       MetadataLast("metadata:\n  name: web-1\n  namespace: " + kName129 + "\n"), 7, 14,
       "metadata.namespace", kInvalidValue, "must be 128 characters or fewer (got 129)"},
      {"NamespaceWithASlashIsInvalid",
       MetadataLast("metadata:\n  name: web-1\n  namespace: prod/eu\n"), 7, 14,
       "metadata.namespace", kInvalidValue,
       "must contain only alphanumeric characters, hyphens, underscores, and dots"},
      {"NamespaceStartingWithADotIsInvalid",
       MetadataLast("metadata:\n  name: web-1\n  namespace: .prod\n"), 7, 14, "metadata.namespace",
       kInvalidValue, "must not start with '.' or '-'"},
      {"NamespaceStartingWithAHyphenIsInvalid",
       MetadataLast("metadata:\n  name: web-1\n  namespace: \"-prod\"\n"), 7, 14,
       "metadata.namespace", kInvalidValue, "must not start with '.' or '-'"},
      {"ZeroCpusIsInvalid", Manifest("  cpus: 0\n"), 8, 9, "spec.cpus", kInvalidValue,
       "cpus must be at least 1"},
      {"ZeroMemoryIsInvalid", Manifest("  memoryMb: 0\n"), 8, 13, "spec.memoryMb", kInvalidValue,
       "memoryMb must be at least 1"},
      {"RelativeInitramfsIsInvalid", Manifest("  initramfs: boot/initrd\n"), 8, 14,
       "spec.initramfs", kInvalidValue,
       "must be an absolute path (starting with '/'), got \"boot/initrd\""},
      {"RelativeEfiVariableStoreIsInvalid", Manifest("  efiVariableStore: efi/web-1.fd\n"), 8, 21,
       "spec.efiVariableStore", kInvalidValue, "must be an absolute path"},
      {"RootDiskClimbingOutWithDotDotIsInvalid",
       Manifest("  rootDisk: /var/lib/vmlet/../../etc/shadow\n"), 8, 13, "spec.rootDisk",
       kInvalidValue, "must not contain a \"..\" component"},
      {"SeedIsoEndingInDotDotIsInvalid", Manifest("  seedIso: /var/lib/vmlet/..\n"), 8, 12,
       "spec.seedIso", kInvalidValue, "must not contain a \"..\" component"},
      {"EmptyDataDiskIsInvalid", Manifest("  dataDisk: \"\"\n"), 8, 13, "spec.dataDisk",
       kInvalidValue, "must not be empty"},
      {"KernelWithAnEscapedNulIsInvalid", SpecWithoutKernel("  kernel: \"/boot/vm\\0linuz\"\n"), 7,
       11, "spec.kernel", kInvalidValue, "must not contain a NUL character"},
      {"MacWithDashesIsInvalid",
       Manifest("  networks:\n"
                "    - {tap: tap0, mac: 52-54-00-12-34-56}\n"),
       9, 24, "spec.networks[0].mac", kInvalidValue,
       "must be a MAC address like 52:54:00:12:34:56, got \"52-54-00-12-34-56\""},
      {"MulticastMacIsInvalid",
       Manifest("  networks:\n"
                "    - tap: tap0\n"
                "      mac: \"01:00:5e:00:00:01\"\n"),
       10, 12, "spec.networks[0].mac", kInvalidValue, "must be a unicast address"},
      {"SameMacInAnotherCaseIsADuplicate",
       Manifest("  networks:\n"
                "    - {tap: tap0, mac: \"52:54:00:AB:CD:EF\"}\n"
                "    - {tap: tap1, mac: \"52:54:00:ab:cd:ef\"}\n"),
       10, 24, "spec.networks[1].mac", kInvalidValue, "MAC 52:54:00:ab:cd:ef is used twice"},
      {"SameTapTwiceIsInvalid",
       Manifest("  networks:\n"
                "    - {tap: tap0}\n"
                "    - {tap: tap0}\n"),
       10, 13, "spec.networks[1].tap", kInvalidValue, "TAP \"tap0\" is attached twice"},
      {"TapNameOf16CharactersIsInvalid",
       Manifest("  networks:\n"
                "    - {tap: tap-0123456789ab}\n"),
       9, 13, "spec.networks[0].tap", kInvalidValue,
       "TAP name must be 1..15 characters of [A-Za-z0-9_-], got \"tap-0123456789ab\""},
      {"SameSharedDirTagTwiceIsInvalid",
       Manifest("  sharedDirs:\n"
                "    - {hostPath: /srv/a, tag: data}\n"
                "    - {hostPath: /srv/b, tag: data}\n"),
       10, 31, "spec.sharedDirs[1].tag", kInvalidValue,
       "tag \"data\" is used by another shared directory"},
      {"NegativeReadinessTimeoutIsInvalid",
       Manifest("  readiness:\n"
                "    timeoutSeconds: -1\n"),
       9, 21, "spec.readiness.timeoutSeconds", kInvalidValue, "must not be negative"},
      {"NegativeStopGracePeriodIsInvalid", Manifest("  stopGracePeriodSeconds: -5\n"), 8, 27,
       "spec.stopGracePeriodSeconds", kInvalidValue, "must not be negative"},
      {"MachineIdThatIsNotBase64IsInvalid", Manifest("  machineId: not-base64!\n"), 8, 14,
       "spec.machineId", kInvalidValue, "must be base64"},
      {"CmdlineOf2049BytesIsInvalid", Manifest("  cmdline: " + Repeat('a', 2049) + "\n"), 8, 12,
       "spec.cmdline", kInvalidValue, "kernel command line must be at most 2048 bytes (got 2049)"},
      {"CmdlineWithAnEscapedNewlineIsInvalid", Manifest("  cmdline: \"quiet\\nroot=/dev/vda\"\n"),
       8, 12, "spec.cmdline", kInvalidValue, "must be one line"},
      {"NodeNameWithAnUnderscoreIsInvalid", Manifest("  nodeName: host_a\n"), 8, 13,
       "spec.nodeName", kInvalidValue, "must be a host name"},
      {"NetnsStartingWithAHyphenIsInvalid", Manifest("  netns: -blue\n"), 8, 10, "spec.netns",
       kInvalidValue, "must be a network namespace name"},
      {"RosettaIsUnsupportedByLinuxDrivers", Manifest("  rosetta: true\n"), 8, 12, "spec.rosetta",
       kUnsupportedByDriver, "Rosetta exists only on macOS"},
      {"LabelKeyWithAnUppercasePrefixIsInvalid",
       MetadataLast("metadata:\n"
                    "  name: web-1\n"
                    "  labels:\n"
                    "    Example.com/app: web\n"),
       8, 5, "metadata.labels.Example.com/app", kInvalidValue,
       "label key prefix \"Example.com\" must be a lowercase DNS subdomain"},

      // --- later documents: lines count across the whole file ---
      {"ErrorInSecondDocumentCountsLinesFromTheTopOfTheFile",
       Vm("web-1") + "---\n" + Vm("web-2", "  cpus: 0\n"), 16, 9, "spec.cpus", kInvalidValue,
       "cpus must be at least 1", "web.yaml", 1},
      {"ErrorInThirdDocumentCountsLinesFromTheTopOfTheFile",
       Vm("web-1") + "---\n" + Vm("web-2") + "---\n" + Vm("web-3", "  memory_mb: 1\n"), 24, 3,
       "spec.memory_mb", kUnknownField, "did you mean \"memoryMb\"?", "web.yaml", 2},
      {"MissingFieldInSecondDocumentIsAtThatDocument",
       Vm("web-1") + "---\n" + "kind: VirtualMachine\n" + std::string(kMetadata) +
           std::string(kSpec),
       9, 1, "apiVersion", kMissingField, "required field is missing", "web.yaml", 1},
  };
}

class BadManifestTest : public ::testing::TestWithParam<BadManifestCase> {};

TEST_P(BadManifestTest, YieldsOneErrorWithItsExactPlaceFieldKindAndReason) {
  const BadManifestCase& c = GetParam();
  ParseResult result = Parse(c.content, c.file);

  ASSERT_THAT(result.errors, SizeIs(1)) << Describe(result.errors);
  const ManifestError& error = result.errors[0];
  EXPECT_EQ(error.location.file, c.file);
  EXPECT_EQ(error.location.line, c.line) << error;
  EXPECT_EQ(error.location.column, c.column) << error;
  EXPECT_EQ(error.field, c.field);
  EXPECT_EQ(ErrorKindName(error.kind), ErrorKindName(c.kind)) << error;
  EXPECT_THAT(error.reason, HasSubstr(c.reason_substring));
  EXPECT_THAT(result.vms, SizeIs(c.valid_vms));
}

INSTANTIATE_TEST_SUITE_P(ManifestParser, BadManifestTest, ::testing::ValuesIn(BadManifestCases()),
                         CaseName);

// Regressions: each case is a bug these tests found; the comment says what
// used to happen.
std::vector<BadManifestCase> RegressionCases() {
  using enum ErrorKind;
  return {
      // Was: a tab used for indentation is reported at the ':' (4:6) as
      // "illegal map value"; the offending character is the tab at 4:1.
      {"TabIndentationIsASyntaxErrorAtTheTab",
       Document("metadata:\n"
                "\tname: web-1\n" +
                std::string(kSpec)),
       4, 1, "-", kSyntax, "tab"},
      // Was: a double-quoted value left open is accepted: the quote swallows
      // the rest of the file (here metadata.name becomes "web-1 spec: ...").
      {"UnterminatedDoubleQuoteIsASyntaxError",
       Document("metadata:\n"
                "  name: \"web-1\n" +
                std::string(kSpec)),
       4, 9, "-", kSyntax, "quote"},
      // Was: same with a single quote.
      {"UnterminatedSingleQuoteIsASyntaxError",
       Document("metadata:\n"
                "  name: 'web-1\n" +
                std::string(kSpec)),
       4, 9, "-", kSyntax, "quote"},
      // Was: a file cut off inside a quoted value (a partial write) is
      // accepted as a whole VM with cmdline "console=ttyS0 ".
      {"FileEndingInsideAQuotedValueIsASyntaxError", Manifest("  cmdline: \"console=ttyS0\n"), 8,
       12, "-", kSyntax, "quote"},
      // Was: an empty required value (`kernel:` and nothing) is located at
      // the next key (8:3, the `cpus` line) instead of on its own line.
      {"EmptyKernelIsMissingAtItsKey",
       SpecWithoutKernel("  kernel:\n"
                         "  cpus: 2\n"),
       7, 3, "spec.kernel", kMissingField, "required field must not be empty"},
      // Was: the same at the end of the file is located past the last line
      // (8:1).
      {"EmptySpecAtTheEndOfTheFileIsMissingAtItsKey", Document(std::string(kMetadata) + "spec:\n"),
       6, 1, "spec", kMissingField, "required field must not be empty"},
      // Was: an invalid label value is located at its key (8:5), not at the
      // value.
      {"LabelValueWithASpaceIsInvalidAtTheValue",
       MetadataLast("metadata:\n"
                    "  name: web-1\n"
                    "  labels:\n"
                    "    app: web server\n"),
       8, 10, "metadata.labels.app", kInvalidValue, "label value must be empty or 1..63"},
      // Was: `!!bool` on text that is not true/false is read as false and
      // accepted.
      {"BoolTagOnYesIsNotABoolean", Manifest("  vsock: !!bool yes\n"), 8, 10, "spec.vsock",
       kWrongType, "must be a boolean (true or false)"},
      // Was: `!!null` on text that is not a null makes the field unset, and
      // the manifest is accepted.
      {"NullTagOnTextIsNotANull", Manifest("  cmdline: !!null console=ttyS0\n"), 8, 12,
       "spec.cmdline", kWrongType, "must be a string"},
      // Was: a raw NUL byte is not a YAML character; today "a<NUL>b" is read
      // as "a", a backspace and a space, and the manifest is accepted.
      {"RawNulByteIsASyntaxError", Manifest("  cmdline: a"s + '\0' + "b\n"), 8, 13, "-", kSyntax,
       "NUL"},
  };
}

INSTANTIATE_TEST_SUITE_P(ManifestParserRegressions, BadManifestTest,
                         ::testing::ValuesIn(RegressionCases()), CaseName);

// ---------------------------------------------------------------------------
// Valid manifests.

constexpr std::string_view kFullManifest = R"(apiVersion: vmlet.dev/v1alpha1
kind: VirtualMachine
metadata:
  name: web-1
  namespace: prod
  labels: {app: web, tier: frontend}
spec:
  desiredState: Paused
  restartPolicy: OnFailure
  driver: cloud-hypervisor
  nodeName: host-a
  kernel: /var/lib/vmlet/images/vmlinuz
  initramfs: /var/lib/vmlet/images/initrd
  cmdline: "console=ttyS0 quiet"
  rootDisk: /var/lib/vmlet/disks/web-1.raw
  dataDisk: /var/lib/vmlet/disks/web-1-data.raw
  seedIso: /var/lib/vmlet/disks/web-1-seed.iso
  cpus: 2
  memoryMb: 768
  networks:
    - {tap: tap-web1, mac: "52:54:00:12:34:56"}
    - tap: tap-web1b
      mac: "52:54:00:12:34:57"
  sharedDirs:
    - {hostPath: /srv/web, tag: web, readOnly: true}
    - {hostPath: /srv/cache, tag: cache, readOnly: false}
  netns: blue
  vsock: true
  machineId: "AAECAw=="
  efiVariableStore: /var/lib/vmlet/efi/web-1.fd
  rosetta: false
  readiness: {timeoutSeconds: 120}
  stopGracePeriodSeconds: 45
)";

TEST(ManifestParserTest, FullManifestParsesIntoEveryField) {
  ParseResult result = Parse(kFullManifest);

  ASSERT_THAT(result.errors, IsEmpty()) << Describe(result.errors);
  ASSERT_THAT(result.vms, SizeIs(1));
  const ManifestVm& vm = result.vms[0];
  EXPECT_EQ(vm.location.ToString(), "web.yaml:1:1");
  const api::VmSpec& s = vm.spec;
  EXPECT_EQ(s.name, "web-1");
  EXPECT_EQ(s.ns, "prod");
  EXPECT_EQ(s.labels, (std::map<std::string, std::string>{{"app", "web"}, {"tier", "frontend"}}));
  EXPECT_EQ(s.desired_state, api::DesiredState::kPaused);
  EXPECT_EQ(s.restart_policy, api::RestartPolicy::kOnFailure);
  EXPECT_EQ(s.driver, "cloud-hypervisor");
  EXPECT_EQ(s.node_name, "host-a");
  EXPECT_EQ(s.kernel, "/var/lib/vmlet/images/vmlinuz");
  EXPECT_EQ(s.initramfs, "/var/lib/vmlet/images/initrd");
  EXPECT_EQ(s.cmdline, "console=ttyS0 quiet");
  EXPECT_EQ(s.root_disk, "/var/lib/vmlet/disks/web-1.raw");
  EXPECT_EQ(s.data_disk, "/var/lib/vmlet/disks/web-1-data.raw");
  EXPECT_EQ(s.seed_iso, "/var/lib/vmlet/disks/web-1-seed.iso");
  EXPECT_EQ(s.cpus, 2u);
  EXPECT_EQ(s.memory_mb, 768u);
  EXPECT_THAT(s.networks, ElementsAre(api::NetworkAttachment{"tap-web1", "52:54:00:12:34:56"},
                                      api::NetworkAttachment{"tap-web1b", "52:54:00:12:34:57"}));
  EXPECT_THAT(s.shared_dirs, ElementsAre(api::SharedDir{"/srv/web", "web", true},
                                         api::SharedDir{"/srv/cache", "cache", false}));
  EXPECT_EQ(s.netns, "blue");
  EXPECT_TRUE(s.vsock);
  EXPECT_EQ(s.machine_id, "AAECAw==");
  EXPECT_EQ(s.efi_variable_store, "/var/lib/vmlet/efi/web-1.fd");
  EXPECT_FALSE(s.rosetta);
  EXPECT_EQ(s.readiness_timeout, 120s);
  EXPECT_EQ(s.stop_grace_period, 45s);
  EXPECT_EQ(s.serial_log, "");
}

TEST(ManifestParserTest, MinimalManifestGetsEveryDefault) {
  ParseOptions options;
  options.default_driver = "fake";
  ParseResult result =
      Parse(Document("metadata:\n  name: web-1\n" + std::string(kSpec)), "web.yaml", options);

  ASSERT_THAT(result.errors, IsEmpty()) << Describe(result.errors);
  ASSERT_THAT(result.vms, SizeIs(1));
  api::VmSpec expected;
  expected.name = "web-1";
  expected.ns = "default";
  expected.desired_state = api::DesiredState::kRunning;
  expected.restart_policy = api::RestartPolicy::kAlways;
  expected.driver = "fake";
  expected.readiness_timeout = 300s;
  expected.stop_grace_period = 30s;
  expected.kernel = "/boot/vmlinuz";
  expected.cpus = 1;
  expected.memory_mb = 512;
  expected.vsock = false;
  expected.rosetta = false;
  EXPECT_TRUE(result.vms[0].spec == expected);
  EXPECT_EQ(result.vms[0].spec.node_name, std::nullopt);
  EXPECT_EQ(result.vms[0].spec.cmdline, std::nullopt);
}

TEST(ManifestParserTest, SharedDirIsReadWriteByDefault) {
  ParseResult result = Parse(Manifest("  sharedDirs:\n    - {hostPath: /srv/web, tag: web}\n"));

  ASSERT_THAT(result.vms, SizeIs(1)) << Describe(result.errors);
  EXPECT_THAT(result.vms[0].spec.shared_dirs,
              ElementsAre(api::SharedDir{"/srv/web", "web", false}));
}

TEST(ManifestParserTest, NullOptionalFieldsAreUnset) {
  ParseResult result =
      Parse(Document("metadata:\n"
                     "  name: web-1\n"
                     "  namespace: null\n"
                     "  labels: ~\n"
                     "spec:\n"
                     "  kernel: /boot/vmlinuz\n"
                     "  initramfs: null\n"
                     "  cmdline: ~\n"
                     "  nodeName:\n"
                     "  dataDisk: null\n"
                     "  machineId: null\n"
                     "  cpus: null\n"
                     "  vsock: null\n"
                     "  networks: null\n"
                     "  readiness: null\n"));

  ASSERT_THAT(result.errors, IsEmpty()) << Describe(result.errors);
  ASSERT_THAT(result.vms, SizeIs(1));
  const api::VmSpec& s = result.vms[0].spec;
  EXPECT_EQ(s.ns, "default");
  EXPECT_THAT(s.labels, IsEmpty());
  EXPECT_EQ(s.initramfs, std::nullopt);
  EXPECT_EQ(s.cmdline, std::nullopt);
  EXPECT_EQ(s.node_name, std::nullopt);
  EXPECT_EQ(s.data_disk, std::nullopt);
  EXPECT_EQ(s.machine_id, std::nullopt);
  EXPECT_EQ(s.cpus, 1u);
  EXPECT_FALSE(s.vsock);
  EXPECT_THAT(s.networks, IsEmpty());
  EXPECT_EQ(s.readiness_timeout, 300s);
}

TEST(ManifestParserTest, ExplicitStrTagMakesANumberAString) {
  ParseResult result =
      Parse(Document("metadata:\n"
                     "  name: !!str 123\n"
                     "spec:\n"
                     "  kernel: /boot/vmlinuz\n"
                     "  cmdline: !!str 42\n"));

  ASSERT_THAT(result.vms, SizeIs(1)) << Describe(result.errors);
  EXPECT_EQ(result.vms[0].spec.name, "123");
  EXPECT_EQ(result.vms[0].spec.cmdline, "42");
}

TEST(ManifestParserTest, HexOctalAndSignedIntegersAreIntegers) {
  ParseResult result =
      Parse(Manifest("  cpus: 0x10\n"
                     "  memoryMb: 0o1000\n"
                     "  stopGracePeriodSeconds: +7\n"
                     "  readiness: {timeoutSeconds: 010}\n"));

  ASSERT_THAT(result.vms, SizeIs(1)) << Describe(result.errors);
  EXPECT_EQ(result.vms[0].spec.cpus, 16u);
  EXPECT_EQ(result.vms[0].spec.memory_mb, 512u);
  EXPECT_EQ(result.vms[0].spec.stop_grace_period, 7s);
  // YAML 1.2: a leading zero is not octal.
  EXPECT_EQ(result.vms[0].spec.readiness_timeout, 10s);
}

TEST(ManifestParserTest, LargestValuesThatFitAreAccepted) {
  ParseResult result =
      Parse(Manifest("  cpus: 4294967295\n"
                     "  memoryMb: 8796093022207\n"
                     "  readiness: {timeoutSeconds: 1099511627776}\n"));

  ASSERT_THAT(result.vms, SizeIs(1)) << Describe(result.errors);
  EXPECT_EQ(result.vms[0].spec.cpus, 4294967295u);
  EXPECT_EQ(result.vms[0].spec.memory_mb, 8796093022207u);
  EXPECT_EQ(result.vms[0].spec.readiness_timeout, std::chrono::seconds(1099511627776));
}

TEST(ManifestParserTest, NetworkWithoutMacGetsTheDefaultMacOfItsIndex) {
  ParseResult result =
      Parse(Manifest("  networks:\n"
                     "    - {tap: tap0}\n"
                     "    - {tap: tap1}\n"));

  ASSERT_THAT(result.vms, SizeIs(1)) << Describe(result.errors);
  // printf 'prod/web-1/0' | sha256sum -> d6666f...; 'prod/web-1/1' -> 18c334...
  EXPECT_THAT(result.vms[0].spec.networks,
              ElementsAre(api::NetworkAttachment{"tap0", "52:54:00:d6:66:6f"},
                          api::NetworkAttachment{"tap1", "52:54:00:18:c3:34"}));
}

TEST(ManifestParserTest, DefaultMacIsStableAndDependsOnNamespaceNameAndIndex) {
  const api::VmKey key{"prod", "web-1"};
  EXPECT_EQ(DefaultMac(key, 0), "52:54:00:d6:66:6f");
  EXPECT_EQ(DefaultMac(key, 0), DefaultMac(key, 0));
  EXPECT_EQ(DefaultMac(key, 1), "52:54:00:18:c3:34");
  // printf 'default/web-1/0' | sha256sum -> 38692e...
  EXPECT_EQ(DefaultMac(api::VmKey{"default", "web-1"}, 0), "52:54:00:38:69:2e");
}

TEST(ManifestParserTest, JsonManifestWithTabsAndEscapesParses) {
  ParseResult result = Parse(
      "{\n"
      "\t\"apiVersion\": \"vmlet.dev/v1alpha1\",\n"
      "\t\"kind\": \"VirtualMachine\",\n"
      "\t\"metadata\": {\"name\": \"web-1\", \"labels\": {}},\n"
      "\t\"spec\": {\"kernel\": \"\\/boot\\/vmlinuz\", \"cmdline\": \"a\\u0041b\", \"cpus\": 3,"
      " \"vsock\": true, \"networks\": [], \"initramfs\": null}\n"
      "}",
      "x.json");

  ASSERT_THAT(result.errors, IsEmpty()) << Describe(result.errors);
  ASSERT_THAT(result.vms, SizeIs(1));
  EXPECT_EQ(result.vms[0].spec.kernel, "/boot/vmlinuz");
  EXPECT_EQ(result.vms[0].spec.cmdline, "aAb");
  EXPECT_EQ(result.vms[0].spec.cpus, 3u);
  EXPECT_TRUE(result.vms[0].spec.vsock);
  EXPECT_EQ(result.vms[0].spec.initramfs, std::nullopt);
}

TEST(ManifestParserTest, AliasedScalarIsUsedLikeTheAnchoredOne) {
  ParseResult result =
      Parse(Manifest("  sharedDirs:\n"
                     "    - {hostPath: /srv/a, tag: a, readOnly: &ro true}\n"
                     "    - {hostPath: /srv/b, tag: b, readOnly: *ro}\n"));

  ASSERT_THAT(result.vms, SizeIs(1)) << Describe(result.errors);
  EXPECT_THAT(result.vms[0].spec.shared_dirs, ElementsAre(api::SharedDir{"/srv/a", "a", true},
                                                          api::SharedDir{"/srv/b", "b", true}));
}

TEST(ManifestParserTest, AliasedNetworkItemIsADuplicateTap) {
  ParseResult result =
      Parse(Manifest("  networks:\n"
                     "    - &net {tap: tap0}\n"
                     "    - *net\n"));

  EXPECT_THAT(result.vms, IsEmpty());
  ASSERT_THAT(result.errors, SizeIs(1)) << Describe(result.errors);
  EXPECT_EQ(result.errors[0].field, "spec.networks[1].tap");
  EXPECT_EQ(result.errors[0].kind, ErrorKind::kInvalidValue);
  EXPECT_EQ(result.errors[0].reason, "TAP \"tap0\" is attached twice");
  // An alias is the anchored node itself (yaml-cpp keeps one node), so the
  // error points at what the alias stands for: the anchored item's tap.
  EXPECT_EQ(result.errors[0].location.ToString(), "web.yaml:9:18");
}

TEST(ManifestParserTest, SelfReferentialAliasIsAnErrorNotACrash) {
  ParseResult result = Parse(Manifest("  networks: &loop [*loop]\n"));

  EXPECT_THAT(result.vms, IsEmpty());
  EXPECT_THAT(Strings(result.errors),
              ElementsAre("web.yaml:8:13: spec.networks[0]: must be a mapping with tap and mac, "
                          "got list"));
}

// ---------------------------------------------------------------------------
// Several documents.

TEST(ManifestParserTest, InvalidMiddleDocumentKeepsTheOthersAndCarriesItsKey) {
  ParseResult result =
      Parse(Vm("web-1") + "---\n" + Vm("web-2", "  cpus: 0\n") + "---\n" + Vm("web-3"));

  ASSERT_THAT(result.vms, SizeIs(2));
  EXPECT_EQ(result.vms[0].spec.name, "web-1");
  EXPECT_EQ(result.vms[0].location.ToString(), "web.yaml:1:1");
  EXPECT_EQ(result.vms[1].spec.name, "web-3");
  EXPECT_EQ(result.vms[1].location.ToString(), "web.yaml:18:1");
  ASSERT_THAT(result.errors, SizeIs(1));
  EXPECT_EQ(result.errors[0].ToString(), "web.yaml:16:9: spec.cpus: cpus must be at least 1");
  EXPECT_EQ(result.errors[0].key, (api::VmKey{"prod", "web-2"}));
}

TEST(ManifestParserTest, ErrorsCarryTheNodeTheirDocumentPlacesTheVmOn) {
  ParseResult result =
      Parse(Vm("web-1", "  cpus: 0\n  nodeName: host-b\n") + "---\n" + Vm("web-2", "  cpus: 0\n") +
            "---\n" + Vm("web-3", "  nodeName: host_b\n"));

  ASSERT_THAT(result.errors, SizeIs(3)) << Describe(result.errors);
  EXPECT_EQ(result.errors[0].node_name, "host-b");
  EXPECT_EQ(result.errors[1].node_name, std::nullopt);  // none named
  EXPECT_EQ(result.errors[2].field, "spec.nodeName");
  EXPECT_EQ(result.errors[2].node_name, std::nullopt);  // the node name is what is wrong
}

TEST(ManifestParserTest, ErrorsOfADocumentWithAnInvalidNameHaveNoKey) {
  ParseResult result = Parse(Vm("web/1", "  cpus: 0\n"));

  ASSERT_THAT(result.errors, SizeIs(2)) << Describe(result.errors);
  EXPECT_EQ(result.errors[0].key, std::nullopt);
  EXPECT_EQ(result.errors[1].key, std::nullopt);
}

TEST(ManifestParserTest, EmptyDocumentsAndATrailingSeparatorAreIgnored) {
  ParseResult result = Parse("---\n# nothing here\n---\n" + Vm("web-1") + "---\n---\n");

  EXPECT_THAT(result.errors, IsEmpty()) << Describe(result.errors);
  ASSERT_THAT(result.vms, SizeIs(1));
  EXPECT_EQ(result.vms[0].location.ToString(), "web.yaml:4:1");
}

TEST(ManifestParserTest, FileOfOnlyCommentsHasNoDocuments) {
  ParseResult result = Parse("# web-1 was retired\n# see the change log\n");

  EXPECT_THAT(result.vms, IsEmpty());
  ASSERT_THAT(result.errors, SizeIs(1));
  EXPECT_EQ(result.errors[0].kind, ErrorKind::kNoDocuments);
  EXPECT_EQ(result.errors[0].ToString(),
            "web.yaml:1:1: -: no VirtualMachine document in file (delete the file to delete its "
            "VMs)");
}

TEST(ManifestParserTest, EmptyFileHasNoDocuments) {
  ParseResult result = Parse("");

  ASSERT_THAT(result.errors, SizeIs(1));
  EXPECT_EQ(result.errors[0].kind, ErrorKind::kNoDocuments);
}

// ---------------------------------------------------------------------------
// Errors: all at once, in order, printed the way `vmlet validate` prints them.

TEST(ManifestParserTest, EveryMistakeOfADocumentIsReportedOnceInLineOrder) {
  ParseResult result = Parse(SpecWithoutKernel(
      "  stopGracePeriodSeconds: -1\n"        // 7, found by validation
      "  kernel: 42\n"                        // 8, and not also "must not be empty"
      "  cpus: \"2\"\n"                       // 9
      "  memory_mb: 512\n"                    // 10
      "  networks:\n"                         // 11
      "    - {mac: \"52:54:00:12:34:56\"}\n"  // 12, and not also "TAP name must be..."
      "  vsock: yes\n"));                     // 13

  EXPECT_THAT(result.vms, IsEmpty());
  EXPECT_THAT(
      Strings(result.errors),
      ElementsAre(
          "web.yaml:7:27: spec.stopGracePeriodSeconds: must not be negative",
          "web.yaml:8:11: spec.kernel: must be a string, got integer \"42\" (quote it to make it "
          "a string)",
          "web.yaml:9:9: spec.cpus: must be an integer, got string \"2\"",
          "web.yaml:10:3: spec.memory_mb: unknown field \"memory_mb\" (did you mean "
          "\"memoryMb\"?)",
          "web.yaml:12:7: spec.networks[0].tap: required field is missing",
          "web.yaml:13:10: spec.vsock: must be a boolean (true or false), got string \"yes\""));
  for (const ManifestError& e : result.errors) {
    EXPECT_EQ(e.key, (api::VmKey{"prod", "web-1"})) << e;
  }
}

TEST(ManifestParserTest, NameThatFailedToParseIsNotAlsoReportedEmpty) {
  ParseResult result = Parse(MetadataLast("metadata:\n  name: [web-1]\n"));

  EXPECT_THAT(Strings(result.errors),
              ElementsAre("web.yaml:6:9: metadata.name: must be a string, got list"));
}

TEST(ManifestParserTest, ErrorPrintsAsFileLineColumnFieldReason) {
  ParseResult result = Parse(Manifest("  cpus: \"2\"\n"), "manifests/web.yaml");

  ASSERT_THAT(result.errors, SizeIs(1));
  EXPECT_EQ(result.errors[0].ToString(),
            "manifests/web.yaml:8:9: spec.cpus: must be an integer, got string \"2\"");
}

TEST(ManifestParserTest, FileErrorPrintsWithLineAndColumnZero) {
  ParseResult result = Parse(Repeat('#', kMaxManifestBytes + 1), "big.yaml");

  ASSERT_THAT(result.errors, SizeIs(1));
  EXPECT_EQ(result.errors[0].ToString(), "big.yaml:0:0: -: file is larger than 1048576 bytes");
}

// ---------------------------------------------------------------------------
// Image roots, against a real directory tree.

class ManifestParserImageRootTest : public ::testing::Test {
 protected:
  void SetUp() override {
    images_ = dir_ + "/images";
    std::filesystem::create_directories(images_);
    std::filesystem::create_directories(dir_ + "/images2");
    std::filesystem::create_directories(dir_ + "/other");
    Touch(images_ + "/vmlinuz");
    Touch(dir_ + "/images2/vmlinuz");
    Touch(dir_ + "/other/vmlinuz");
  }

  static void Touch(const std::string& path) { std::ofstream(path) << "kernel"; }

  ParseResult ParseWithKernel(const std::string& kernel, const std::string& root) {
    ParseOptions options;
    options.image_roots = {root};
    return Parse(SpecWithoutKernel("  kernel: " + kernel + "\n"), "web.yaml", options);
  }

  const testing::TempDir temp_dir_{"parser-test"};
  const std::string dir_ = temp_dir_.path();
  std::string images_;
};

TEST_F(ManifestParserImageRootTest, KernelInsideTheRootIsAccepted) {
  ParseResult result = ParseWithKernel(images_ + "/vmlinuz", images_);

  EXPECT_THAT(result.errors, IsEmpty()) << Describe(result.errors);
  EXPECT_THAT(result.vms, SizeIs(1));
}

TEST_F(ManifestParserImageRootTest, KernelOutsideTheRootIsRejectedAtItsValue) {
  ParseResult result = ParseWithKernel(dir_ + "/other/vmlinuz", images_);

  EXPECT_THAT(result.vms, IsEmpty());
  ASSERT_THAT(result.errors, SizeIs(1));
  EXPECT_EQ(result.errors[0].kind, ErrorKind::kOutsideImageRoot);
  EXPECT_EQ(result.errors[0].ToString(), "web.yaml:7:11: spec.kernel: resolves to \"" + dir_ +
                                             "/other/vmlinuz\", outside every --image-root (" +
                                             images_ + ")");
}

TEST_F(ManifestParserImageRootTest, EveryPathFieldIsChecked) {
  ParseOptions options;
  options.image_roots = {images_};
  ParseResult result =
      Parse(SpecWithoutKernel("  kernel: " + images_ + "/vmlinuz\n" + "  initramfs: " + images_ +
                              "/initrd\n" + "  seedIso: " + dir_ + "/other/seed.iso\n"),
            "web.yaml", options);

  ASSERT_THAT(result.errors, SizeIs(1)) << Describe(result.errors);
  EXPECT_EQ(result.errors[0].field, "spec.seedIso");
  EXPECT_EQ(result.errors[0].location.ToString(), "web.yaml:9:12");
}

TEST_F(ManifestParserImageRootTest, SymlinkInsideTheRootToAFileOutsideIsRejected) {
  std::filesystem::create_symlink(dir_ + "/other/vmlinuz", images_ + "/link");

  ParseResult result = ParseWithKernel(images_ + "/link", images_);

  ASSERT_THAT(result.errors, SizeIs(1));
  EXPECT_EQ(result.errors[0].kind, ErrorKind::kOutsideImageRoot);
  EXPECT_THAT(result.errors[0].reason, HasSubstr("resolves to \"" + dir_ + "/other/vmlinuz\""));
}

TEST_F(ManifestParserImageRootTest, SymlinkedDirectoryInsideTheRootLeadingOutIsRejected) {
  std::filesystem::create_directory_symlink("../other", images_ + "/other");

  ParseResult result = ParseWithKernel(images_ + "/other/vmlinuz", images_);

  ASSERT_THAT(result.errors, SizeIs(1));
  EXPECT_EQ(result.errors[0].kind, ErrorKind::kOutsideImageRoot);
}

// Was: a dangling symlink inside the root that points outside it is
// accepted (weakly_canonical cannot resolve it, so the link's own path is
// checked); once its target appears, the VM boots a kernel from outside
// every image root.
TEST_F(ManifestParserImageRootTest, DanglingSymlinkInsideTheRootPointingOutsideIsRejected) {
  std::filesystem::create_symlink(dir_ + "/other/not-yet", images_ + "/next");

  ParseResult result = ParseWithKernel(images_ + "/next", images_);

  ASSERT_THAT(result.errors, SizeIs(1)) << Describe(result.errors);
  EXPECT_EQ(result.errors[0].kind, ErrorKind::kOutsideImageRoot);
  EXPECT_EQ(result.errors[0].location.ToString(), "web.yaml:7:11");
}

TEST_F(ManifestParserImageRootTest, DotDotOutOfTheRootIsRejectedBeforeTheRootIsChecked) {
  ParseResult result = ParseWithKernel(images_ + "/../other/vmlinuz", images_);

  ASSERT_THAT(result.errors, SizeIs(1));
  EXPECT_EQ(result.errors[0].kind, ErrorKind::kInvalidValue);
  EXPECT_THAT(result.errors[0].reason, HasSubstr("must not contain a \"..\" component"));
}

TEST_F(ManifestParserImageRootTest, RootWithATrailingSlashWorks) {
  EXPECT_THAT(ParseWithKernel(images_ + "/vmlinuz", images_ + "/").vms, SizeIs(1));
  EXPECT_THAT(ParseWithKernel(dir_ + "/other/vmlinuz", images_ + "/").errors, SizeIs(1));
}

// Was: a root that does not exist (yet) given with a trailing slash rejects
// every path under it ("<root>/vmlinuz" resolves outside "<root>/"), while
// the same root without the slash accepts them.
TEST_F(ManifestParserImageRootTest, MissingRootWithATrailingSlashWorksLikeWithout) {
  EXPECT_THAT(ParseWithKernel(dir_ + "/later/vmlinuz", dir_ + "/later").errors, IsEmpty());
  EXPECT_THAT(ParseWithKernel(dir_ + "/later/vmlinuz", dir_ + "/later/").errors, IsEmpty());
}

TEST_F(ManifestParserImageRootTest, SiblingDirectoryWithTheRootAsPrefixIsOutside) {
  ParseResult result = ParseWithKernel(dir_ + "/images2/vmlinuz", images_);

  ASSERT_THAT(result.errors, SizeIs(1));
  EXPECT_EQ(result.errors[0].kind, ErrorKind::kOutsideImageRoot);
}

TEST_F(ManifestParserImageRootTest, KernelInsideAnyOfSeveralRootsIsAccepted) {
  ParseOptions options;
  options.image_roots = {images_, dir_ + "/other"};
  ParseResult result =
      Parse(SpecWithoutKernel("  kernel: " + dir_ + "/other/vmlinuz\n"), "web.yaml", options);

  EXPECT_THAT(result.errors, IsEmpty()) << Describe(result.errors);
}

// ---------------------------------------------------------------------------
// Hostile input: never a crash, always an error.

TEST(ManifestParserTest, FileLargerThanTheLimitIsAnIoErrorUnparsed) {
  ParseResult result = Parse(Manifest("") + "#" + Repeat('x', kMaxManifestBytes));

  EXPECT_THAT(result.vms, IsEmpty());
  ASSERT_THAT(result.errors, SizeIs(1));
  EXPECT_EQ(result.errors[0].kind, ErrorKind::kIo);
  EXPECT_EQ(result.errors[0].location.ToString(), "web.yaml");  // no line: the whole file
}

TEST(ManifestParserTest, FileOfExactlyTheLimitIsParsed) {
  ParseResult result = Parse(Repeat('#', kMaxManifestBytes));

  ASSERT_THAT(result.errors, SizeIs(1));
  EXPECT_EQ(result.errors[0].kind, ErrorKind::kNoDocuments);
}

TEST(ManifestParserTest, DeeplyNestedFlowSequencesAreASyntaxError) {
  ParseResult result = Parse(Repeat('[', 10000));

  EXPECT_THAT(result.vms, IsEmpty());
  ASSERT_THAT(result.errors, SizeIs(1));
  EXPECT_EQ(result.errors[0].kind, ErrorKind::kSyntax);
}

TEST(ManifestParserTest, DeeplyNestedMappingsAreASyntaxError) {
  std::string content;
  for (int i = 0; i < 10000; ++i) content += "{a: ";
  content += Repeat('}', 10000);

  ParseResult result = Parse(content);

  EXPECT_THAT(result.vms, IsEmpty());
  ASSERT_THAT(result.errors, SizeIs(1));
  EXPECT_EQ(result.errors[0].kind, ErrorKind::kSyntax);
}

TEST(ManifestParserTest, DeeplyNestedBlockMappingsAreASyntaxError) {
  std::string content;
  for (int i = 0; i < 1000; ++i) content += Repeat(' ', static_cast<size_t>(i)) + "a:\n";

  ParseResult result = Parse(content);

  EXPECT_THAT(result.vms, IsEmpty());
  ASSERT_THAT(result.errors, SizeIs(1));
  EXPECT_EQ(result.errors[0].kind, ErrorKind::kSyntax);
}

TEST(ManifestParserTest, DeeplyNestedJsonIsASyntaxError) {
  ParseResult result = Parse(Repeat('[', 10000) + Repeat(']', 10000), "x.json");

  ASSERT_THAT(result.errors, SizeIs(1));
  EXPECT_EQ(result.errors[0].kind, ErrorKind::kSyntax);
  EXPECT_EQ(result.errors[0].reason, "invalid JSON: JSON nested too deeply");
}

TEST(ManifestParserTest, BinaryGarbageIsAnErrorNotACrash) {
  std::mt19937 random(20240601);
  std::uniform_int_distribution<int> byte(0, 255);
  for (int round = 0; round < 50; ++round) {
    std::string garbage;
    for (int i = 0; i < 2048; ++i) garbage += static_cast<char>(byte(random));
    for (const char* file : {"web.yaml", "x.json"}) {
      ParseResult result = Parse(garbage, file);
      EXPECT_THAT(result.vms, IsEmpty()) << "round " << round << " " << file;
      EXPECT_THAT(result.errors, Not(IsEmpty())) << "round " << round << " " << file;
    }
  }
}

TEST(ManifestParserTest, NulBytesAreAnErrorNotACrash) {
  for (const std::string& content :
       {"\0\0\0"s, "\0"s + Manifest(""), Manifest("") + "\0  cpus: 0\n"s,
        "apiVersion: vmlet.dev/v1alpha1\nkind: Virtual\0Machine\n"s}) {
    ParseResult yaml = Parse(content);
    EXPECT_THAT(yaml.vms, IsEmpty());
    EXPECT_THAT(yaml.errors, Not(IsEmpty()));
    ParseResult json = Parse(content, "x.json");
    EXPECT_THAT(json.vms, IsEmpty());
    EXPECT_THAT(json.errors, Not(IsEmpty()));
  }
}

}  // namespace
}  // namespace vmlet::manifests

namespace vmlet::manifests {
namespace {

// --require-node-name: a fleet repository's manifest must name its host.
TEST(ManifestParserTest, RequiredNodeNameIsAMissingFieldErrorAtTheSpec) {
  ParseOptions fleet;
  fleet.require_node_name = true;
  ParseResult without = Parse(Manifest(""), "web.yaml", fleet);
  ASSERT_EQ(without.errors.size(), 1u) << Describe(without.errors);
  EXPECT_EQ(without.errors[0].ToString(),
            "web.yaml:7:3: spec.nodeName: required here (--require-node-name): a fleet "
            "repository must name the host of every VM");
  EXPECT_EQ(ErrorKindName(without.errors[0].kind), "missing_field");
  EXPECT_TRUE(without.vms.empty());

  ParseResult with = Parse(Manifest("  nodeName: host-a\n"), "web.yaml", fleet);
  EXPECT_TRUE(with.errors.empty()) << Describe(with.errors);
  ASSERT_EQ(with.vms.size(), 1u);
  EXPECT_EQ(with.vms[0].spec.node_name, "host-a");

  // Without the flag a manifest without nodeName runs on any node.
  EXPECT_TRUE(Parse(Manifest("")).errors.empty());
}

// --share-root: the same resolution as --image-root, for sharedDirs.
TEST_F(ManifestParserImageRootTest, SharedDirInsideAShareRootIsAccepted) {
  std::filesystem::create_directories(dir_ + "/shares/data");
  ParseOptions options;
  options.share_roots = {dir_ + "/other", dir_ + "/shares"};
  ParseResult result =
      Parse(Manifest("  sharedDirs:\n  - hostPath: " + dir_ + "/shares/data\n    tag: data\n"),
            "web.yaml", options);
  EXPECT_THAT(result.errors, IsEmpty()) << Describe(result.errors);
}

TEST_F(ManifestParserImageRootTest, SharedDirEscapingItsShareRootThroughASymlinkIsRejected) {
  std::filesystem::create_directories(dir_ + "/shares");
  std::filesystem::create_directory_symlink("/etc", dir_ + "/shares/etc");
  ParseOptions options;
  options.share_roots = {dir_ + "/shares"};
  ParseResult result = Parse(Manifest("  sharedDirs:\n  - hostPath: " + dir_ +
                                      "/shares/data\n    tag: data\n"
                                      "  - hostPath: " +
                                      dir_ + "/shares/etc\n    tag: etc\n"),
                             "web.yaml", options);
  EXPECT_THAT(result.vms, IsEmpty());
  ASSERT_THAT(result.errors, SizeIs(1)) << Describe(result.errors);
  EXPECT_EQ(result.errors[0].kind, ErrorKind::kOutsideShareRoot);
  EXPECT_EQ(ErrorKindName(result.errors[0].kind), "outside_share_root");
  EXPECT_EQ(result.errors[0].ToString(),
            "web.yaml:11:15: spec.sharedDirs[1].hostPath: resolves to \"/etc\", outside every "
            "--share-root (" +
                dir_ + "/shares)");
}

TEST_F(ManifestParserImageRootTest, ShareRootsDoNotApplyToImagesNorImageRootsToSharedDirs) {
  std::filesystem::create_directories(dir_ + "/shares/data");
  ParseOptions options;
  options.share_roots = {dir_ + "/shares"};
  options.image_roots = {images_};
  ParseResult result =
      Parse(SpecWithoutKernel("  kernel: " + images_ + "/vmlinuz\n" +
                              "  sharedDirs:\n  - hostPath: " + images_ + "\n    tag: data\n"),
            "web.yaml", options);
  ASSERT_THAT(result.errors, SizeIs(1)) << Describe(result.errors);
  EXPECT_EQ(result.errors[0].field, "spec.sharedDirs[0].hostPath");
}

TEST(ManifestParserTest, ANodeNameOfTheWrongTypeIsReportedOnceEvenWhenRequired) {
  ParseOptions fleet;
  fleet.require_node_name = true;
  ParseResult result = Parse(Manifest("  nodeName: 7\n"), "web.yaml", fleet);
  ASSERT_EQ(result.errors.size(), 1u) << Describe(result.errors);
  EXPECT_EQ(result.errors[0].field, "spec.nodeName");
  EXPECT_EQ(ErrorKindName(result.errors[0].kind), "wrong_type");
}

}  // namespace
}  // namespace vmlet::manifests
