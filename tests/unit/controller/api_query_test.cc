#include "controller/api_query.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <string>

namespace vmlet::controller {
namespace {

using ::testing::HasSubstr;

TEST(ParseQueryTest, DecodesAsGoDoesAndTheFirstValueWins) {
  EXPECT_EQ(ParseQuery("labelSelector=env+in+%28a%2Cb%29&watch=1&bare&watch=0&bad=%zz"),
            (std::map<std::string, std::string>{
                {"labelSelector", "env in (a,b)"}, {"watch", "1"}, {"bare", ""}, {"bad", "%zz"}}));
  EXPECT_TRUE(ParseQuery("").empty());
}

TEST(ParseQueryTest, EncodedValuesDecodeToThemselves) {
  const std::string value = "involvedObject.name=web-1,involvedObject.kind=Virtual Machine";
  EXPECT_EQ(EncodeQueryValue("a=b,c d~"), "a%3Db%2Cc%20d~");
  EXPECT_EQ(ParseQuery("fieldSelector=" + EncodeQueryValue(value))["fieldSelector"], value);
}

// ---------------------------------------------------------------------------

bool Selects(const std::string& selector, const std::map<std::string, std::string>& labels) {
  api::StatusOr<LabelSelector> parsed = LabelSelector::Parse(selector);
  EXPECT_TRUE(parsed.ok()) << selector << ": " << parsed.status();
  return parsed.ok() && parsed->Matches(labels);
}

TEST(LabelSelectorTest, EqualityNeedsTheLabelAndInequalityHoldsWithoutIt) {
  EXPECT_TRUE(Selects("app=web", {{"app", "web"}}));
  EXPECT_TRUE(Selects("app==web", {{"app", "web"}}));
  EXPECT_FALSE(Selects("app=web", {{"app", "db"}}));
  EXPECT_FALSE(Selects("app=web", {}));
  EXPECT_TRUE(Selects("app!=web", {{"app", "db"}}));
  EXPECT_TRUE(Selects("app!=web", {}));
  EXPECT_FALSE(Selects("app!=web", {{"app", "web"}}));
}

TEST(LabelSelectorTest, SetsExistenceAndComparisons) {
  EXPECT_TRUE(Selects("tier in (front, back)", {{"tier", "back"}}));
  EXPECT_FALSE(Selects("tier in (front,back)", {{"tier", "mid"}}));
  EXPECT_FALSE(Selects("tier in (front)", {}));
  EXPECT_TRUE(Selects("tier notin (front)", {}));
  EXPECT_TRUE(Selects("tier notin (front)", {{"tier", "back"}}));
  EXPECT_FALSE(Selects("tier notin (front)", {{"tier", "front"}}));
  EXPECT_TRUE(Selects("app", {{"app", ""}}));
  EXPECT_FALSE(Selects("app", {}));
  EXPECT_TRUE(Selects("!app", {}));
  EXPECT_FALSE(Selects("!app", {{"app", "web"}}));
  EXPECT_TRUE(Selects("n>3", {{"n", "4"}}));
  EXPECT_FALSE(Selects("n>3", {{"n", "3"}}));
  EXPECT_TRUE(Selects("n<3", {{"n", "2"}}));
  EXPECT_FALSE(Selects("n<3", {{"n", "x"}}));
}

TEST(LabelSelectorTest, EveryRequirementMustHoldAndEmptySelectsAll) {
  EXPECT_TRUE(Selects("app=web, tier in (front)", {{"app", "web"}, {"tier", "front"}}));
  EXPECT_FALSE(Selects("app=web,tier in (front)", {{"app", "web"}, {"tier", "back"}}));
  EXPECT_TRUE(Selects("", {}));
  EXPECT_TRUE(Selects("  ", {{"a", "b"}}));
}

TEST(LabelSelectorTest, MalformedSelectorsAreInvalidArguments) {
  for (const char* bad : {"app in web", "=web", "app=we b", "app=web,", "tier in ()", "app ~ web",
                          "n>x", "!app=web"}) {
    api::StatusOr<LabelSelector> parsed = LabelSelector::Parse(bad);
    ASSERT_FALSE(parsed.ok()) << bad;
    EXPECT_EQ(parsed.status().code(), api::Status::Code::kInvalidArgument) << bad;
    EXPECT_THAT(parsed.status().message(), HasSubstr("unable to parse requirement")) << bad;
  }
}

TEST(FieldSelectorTest, MatchesEqualityAndInequalityWithEscapes) {
  const std::vector<std::string_view> fields = {"metadata.name", "metadata.namespace"};
  api::StatusOr<FieldSelector> s =
      FieldSelector::Parse("metadata.name=a\\,b,metadata.namespace!=dev", fields);
  ASSERT_TRUE(s.ok()) << s.status();
  std::map<std::string, std::string> object = {{"metadata.name", "a,b"},
                                               {"metadata.namespace", "prod"}};
  auto value_of = [&](std::string_view f) { return object[std::string(f)]; };
  EXPECT_TRUE(s->Matches(value_of));
  object["metadata.namespace"] = "dev";
  EXPECT_FALSE(s->Matches(value_of));
  EXPECT_EQ(s->Required("metadata.name"), "a,b");
  EXPECT_EQ(s->Required("metadata.namespace"), std::nullopt);  // != requires no value
  EXPECT_EQ(FieldSelector::Parse("metadata.name==x", fields)->Required("metadata.name"), "x");
}

TEST(FieldSelectorTest, UnsupportedFieldsAndTermsWithoutOperatorAreRejected) {
  api::StatusOr<FieldSelector> s = FieldSelector::Parse("spec.cpus=2", {"metadata.name"});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().message(), "field label not supported: spec.cpus");
  EXPECT_FALSE(FieldSelector::Parse("metadata.name", {"metadata.name"}).ok());
  EXPECT_TRUE(FieldSelector::Parse("", {"metadata.name"})->empty());
}

}  // namespace
}  // namespace vmlet::controller
