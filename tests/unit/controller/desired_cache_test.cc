#include "controller/desired_cache.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "manifests/spec_json.h"

namespace vmlet::controller {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

api::VmSpec Spec(const std::string& name, std::optional<std::string> node = std::nullopt) {
  api::VmSpec spec;
  spec.name = name;
  spec.ns = "prod";
  spec.driver = "fake";
  spec.kernel = "/k";
  spec.node_name = std::move(node);
  return spec;
}

manifests::SourceUpdate Update(const std::vector<api::VmSpec>& specs,
                               std::vector<api::VmKey> added = {}) {
  auto snapshot = std::make_shared<manifests::Snapshot>();
  for (const api::VmSpec& spec : specs) {
    snapshot->vms[spec.key()] = std::make_shared<const manifests::DesiredVm>(
        manifests::DesiredVm{spec, manifests::BootHash(spec), {"/m/" + spec.name + ".yaml", 1, 1}});
  }
  manifests::SourceUpdate update;
  update.snapshot = snapshot;
  update.diff.added = std::move(added);
  return update;
}

manifests::ManifestError Error(const api::VmKey& key) {
  return {{"/m/a.yaml", 3, 5}, "spec.cpus", "must be at least 1",
          manifests::ErrorKind::kInvalidValue, key};
}

TEST(DesiredCacheTest, NothingIsSyncedBeforeTheFirstGoodScan) {
  DesiredCache cache("node-a");
  EXPECT_FALSE(cache.synced());
  manifests::SourceUpdate failed = Update({});
  failed.source_status = api::Status::NotFound("no such directory");
  cache.Apply(failed);
  EXPECT_FALSE(cache.synced());
  cache.Apply(Update({}));
  EXPECT_TRUE(cache.synced());
}

TEST(DesiredCacheTest, FirstScanTouchesEveryVmEvenWithoutADiff) {
  DesiredCache cache("node-a");
  EXPECT_THAT(cache.Apply(Update({Spec("a"), Spec("b")})),
              ElementsAre(api::VmKey{"prod", "a"}, api::VmKey{"prod", "b"}));
  EXPECT_THAT(cache.Apply(Update({Spec("a"), Spec("b")})), IsEmpty());
}

TEST(DesiredCacheTest, OnlyVmsPlacedOnThisNodeOrNowhereAreDesiredHere) {
  DesiredCache cache("node-a");
  cache.Apply(Update({Spec("anywhere"), Spec("here", "node-a"), Spec("there", "node-b")}));
  EXPECT_NE(cache.Get({"prod", "anywhere"}).vm, nullptr);
  EXPECT_NE(cache.Get({"prod", "here"}).vm, nullptr);
  EXPECT_EQ(cache.Get({"prod", "there"}).vm, nullptr);
  EXPECT_THAT(cache.Keys(), ElementsAre(api::VmKey{"prod", "anywhere"}, api::VmKey{"prod", "here"}));
}

TEST(DesiredCacheTest, AFailedScanKeepsTheLastSnapshot) {
  DesiredCache cache("node-a");
  cache.Apply(Update({Spec("a")}));
  manifests::SourceUpdate failed = Update({});
  failed.source_status = api::Status::PermissionDenied("cannot read /m");
  failed.diff.removed = {{"prod", "a"}};  // ignored: nothing was read
  EXPECT_THAT(cache.Apply(failed), IsEmpty());
  EXPECT_NE(cache.Get({"prod", "a"}).vm, nullptr);
}

TEST(DesiredCacheTest, ErrorsThatAppearChangeOrClearTouchTheirVm) {
  DesiredCache cache("node-a");
  const api::VmKey a{"prod", "a"};
  cache.Apply(Update({Spec("a")}));

  manifests::SourceUpdate broken = Update({Spec("a")});
  broken.invalid[a] = Error(a);
  EXPECT_THAT(cache.Apply(broken), ElementsAre(a));
  EXPECT_EQ(cache.Get(a).invalid, Error(a));
  EXPECT_NE(cache.Get(a).vm, nullptr);  // the last good spec stays
  EXPECT_THAT(cache.Apply(broken), IsEmpty());

  EXPECT_THAT(cache.Apply(Update({Spec("a")})), ElementsAre(a));
  EXPECT_EQ(cache.Get(a).invalid, std::nullopt);
}

}  // namespace
}  // namespace vmlet::controller
