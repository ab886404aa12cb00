#include "controller/status_api.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "manifests/spec_json.h"
#include "tests/fakes/fake_clock.h"
#include "tests/unit/controller/state_samples.h"

namespace vmlet::controller {
namespace {

using namespace ::vmlet::controller::state_samples;

using nlohmann::json;
using std::chrono::hours;
using std::chrono::minutes;
using std::chrono::seconds;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// A controller that shows exactly what the test puts in it.
class FakeVmSource final : public VmSource {
 public:
  api::StatusOr<std::vector<api::VmKey>> Keys() const override {
    std::vector<api::VmKey> keys;
    for (const auto& [key, vm] : vms) keys.push_back(key);
    for (const auto& [key, list] : events) {
      if (!vms.contains(key)) keys.push_back(key);
    }
    return keys;
  }
  VmObservation Observe(const api::VmKey& key) const override {
    auto it = vms.find(key);
    return it == vms.end() ? VmObservation{} : it->second;
  }
  std::optional<WallTime> CreatedAt(const api::VmKey& key) const override {
    auto it = created.find(key);
    if (it == created.end()) return std::nullopt;
    return it->second;
  }
  std::vector<Event> RecentEvents(const api::VmKey& key, size_t max) const override {
    auto it = events.find(key);
    if (it == events.end()) return {};
    std::vector<Event> last = it->second;
    if (last.size() > max) last.erase(last.begin(), last.end() - static_cast<long>(max));
    return last;
  }
  bool Synced() const override { return synced; }

  std::map<api::VmKey, VmObservation> vms;
  std::map<api::VmKey, std::vector<Event>> events;
  std::map<api::VmKey, WallTime> created;
  bool synced = true;
};

ApiRequest Request(const std::string& target, const std::string& accept = "",
                   const std::string& method = "GET") {
  ApiRequest r;
  r.method = method;
  const size_t q = target.find('?');
  r.path = target.substr(0, q);
  if (q != std::string::npos) r.query = ParseQuery(target.substr(q + 1));
  r.accept = accept;
  return r;
}

constexpr const char* kTableAccept =
    "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta."
    "k8s.io,application/json";

std::vector<json> Lines(const std::string& text) {
  std::vector<json> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(json::parse(line));
  return lines;
}

std::vector<std::string> Names(const json& list) {
  std::vector<std::string> names;
  for (const json& item : list["items"]) names.push_back(item["metadata"]["name"]);
  return names;
}

// ---------------------------------------------------------------------------

class StatusApiTest : public ::testing::Test {
 protected:
  StatusApiTest() : api_(Options(), clock_, source_) {}

  static StatusApi::Options Options() {
    StatusApi::Options options;
    options.address = "127.0.0.1:9471";
    options.node_name = "node-a";
    options.version = "1.2.3";
    options.max_changes = 8;
    return options;
  }

  void Put(const api::VmKey& key, std::map<std::string, std::string> labels,
           const std::string& phase, const std::string& ip = "",
           api::DesiredState state = api::DesiredState::kRunning) {
    source_.vms[key] = {Desired(key, std::move(labels), state),
                        Status(phase, ip, std::string(api::ToString(state)))};
    api_.Refresh(key);
  }

  void Remove(const api::VmKey& key) {
    source_.vms.erase(key);
    api_.Refresh(key);
  }

  // Three VMs, created at the fake clock's start, looked at 5 minutes later.
  void PutThree() {
    Put(web_, {{"app", "web"}, {"tier", "front"}}, "Ready", "10.0.0.2");
    Put(db_, {{"app", "db"}}, "Starting");
    Put(api_vm_, {{"app", "web"}}, "Ready", "10.0.0.3");
    clock_.Advance(minutes(5));
  }

  json Body(const ApiReply& reply) { return json::parse(reply.body); }
  json Get(const std::string& target, int code = 200, const std::string& accept = "") {
    ApiReply reply = api_.Handle(Request(target, accept));
    EXPECT_EQ(reply.code, code) << target << ": " << reply.body;
    return json::parse(reply.body);
  }

  testing::FakeClock clock_;
  FakeVmSource source_;
  StatusApi api_;
  const api::VmKey web_{"prod", "web-1"};
  const api::VmKey db_{"prod", "db-1"};
  const api::VmKey api_vm_{"dev", "api-1"};
};

TEST_F(StatusApiTest, DiscoveryDescribesTheGroupAndTheCoreResources) {
  EXPECT_EQ(Get("/api"), json::parse(R"({"kind":"APIVersions","versions":["v1"],
      "serverAddressByClientCIDRs":[{"clientCIDR":"0.0.0.0/0","serverAddress":"127.0.0.1:9471"}]})"));
  EXPECT_EQ(Get("/api/v1"), json::parse(R"({"kind":"APIResourceList","apiVersion":"v1",
      "groupVersion":"v1","resources":[
        {"name":"events","singularName":"event","namespaced":true,"kind":"Event",
         "verbs":["get","list"],"shortNames":["ev"]},
        {"name":"namespaces","singularName":"namespace","namespaced":false,"kind":"Namespace",
         "verbs":["get","list"],"shortNames":["ns"]}]})"));
  EXPECT_EQ(Get("/apis"), json::parse(R"({"kind":"APIGroupList","apiVersion":"v1","groups":[
      {"name":"vmlet.dev","versions":[{"groupVersion":"vmlet.dev/v1alpha1","version":"v1alpha1"}],
       "preferredVersion":{"groupVersion":"vmlet.dev/v1alpha1","version":"v1alpha1"}}]})"));
  EXPECT_EQ(Get("/apis/vmlet.dev")["kind"], "APIGroup");
  EXPECT_EQ(Get("/apis/vmlet.dev/v1alpha1"), json::parse(R"({"kind":"APIResourceList",
      "apiVersion":"v1","groupVersion":"vmlet.dev/v1alpha1","resources":[
        {"name":"virtualmachines","singularName":"virtualmachine","namespaced":true,
         "kind":"VirtualMachine","verbs":["get","list","watch"],"shortNames":["vm"]}]})"));
  const json version = Get("/version");
  EXPECT_EQ(version["gitVersion"], "v1.2.3");
  EXPECT_EQ(version["major"], "1");
  EXPECT_EQ(version["minor"], "2");
}

TEST_F(StatusApiTest, HealthzIsOkAndReadyzWaitsForTheFirstFullManifestScan) {
  source_.synced = false;
  ApiReply health = api_.Handle(Request("/healthz"));
  EXPECT_EQ(health.code, 200);
  EXPECT_EQ(health.body, "ok");
  EXPECT_EQ(api_.Handle(Request("/readyz")).code, 503);
  source_.synced = true;
  ApiReply ready = api_.Handle(Request("/readyz"));
  EXPECT_EQ(ready.code, 200);
  EXPECT_EQ(ready.body, "ok");
}

TEST_F(StatusApiTest, AnyMethodButGetIs405WithAStatus) {
  for (const char* method : {"POST", "PUT", "PATCH", "DELETE"}) {
    ApiReply reply = api_.Handle(Request("/apis/vmlet.dev/v1alpha1/virtualmachines", "", method));
    EXPECT_EQ(reply.code, 405) << method;
    const json status = Body(reply);
    EXPECT_EQ(status["kind"], "Status");
    EXPECT_EQ(status["reason"], "MethodNotAllowed");
    EXPECT_EQ(status["code"], 405);
    EXPECT_THAT(reply.headers, ElementsAre(std::pair<std::string, std::string>("Allow", "GET")));
  }
}

TEST_F(StatusApiTest, AnUnknownPathIsANotFoundStatus) {
  const json status = Get("/apis/apps/v1", 404);
  EXPECT_EQ(status["kind"], "Status");
  EXPECT_EQ(status["reason"], "NotFound");
}

TEST_F(StatusApiTest, AVmIsItsSpecAsAppliedAndItsStatusFileWithStableMetadata) {
  PutThree();
  const json vm = Get("/apis/vmlet.dev/v1alpha1/namespaces/prod/virtualmachines/web-1");
  EXPECT_EQ(vm["apiVersion"], "vmlet.dev/v1alpha1");
  EXPECT_EQ(vm["kind"], "VirtualMachine");
  EXPECT_EQ(vm["metadata"], json({{"name", "web-1"},
                                  {"namespace", "prod"},
                                  {"labels", {{"app", "web"}, {"tier", "front"}}},
                                  {"uid", VmUid(web_)},
                                  {"generation", 1},
                                  {"resourceVersion", "1"},
                                  {"creationTimestamp", "2026-11-28T00:00:00Z"}}));
  EXPECT_EQ(vm["spec"], manifests::SpecToJson(
                            Desired(web_, {{"app", "web"}, {"tier", "front"}})->spec)["spec"]);
  EXPECT_EQ(vm["status"], ToJson(Status("Ready", "10.0.0.2")));
}

TEST_F(StatusApiTest, AMissingVmIsAKubernetesNotFoundStatus) {
  PutThree();
  EXPECT_EQ(Get("/apis/vmlet.dev/v1alpha1/namespaces/prod/virtualmachines/nope", 404),
            json::parse(R"({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
              "message":"virtualmachines.vmlet.dev \"nope\" not found","reason":"NotFound",
              "details":{"name":"nope","group":"vmlet.dev","kind":"virtualmachines"},
              "code":404})"));
  EXPECT_EQ(VmNotFound("nope"), Get("/apis/vmlet.dev/v1alpha1/namespaces/dev/virtualmachines/"
                                    "nope",
                                    404));
}

TEST_F(StatusApiTest, ListsAreSortedByNamespaceThenNameWithTheLogsVersion) {
  PutThree();
  const json all = Get("/apis/vmlet.dev/v1alpha1/virtualmachines");
  EXPECT_EQ(all["kind"], "VirtualMachineList");
  EXPECT_EQ(all["apiVersion"], "vmlet.dev/v1alpha1");
  EXPECT_EQ(all["metadata"]["resourceVersion"], "3");
  EXPECT_EQ(Names(all), (std::vector<std::string>{"api-1", "db-1", "web-1"}));
  EXPECT_EQ(Names(Get("/apis/vmlet.dev/v1alpha1/namespaces/prod/virtualmachines")),
            (std::vector<std::string>{"db-1", "web-1"}));
  EXPECT_TRUE(Get("/apis/vmlet.dev/v1alpha1/namespaces/none/virtualmachines")["items"].empty());
}

TEST_F(StatusApiTest, LabelAndFieldSelectorsFilterLists) {
  PutThree();
  const std::string all = "/apis/vmlet.dev/v1alpha1/virtualmachines";
  EXPECT_EQ(Names(Get(all + "?labelSelector=app%3Dweb")),
            (std::vector<std::string>{"api-1", "web-1"}));
  EXPECT_EQ(Names(Get(all + "?labelSelector=app+in+(db)")), std::vector<std::string>{"db-1"});
  EXPECT_EQ(Names(Get(all + "?labelSelector=tier")), std::vector<std::string>{"web-1"});
  EXPECT_EQ(Names(Get(all + "?labelSelector=app!%3Dweb")), std::vector<std::string>{"db-1"});
  EXPECT_EQ(Names(Get(all + "?fieldSelector=metadata.name%3Ddb-1")),
            std::vector<std::string>{"db-1"});
  EXPECT_EQ(Names(Get(all + "?fieldSelector=metadata.namespace%3Ddev")),
            std::vector<std::string>{"api-1"});
  EXPECT_EQ(Names(Get(all + "?labelSelector=app%3Dweb&fieldSelector=metadata.namespace!%3Ddev")),
            std::vector<std::string>{"web-1"});

  const json bad_label = Get(all + "?labelSelector=app+in+web", 400);
  EXPECT_EQ(bad_label["reason"], "BadRequest");
  EXPECT_THAT(bad_label["message"].get<std::string>(), HasSubstr("unable to parse requirement"));
  EXPECT_EQ(Get(all + "?fieldSelector=spec.cpus%3D2", 400)["message"],
            "field label not supported: spec.cpus");
}

TEST_F(StatusApiTest, ATableHasKubectlsColumnsAndRowsWithPartialObjectMetadata) {
  PutThree();
  ApiReply reply = api_.Handle(
      Request("/apis/vmlet.dev/v1alpha1/namespaces/prod/virtualmachines", kTableAccept));
  ASSERT_EQ(reply.code, 200);
  EXPECT_EQ(reply.content_type, "application/json;as=Table;v=v1;g=meta.k8s.io");
  const json table = Body(reply);
  EXPECT_EQ(table["kind"], "Table");
  EXPECT_EQ(table["apiVersion"], "meta.k8s.io/v1");
  EXPECT_EQ(table["metadata"]["resourceVersion"], "3");
  std::vector<std::pair<std::string, int>> columns;
  for (const json& c : table["columnDefinitions"]) columns.emplace_back(c["name"], c["priority"]);
  EXPECT_EQ(columns, (std::vector<std::pair<std::string, int>>{{"Name", 0},
                                                               {"Desired", 0},
                                                               {"Phase", 0},
                                                               {"IP", 0},
                                                               {"Restarts", 0},
                                                               {"Age", 0},
                                                               {"Node", 0},
                                                               {"Driver", 1}}));
  EXPECT_EQ(table["columnDefinitions"][0]["format"], "name");
  EXPECT_EQ(table["columnDefinitions"][4]["type"], "integer");
  ASSERT_EQ(table["rows"].size(), 2u);
  EXPECT_EQ(table["rows"][0]["cells"],
            json::parse(R"(["db-1","Running","Starting","<none>",1,"5m","node-a","fake"])"));
  EXPECT_EQ(table["rows"][1]["cells"],
            json::parse(R"(["web-1","Running","Ready","10.0.0.2",1,"5m","node-a","fake"])"));
  const json object = table["rows"][1]["object"];
  EXPECT_EQ(object["kind"], "PartialObjectMetadata");
  EXPECT_EQ(object["apiVersion"], "meta.k8s.io/v1");
  EXPECT_EQ(object["metadata"]["namespace"], "prod");
  EXPECT_EQ(object["metadata"]["uid"], VmUid(web_));

  // One VM as a Table; includeObject=None leaves the object out.
  const json one =
      Get("/apis/vmlet.dev/v1alpha1/namespaces/prod/virtualmachines/web-1?includeObject=None", 200,
          kTableAccept);
  ASSERT_EQ(one["rows"].size(), 1u);
  EXPECT_FALSE(one["rows"][0].contains("object"));
  // Without the Table media type, plain JSON.
  EXPECT_EQ(Get("/apis/vmlet.dev/v1alpha1/virtualmachines", 200, "application/json")["kind"],
            "VirtualMachineList");
}

TEST_F(StatusApiTest, TheTableNamesTheVmmsDriverAndTheManifestsNode) {
  auto desired = std::make_shared<manifests::DesiredVm>(*Desired(web_));
  desired->spec.node_name = "node-b";
  VmStatus status = Status("Ready", "10.0.0.2");
  status.vmm = VmStatus::Vmm{"qemu", 42, 7};
  source_.vms[web_] = {desired, status};
  api_.Refresh(web_);
  const json table = Get("/apis/vmlet.dev/v1alpha1/virtualmachines", 200, kTableAccept);
  EXPECT_EQ(table["rows"][0]["cells"][6], "node-b");
  EXPECT_EQ(table["rows"][0]["cells"][7], "qemu");
}

TEST_F(StatusApiTest, EventsAreCoreV1EventsAboutTheirVm) {
  PutThree();
  const WallTime t0 = WallTime(seconds(1795824000));
  source_.events[web_] = {{t0, "Normal", "Booted", "VMM started"},
                          {t0 + seconds(1), "Normal", "Ready", "the guest is ready "}};
  source_.events[db_] = {{t0 + seconds(2), "Warning", "Crashed", "VMM died"}};
  const json list = Get("/api/v1/namespaces/prod/events");
  EXPECT_EQ(list["kind"], "EventList");
  ASSERT_EQ(list["items"].size(), 3u);
  const json e = list["items"][0];
  EXPECT_EQ(e["kind"], "Event");
  EXPECT_EQ(e["apiVersion"], "v1");
  EXPECT_EQ(e["metadata"]["namespace"], "prod");
  EXPECT_THAT(e["metadata"]["name"].get<std::string>(), ::testing::StartsWith("web-1."));
  EXPECT_EQ(e["involvedObject"], json({{"apiVersion", "vmlet.dev/v1alpha1"},
                                       {"kind", "VirtualMachine"},
                                       {"name", "web-1"},
                                       {"namespace", "prod"},
                                       {"uid", VmUid(web_)}}));
  EXPECT_EQ(e["reason"], "Booted");
  EXPECT_EQ(e["message"], "VMM started");
  EXPECT_EQ(e["type"], "Normal");
  EXPECT_EQ(e["firstTimestamp"], "2026-11-28T00:00:00Z");
  EXPECT_EQ(e["lastTimestamp"], "2026-11-28T00:00:00Z");
  EXPECT_EQ(e["count"], 1);
  EXPECT_EQ(e["source"], json({{"component", "vmlet"}, {"host", "node-a"}}));

  // The selector kubectl describe sends.
  const std::string selector =
      "involvedObject.name=web-1,involvedObject.namespace=prod,"
      "involvedObject.kind=VirtualMachine,involvedObject.uid=" +
      VmUid(web_);
  const json mine =
      Get("/api/v1/namespaces/prod/events?fieldSelector=" + EncodeQueryValue(selector));
  ASSERT_EQ(mine["items"].size(), 2u);
  EXPECT_EQ(mine["items"][1]["reason"], "Ready");
  EXPECT_TRUE(Get("/api/v1/namespaces/prod/events?fieldSelector=" +
                  EncodeQueryValue("involvedObject.name=web-1,involvedObject.uid=other"))["items"]
                  .empty());
  EXPECT_EQ(Get("/api/v1/events?fieldSelector=" + EncodeQueryValue("type=Warning"))["items"].size(),
            1u);
  EXPECT_EQ(
      Get("/api/v1/events?fieldSelector=" + EncodeQueryValue("involvedObject.kind=Pod"))["items"]
          .size(),
      0u);
  EXPECT_EQ(Get("/api/v1/events?fieldSelector=count%3D1", 400)["message"],
            "field label not supported: count");

  const std::string name = e["metadata"]["name"];
  EXPECT_EQ(Get("/api/v1/namespaces/prod/events/" + name)["reason"], "Booted");
  EXPECT_EQ(Get("/api/v1/namespaces/prod/events/nope", 404)["reason"], "NotFound");
}

TEST_F(StatusApiTest, EventsAsATableHaveKubectlsEventColumns) {
  PutThree();
  source_.events[web_] = {{clock_.WallNow() - seconds(30), "Normal", "Booted", "VMM started"}};
  const json table = Get("/api/v1/namespaces/prod/events", 200, kTableAccept);
  std::vector<std::string> shown;
  for (const json& c : table["columnDefinitions"]) {
    if (c["priority"] == 0) shown.push_back(c["name"]);
  }
  EXPECT_EQ(shown, (std::vector<std::string>{"Last Seen", "Type", "Reason", "Object", "Message"}));
  ASSERT_EQ(table["rows"].size(), 1u);
  EXPECT_EQ(table["rows"][0]["cells"][0], "30s");
  EXPECT_EQ(table["rows"][0]["cells"][3], "virtualmachine/web-1");
}

TEST_F(StatusApiTest, NamespacesAreThoseThatHoldAVm) {
  PutThree();
  const json list = Get("/api/v1/namespaces");
  EXPECT_EQ(Names(list), (std::vector<std::string>{"dev", "prod"}));
  EXPECT_EQ(Get("/api/v1/namespaces/prod")["status"]["phase"], "Active");
  EXPECT_EQ(Get("/api/v1/namespaces/none", 404)["message"], "namespaces \"none\" not found");
}

TEST_F(StatusApiTest, RefreshAllPicksUpEveryKnownVmAndDropsVanishedOnes) {
  source_.vms[web_] = {Desired(web_), Status("Ready")};
  source_.created[web_] = WallTime(seconds(1795000000));
  ASSERT_TRUE(api_.RefreshAll().ok());
  ASSERT_TRUE(api_.log().Get(web_).has_value());
  EXPECT_EQ(api_.log().Get(web_)->created, WallTime(seconds(1795000000)));
  source_.vms.clear();
  ASSERT_TRUE(api_.RefreshAll().ok());
  EXPECT_FALSE(api_.log().Get(web_).has_value());
  EXPECT_EQ(api_.PhaseCounts().size(), 0u);
}

TEST_F(StatusApiTest, PhaseCountsCountEachPhase) {
  PutThree();
  EXPECT_EQ(api_.PhaseCounts(), (std::map<std::string, size_t>{{"Ready", 2}, {"Starting", 1}}));
}

// ---------------------------------------------------------------------------

std::vector<std::pair<std::string, std::string>> TypesAndNames(const std::vector<json>& events) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const json& e : events) out.emplace_back(e["type"], e["object"]["metadata"]["name"]);
  return out;
}

TEST_F(StatusApiTest, AWatchFromAListsVersionSeesAddedModifiedAndDeletedInOrder) {
  PutThree();
  const json list = Get("/apis/vmlet.dev/v1alpha1/namespaces/prod/virtualmachines");
  const std::string rv = list["metadata"]["resourceVersion"];
  ApiReply reply = api_.Handle(Request(
      "/apis/vmlet.dev/v1alpha1/namespaces/prod/virtualmachines?watch=true&resourceVersion=" + rv));
  ASSERT_EQ(reply.code, 200);
  ASSERT_TRUE(reply.watch);
  WatchState& watch = *reply.watch;
  EXPECT_EQ(api_.NextWatchLines(watch), "");

  const api::VmKey web2{"prod", "web-2"};
  Put(web2, {}, "Starting");
  Put(web2, {}, "Stopped", "", api::DesiredState::kStopped);
  Put(api_vm_, {}, "Paused");  // another namespace: not seen
  Remove(web2);
  const std::vector<json> events = Lines(api_.NextWatchLines(watch));
  EXPECT_EQ(TypesAndNames(events),
            (std::vector<std::pair<std::string, std::string>>{
                {"ADDED", "web-2"}, {"MODIFIED", "web-2"}, {"DELETED", "web-2"}}));
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[1]["object"]["spec"]["desiredState"], "Stopped");
  EXPECT_EQ(events[1]["object"]["metadata"]["generation"], 2);
  EXPECT_EQ(events[0]["object"]["metadata"]["resourceVersion"], "4");
  EXPECT_EQ(events[1]["object"]["metadata"]["resourceVersion"], "5");
  EXPECT_EQ(events[2]["object"]["metadata"]["resourceVersion"], "7");
  EXPECT_EQ(watch.resource_version, 7u);
  EXPECT_EQ(api_.NextWatchLines(watch), "");
  EXPECT_FALSE(watch.done);
}

TEST_F(StatusApiTest, AWatchWithoutVersionStartsWithEveryCurrentVm) {
  PutThree();
  ApiReply reply =
      api_.Handle(Request("/apis/vmlet.dev/v1alpha1/virtualmachines?watch=1&labelSelector=app"));
  ASSERT_TRUE(reply.watch);
  EXPECT_EQ(TypesAndNames(Lines(api_.NextWatchLines(*reply.watch))),
            (std::vector<std::pair<std::string, std::string>>{
                {"ADDED", "api-1"}, {"ADDED", "db-1"}, {"ADDED", "web-1"}}));
  EXPECT_EQ(reply.watch->resource_version, 3u);
}

TEST_F(StatusApiTest, AWatchOnOneVmSeesOnlyIt) {
  PutThree();
  ApiReply reply = api_.Handle(
      Request("/apis/vmlet.dev/v1alpha1/namespaces/prod/virtualmachines/web-1?watch=true&"
              "resourceVersion=3"));
  ASSERT_TRUE(reply.watch);
  Put(db_, {{"app", "db"}}, "Ready");
  Put(web_, {{"app", "web"}, {"tier", "front"}}, "Paused");
  EXPECT_EQ(TypesAndNames(Lines(api_.NextWatchLines(*reply.watch))),
            (std::vector<std::pair<std::string, std::string>>{{"MODIFIED", "web-1"}}));
}

TEST_F(StatusApiTest, AVmThatMovesOutOfALabelSelectionIsDeletedForItsWatch) {
  PutThree();
  ApiReply reply = api_.Handle(Request(
      "/apis/vmlet.dev/v1alpha1/virtualmachines?watch=true&resourceVersion=3&labelSelector=" +
      EncodeQueryValue("app=web")));
  ASSERT_TRUE(reply.watch);
  Put(web_, {{"app", "other"}}, "Ready", "10.0.0.2");
  Put(db_, {{"app", "web"}}, "Starting");
  const std::vector<json> events = Lines(api_.NextWatchLines(*reply.watch));
  EXPECT_EQ(TypesAndNames(events), (std::vector<std::pair<std::string, std::string>>{
                                       {"DELETED", "web-1"}, {"ADDED", "db-1"}}));
}

TEST_F(StatusApiTest, AWatchFromAForgottenVersionGets410ExpiredAndEnds) {
  PutThree();
  for (int i = 0; i < 10; ++i) Put(web_, {}, i % 2 ? "Ready" : "Paused");
  ApiReply reply =
      api_.Handle(Request("/apis/vmlet.dev/v1alpha1/virtualmachines?watch=true&resourceVersion=1"));
  ASSERT_TRUE(reply.watch);
  const std::vector<json> events = Lines(api_.NextWatchLines(*reply.watch));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0]["type"], "ERROR");
  EXPECT_EQ(events[0]["object"]["kind"], "Status");
  EXPECT_EQ(events[0]["object"]["code"], 410);
  EXPECT_EQ(events[0]["object"]["reason"], "Expired");
  EXPECT_TRUE(reply.watch->done);
}

TEST_F(StatusApiTest, AWatchEndsAtItsTimeout) {
  ApiReply reply =
      api_.Handle(Request("/apis/vmlet.dev/v1alpha1/virtualmachines?watch=true&timeoutSeconds=5"));
  ASSERT_TRUE(reply.watch);
  EXPECT_EQ(api_.NextWatchLines(*reply.watch), "");
  EXPECT_FALSE(reply.watch->done);
  clock_.Advance(seconds(5));
  EXPECT_EQ(api_.NextWatchLines(*reply.watch), "");
  EXPECT_TRUE(reply.watch->done);
}

TEST_F(StatusApiTest, ATableWatchSendsColumnDefinitionsOnlyInItsFirstEvent) {
  PutThree();
  ApiReply reply = api_.Handle(
      Request("/apis/vmlet.dev/v1alpha1/namespaces/prod/virtualmachines?watch=true", kTableAccept));
  ASSERT_TRUE(reply.watch);
  const std::vector<json> events = Lines(api_.NextWatchLines(*reply.watch));
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0]["object"]["kind"], "Table");
  EXPECT_EQ(events[0]["object"]["columnDefinitions"].size(), 8u);
  EXPECT_EQ(events[0]["object"]["rows"][0]["cells"][0], "db-1");
  EXPECT_TRUE(events[1]["object"]["columnDefinitions"].empty());
  EXPECT_EQ(events[1]["object"]["rows"][0]["cells"][0], "web-1");
}

TEST_F(StatusApiTest, AMalformedResourceVersionIsABadRequest) {
  EXPECT_EQ(
      Get("/apis/vmlet.dev/v1alpha1/virtualmachines?watch=true&resourceVersion=abc", 400)["reason"],
      "BadRequest");
}

}  // namespace
}  // namespace vmlet::controller
