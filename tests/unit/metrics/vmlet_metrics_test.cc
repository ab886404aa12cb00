#include "metrics/vmlet_metrics.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <prometheus/text_serializer.h>

#include <sstream>

namespace vmlet::metrics {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string Scrape(const VmletMetrics& m) {
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, m.registry()->Collect());
  return out.str();
}

TEST(VmletMetricsTest, EveryKnownSeriesExistsAtZeroFromTheStart) {
  VmletMetrics m("1.2.3", {"syntax", "unknown_field"});
  std::string text = Scrape(m);
  EXPECT_THAT(text, HasSubstr("vmlet_manifest_errors_total{reason=\"syntax\"} 0"));
  EXPECT_THAT(text, HasSubstr("vmlet_manifest_errors_total{reason=\"unknown_field\"} 0"));
  EXPECT_THAT(text, HasSubstr("vmlet_manifest_errors_total{reason=\"other\"} 0"));
  EXPECT_THAT(text, HasSubstr("vmlet_manifests{state=\"valid\"} 0"));
  EXPECT_THAT(text, HasSubstr("vmlet_manifests{state=\"invalid\"} 0"));
  EXPECT_THAT(text, HasSubstr("vmlet_build_info{version=\"1.2.3\"} 1"));
}

TEST(VmletMetricsTest, ManifestErrorsAreCountedByReason) {
  VmletMetrics m("1.2.3", {"syntax", "unknown_field"});
  m.CountManifestError("syntax");
  m.CountManifestError("syntax");
  m.CountManifestError("unknown_field");
  std::string text = Scrape(m);
  EXPECT_THAT(text, HasSubstr("vmlet_manifest_errors_total{reason=\"syntax\"} 2"));
  EXPECT_THAT(text, HasSubstr("vmlet_manifest_errors_total{reason=\"unknown_field\"} 1"));
}

TEST(VmletMetricsTest, UnexpectedReasonIsCountedAsOtherWithoutANewSeries) {
  VmletMetrics m("1.2.3", {"syntax"});
  m.CountManifestError("something-new");
  std::string text = Scrape(m);
  EXPECT_THAT(text, HasSubstr("vmlet_manifest_errors_total{reason=\"other\"} 1"));
  EXPECT_THAT(text, Not(HasSubstr("something-new")));
}

TEST(VmletMetricsTest, ManifestCountsAreSet) {
  VmletMetrics m("1.2.3", {});
  m.SetManifestCounts(7, 2);
  std::string text = Scrape(m);
  EXPECT_THAT(text, HasSubstr("vmlet_manifests{state=\"valid\"} 7"));
  EXPECT_THAT(text, HasSubstr("vmlet_manifests{state=\"invalid\"} 2"));
}

}  // namespace
}  // namespace vmlet::metrics
