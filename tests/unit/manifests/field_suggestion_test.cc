#include "manifests/field_suggestion.h"

#include <gtest/gtest.h>

#include <string_view>

namespace vmlet::manifests::internal {
namespace {

constexpr std::string_view kFields[] = {"memoryMb", "cpus", "machineId", "tap"};

TEST(FieldSuggestionTest, FoldingIgnoresCaseUnderscoresAndDashes) {
  EXPECT_EQ(FoldFieldName("Memory_MB"), "memorymb");
  EXPECT_EQ(FoldFieldName("machine-id"), "machineid");
}

TEST(FieldSuggestionTest, EditDistanceCountsSingleCharacterEdits) {
  EXPECT_EQ(EditDistance("cpus", "cpus"), 0u);
  EXPECT_EQ(EditDistance("cpu", "cpus"), 1u);
  EXPECT_EQ(EditDistance("cpsu", "cpus"), 2u);
  EXPECT_EQ(EditDistance("", "tap"), 3u);
}

TEST(FieldSuggestionTest, ADifferentSpellingConventionSuggestsTheField) {
  EXPECT_EQ(SuggestField("memory_mb", kFields), "memoryMb");
  EXPECT_EQ(SuggestField("MACHINE-ID", kFields), "machineId");
}

TEST(FieldSuggestionTest, ACloseTypoSuggestsTheClosestField) {
  EXPECT_EQ(SuggestField("cpu", kFields), "cpus");
  EXPECT_EQ(SuggestField("memroyMb", kFields), "memoryMb");
}

TEST(FieldSuggestionTest, AFarMissSuggestsNothing) {
  EXPECT_EQ(SuggestField("kernelArgs", kFields), "");
  EXPECT_EQ(SuggestField("bridge", kFields), "");
}

}  // namespace
}  // namespace vmlet::manifests::internal
