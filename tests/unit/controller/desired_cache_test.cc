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

manifests::ManifestError Error(const api::VmKey& key,
                               std::optional<std::string> node = std::nullopt) {
  return {{"/m/a.yaml", 3, 5},
          "spec.cpus",
          "must be at least 1",
          manifests::ErrorKind::kInvalidValue,
          key,
          std::move(node)};
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
  EXPECT_THAT(cache.Keys(),
              ElementsAre(api::VmKey{"prod", "anywhere"}, api::VmKey{"prod", "here"}));
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

// A fleet: every node reads every manifest. A broken manifest is the
// business of the node that runs (or would run) its VM only.
TEST(DesiredCacheTest, ABrokenManifestOfAnotherNodesVmIsNoErrorHere) {
  DesiredCache here("node-a");
  DesiredCache there("node-b");
  const api::VmKey b{"prod", "b"};
  for (DesiredCache* cache : {&here, &there}) cache->Apply(Update({Spec("b", "node-b")}));

  manifests::SourceUpdate broken = Update({Spec("b", "node-b")});  // b keeps its last good spec
  broken.invalid[b] = Error(b, "node-b");
  here.Apply(broken);
  EXPECT_EQ(here.Get(b).invalid, std::nullopt);
  EXPECT_THAT(here.Keys(), IsEmpty());
  EXPECT_THAT(there.Apply(broken), ElementsAre(b));
  EXPECT_EQ(there.Get(b).invalid, Error(b, "node-b"));
  EXPECT_THAT(there.Keys(), ElementsAre(b));

  // The broken document names no readable node (its nodeName is what is
  // wrong): the last good spec decides.
  broken.invalid[b] = Error(b);
  here.Apply(broken);
  EXPECT_EQ(here.Get(b).invalid, std::nullopt);
}

TEST(DesiredCacheTest, ABrokenManifestWithoutALastGoodSpecShowsWhereItsDocumentPlacesIt) {
  // As after a vmlet restart while the manifest was broken.
  DesiredCache here("node-a");
  const api::VmKey b{"prod", "b"}, c{"prod", "c"}, d{"prod", "d"};
  manifests::SourceUpdate broken = Update({});
  broken.invalid[b] = Error(b, "node-b");
  broken.invalid[c] = Error(c, "node-a");
  broken.invalid[d] = Error(d);  // no node: every node shows it
  here.Apply(broken);
  EXPECT_EQ(here.Get(b).invalid, std::nullopt);
  EXPECT_EQ(here.Get(c).invalid, Error(c, "node-a"));
  EXPECT_EQ(here.Get(d).invalid, Error(d));
  EXPECT_THAT(here.Keys(), ElementsAre(c, d));
}

TEST(DesiredCacheTest, AVmRunningHereShowsItsErrorEvenIfTheBrokenDocumentMovesItAway) {
  DesiredCache here("node-a");
  const api::VmKey a{"prod", "a"};
  here.Apply(Update({Spec("a", "node-a")}));
  manifests::SourceUpdate broken = Update({Spec("a", "node-a")});
  broken.invalid[a] = Error(a, "node-b");
  here.Apply(broken);
  // It keeps running here on its last good spec, and says why it does.
  EXPECT_NE(here.Get(a).vm, nullptr);
  EXPECT_EQ(here.Get(a).invalid, Error(a, "node-b"));
}

}  // namespace
}  // namespace vmlet::controller
