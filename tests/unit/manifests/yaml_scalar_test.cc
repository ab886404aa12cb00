#include "manifests/yaml_scalar.h"

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <limits>
#include <optional>

namespace vmlet::manifests::internal {
namespace {

TEST(YamlScalarTest, PlainIntValueReadsDecimalHexAndOctal) {
  EXPECT_EQ(PlainIntValue("42"), 42);
  EXPECT_EQ(PlainIntValue("+42"), 42);
  EXPECT_EQ(PlainIntValue("-42"), -42);
  EXPECT_EQ(PlainIntValue("0x1F"), 31);
  EXPECT_EQ(PlainIntValue("0o17"), 15);
}

TEST(YamlScalarTest, PlainIntValueAcceptsBothEndsOf64BitsAndNothingBeyond) {
  EXPECT_EQ(PlainIntValue("9223372036854775807"), std::numeric_limits<int64_t>::max());
  EXPECT_EQ(PlainIntValue("-9223372036854775808"), std::numeric_limits<int64_t>::min());
  EXPECT_EQ(PlainIntValue("9223372036854775808"), std::nullopt);
  EXPECT_EQ(PlainIntValue("-9223372036854775809"), std::nullopt);
  EXPECT_EQ(PlainIntValue("18446744073709551616"), std::nullopt);
}

TEST(YamlScalarTest, PlainTextTypesFollowTheCoreSchema) {
  EXPECT_TRUE(IsPlainNull(""));
  EXPECT_TRUE(IsPlainNull("~"));
  EXPECT_FALSE(IsPlainNull("nil"));
  EXPECT_TRUE(IsPlainBool("TRUE"));
  EXPECT_FALSE(IsPlainBool("yes"));  // YAML 1.1 only
  EXPECT_TRUE(IsPlainTrue("True"));
  EXPECT_FALSE(IsPlainTrue("false"));
  EXPECT_TRUE(IsPlainInt("0x1f"));
  EXPECT_FALSE(IsPlainInt("0x1g"));
  EXPECT_FALSE(IsPlainInt("-"));
  EXPECT_TRUE(IsPlainFloat("1.5e-3"));
  EXPECT_TRUE(IsPlainFloat("-.inf"));
  EXPECT_FALSE(IsPlainFloat("1e"));
}

TEST(YamlScalarTest, QuotedScalarsAreStringsAndPlainOnesAreTypedByTheirText) {
  YAML::Node doc = YAML::Load("{a: \"2\", b: 2, c: 2.5, d: true, e: ~, f: web, g: [1], h: {}}");
  EXPECT_EQ(TypeOf(doc["a"]), ValueType::kString);
  EXPECT_EQ(TypeOf(doc["b"]), ValueType::kInt);
  EXPECT_EQ(TypeOf(doc["c"]), ValueType::kFloat);
  EXPECT_EQ(TypeOf(doc["d"]), ValueType::kBool);
  EXPECT_EQ(TypeOf(doc["e"]), ValueType::kNull);
  EXPECT_EQ(TypeOf(doc["f"]), ValueType::kString);
  EXPECT_EQ(TypeOf(doc["g"]), ValueType::kSequence);
  EXPECT_EQ(TypeOf(doc["h"]), ValueType::kMapping);
}

TEST(YamlScalarTest, StandardTagsMustFitTheirText) {
  YAML::Node doc =
      YAML::Load("{a: !!str 2, b: !!int 2, c: !!int abc, d: !!bool yes, e: !!float 2}");
  EXPECT_EQ(TypeOf(doc["a"]), ValueType::kString);
  EXPECT_EQ(TypeOf(doc["b"]), ValueType::kInt);
  EXPECT_EQ(TypeOf(doc["c"]), ValueType::kMismatched);
  EXPECT_EQ(TypeOf(doc["d"]), ValueType::kMismatched);
  EXPECT_EQ(TypeOf(doc["e"]), ValueType::kFloat);
}

TEST(YamlScalarTest, TypeNamesAreTheWordsErrorsUse) {
  EXPECT_EQ(TypeName(ValueType::kInt), "integer");
  EXPECT_EQ(TypeName(ValueType::kSequence), "list");
  EXPECT_EQ(TypeName(ValueType::kMismatched), "value that does not match its tag");
}

}  // namespace
}  // namespace vmlet::manifests::internal
