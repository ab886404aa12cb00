#pragma once

#include <yaml-cpp/yaml.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace vmlet::testing::fake_ch {

// Validates JSON values against the schemas of an OpenAPI 3.0 document, here
// Cloud Hypervisor's `cloud-hypervisor.yaml`, read at run time so that the
// fake follows whatever spec file it is given.
//
// Supported schema keywords (the subset the CH spec uses): `$ref` to
// `#/components/schemas/<Name>`, `type` (object, array, string, integer,
// number, boolean), `required`, `properties`, `additionalProperties` (a
// schema, or false), `items`, `enum`, `minimum`, `maximum`, `minLength`,
// `maxLength`, and `format` int8/int16/int32/int64/uint8/uint16/uint32/uint64
// as value ranges. `nullable: true` admits null; otherwise null is not a
// value of any type. Everything else (`default`, `description`, `deprecated`,
// other formats) constrains nothing and is ignored.
//
// Violations read "<JSON path>: <rule>", e.g. "$.payload: required",
// "$.cpus.boot_vcpus: expected integer, got string",
// "$.disks[0].image_type: must be one of [FixedVhd, Qcow2, Raw, Vhdx, Unknown], got \"raw\"".
//
// An object member the schema does not declare (and that no
// additionalProperties schema covers) is accepted, since CH ignores unknown
// fields, and reported as a warning ("$.cpus.boot_vcpu: not in the spec;
// Cloud Hypervisor ignores it").
//
// Immutable after Load(). Not thread-safe even for reads (yaml-cpp nodes
// share reference-counted state); the fake is single-threaded.
class OpenApiValidator {
 public:
  // What the spec says about one operation's request body.
  struct RequestBody {
    bool declared = false;  // false: the operation takes no body
    bool required = false;
    std::string schema_name;  // the component schema, e.g. "VmConfig"; "" when inline
  };

  struct Result {
    std::vector<std::string> violations;  // empty: valid
    std::vector<std::string> warnings;
    bool ok() const { return violations.empty(); }
  };

  // Reads the spec at `path`. Returns null and sets `error` when the file
  // cannot be read or parsed, or has no `paths` or `components.schemas`.
  static std::unique_ptr<OpenApiValidator> Load(const std::string& path, std::string& error);

  // True when the spec has `path` (e.g. "/vm.boot") under `paths`.
  bool HasPath(const std::string& path) const;

  // The request body of `method` (lower case, e.g. "put") on `path`. An
  // operation the spec lacks reads as one without a body.
  RequestBody RequestBodyOf(const std::string& path, const std::string& method) const;

  // Validates `value` against components.schemas.<schema_name>. An unknown
  // name is itself a violation.
  Result Validate(const std::string& schema_name, const nlohmann::json& value) const;

  // Validates `value` against the request-body schema of `method` on `path`
  // (a `$ref` or an inline schema). REQUIRES: RequestBodyOf(path, method).declared.
  Result ValidateRequestBody(const std::string& path, const std::string& method,
                             const nlohmann::json& value) const;

 private:
  explicit OpenApiValidator(YAML::Node spec) : spec_(std::move(spec)) {}

  void Check(const YAML::Node& schema, const nlohmann::json& value, const std::string& where,
             int depth, Result& result) const;
  std::optional<YAML::Node> Resolve(const std::string& ref) const;
  YAML::Node BodySchema(const std::string& path, const std::string& method) const;

  YAML::Node spec_;
};

}  // namespace vmlet::testing::fake_ch
