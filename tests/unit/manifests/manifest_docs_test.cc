// docs/manifests.md's field reference against the parser: every field the
// parser accepts is documented, and every documented field is accepted.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "manifests/manifest_parser.h"

namespace vmlet::manifests {
namespace {

// The first-column `field` of every row of the "## Field reference" table.
std::set<std::string> DocumentedFields() {
  std::ifstream in(VMLET_SOURCE_DIR "/docs/manifests.md");
  std::set<std::string> fields;
  bool in_section = false;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("## ", 0) == 0) in_section = line == "## Field reference";
    if (!in_section || line.rfind("| `", 0) != 0) continue;
    const size_t end = line.find('`', 3);
    if (end != std::string::npos) fields.insert(line.substr(3, end - 3));
  }
  return fields;
}

TEST(ManifestDocsTest, FieldReferenceListsExactlyTheFieldsTheParserAccepts) {
  const std::vector<std::string>& parser = ManifestFieldPaths();
  const std::set<std::string> parsed(parser.begin(), parser.end());
  ASSERT_EQ(parsed.size(), parser.size()) << "the parser lists a field twice";
  EXPECT_EQ(DocumentedFields(), parsed);
  EXPECT_EQ(parser.size(), 34u);  // a new field needs its row in the docs
}

}  // namespace
}  // namespace vmlet::manifests
