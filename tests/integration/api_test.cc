// `vmlet run --driver fake --api-addr 127.0.0.1:PORT` as a separate process,
// read over HTTP with libcurl as kubectl reads a Kubernetes API server:
// discovery, lists, gets, selectors, Tables, a watch, events, 405 for
// writes, /readyz; then `vmlet get` / `vmlet describe` against it, kubectl
// itself where it is installed, and sd_notify through a NOTIFY_SOCKET.
//
// Processes are started by VmletProcess and ended by their recorded pid.
// Waits poll a condition until a deadline. Each test has its own temporary
// directory.

#include <arpa/inet.h>
#include <curl/curl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "api/vm_key.h"
#include "tests/support/files.h"
#include "tests/support/free_port.h"
#include "tests/support/http_client.h"
#include "tests/support/manifest_builder.h"
#include "tests/support/vmlet_process.h"
#include "tests/support/vmlet_test.h"
#include "tests/support/wait_for.h"

namespace vmlet::testing {
namespace {

// What vmlet takes for its node name without --node-name.
std::string HostName() {
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0) return "";
  return name;
}

namespace fs = std::filesystem;
using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;
using SteadyClock = std::chrono::steady_clock;

constexpr const char* kTableAccept =
    "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta."
    "k8s.io,application/json";

// A watch request read on a thread of its own, line by line, until the
// test ends it (the destructor) or the server does.
class WatchStream {
 public:
  explicit WatchStream(const std::string& url) : thread_([this, url] { Run(url); }) {}
  ~WatchStream() {
    stop_ = true;
    thread_.join();
  }

  // The complete lines so far, parsed.
  std::vector<json> Events() const {
    std::lock_guard lock(mu_);
    std::vector<json> events;
    std::istringstream in(data_);
    for (std::string line; std::getline(in, line);) {
      if (in.eof()) break;  // no newline yet: incomplete
      events.push_back(json::parse(line, nullptr, false));
    }
    return events;
  }
  std::string Raw() const {
    std::lock_guard lock(mu_);
    return data_;
  }
  bool ended() const { return ended_; }

 private:
  static size_t OnData(char* data, size_t size, size_t count, void* self) {
    auto* stream = static_cast<WatchStream*>(self);
    std::lock_guard lock(stream->mu_);
    stream->data_.append(data, size * count);
    return size * count;
  }
  static int OnProgress(void* self, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
    return static_cast<WatchStream*>(self)->stop_ ? 1 : 0;
  }
  void Run(const std::string& url) {
    CURL* curl = curl_easy_init();
    curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, OnData);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, this);
    curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, OnProgress);
    curl_easy_setopt(curl, CURLOPT_XFERINFODATA, this);
    curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 180000L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_perform(curl);
    curl_easy_cleanup(curl);
    ended_ = true;
  }

  std::atomic<bool> stop_{false};
  std::atomic<bool> ended_{false};
  mutable std::mutex mu_;
  std::string data_;  // guarded by mu_
  std::thread thread_;
};

std::vector<std::string> Names(const json& list) {
  std::vector<std::string> names;
  for (const json& item : list["items"]) names.push_back(item["metadata"]["name"]);
  return names;
}

// Where `name` is on PATH, or "".
std::string FindOnPath(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path ? path : "");
  for (std::string dir; std::getline(dirs, dir, ':');) {
    const std::string candidate = dir + "/" + name;
    if (!dir.empty() && ::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

class ApiTest : public VmletTest {
 protected:
  ApiTest() : VmletTest("api", VMLET_BINARY) {}

  static void SetUpTestSuite() { curl_global_init(CURL_GLOBAL_DEFAULT); }
  static void TearDownTestSuite() { curl_global_cleanup(); }

  void SetUp() override {
    const int port = FreeLoopbackPort();
    ASSERT_GT(port, 0);
    addr_ = "127.0.0.1:" + std::to_string(port);
    base_ = "http://" + addr_;
  }

  void StartVmlet() {
    StartVmletRun({"--driver", "fake", "--fake-boot-delay", "200ms", "--fake-shutdown-delay",
                   "50ms", "--metrics-addr", "off", "--api-addr", addr_});
  }

  // Waits until the API lists exactly `count` VMs, every one Ready.
  void WaitForReady(size_t count) {
    json list;
    const bool ready = WaitFor(seconds(30), [&] {
      list = HttpGet(base_ + "/apis/vmlet.dev/v1alpha1/virtualmachines").Json();
      if (!list.is_object() || list["items"].size() != count) return false;
      for (const json& vm : list["items"]) {
        if (vm["status"].value("phase", "") != "Ready") return false;
      }
      return true;
    });
    ASSERT_TRUE(ready) << "not " << count << " Ready VMs within 30 s; last list:\n" << list.dump(2);
  }

  // prod/web-1 {app: web, tier: front}, prod/db-1 {app: db}, dev/api-1
  // {app: web}, all Ready.
  void StartWithThreeVms() {
    WriteManifest(web_, FakeDriverManifest(web_, "Running", "1", "{app: web, tier: front}"));
    WriteManifest(db_, FakeDriverManifest(db_, "Running", "1", "{app: db}"));
    WriteManifest(api_vm_, FakeDriverManifest(api_vm_, "Running", "1", "{app: web}"));
    ASSERT_NO_FATAL_FAILURE(StartVmlet());
    ASSERT_NO_FATAL_FAILURE(WaitForReady(3));
  }

  CommandResult Run(const std::string& binary, const std::vector<std::string>& args) {
    return RunToExit(binary, args, tmp_ + "/command-" + std::to_string(++commands_) + ".log",
                     seconds(60));
  }
  CommandResult Vmlet(std::vector<std::string> args) {
    args.push_back("--api-addr");
    args.push_back(addr_);
    return Run(VMLET_BINARY, args);
  }

  std::string addr_, base_;
  int commands_ = 0;
  const api::VmKey web_{"prod", "web-1"};
  const api::VmKey db_{"prod", "db-1"};
  const api::VmKey api_vm_{"dev", "api-1"};
};

TEST_F(ApiTest, DiscoveryListGetSelectorsTablesAndNotFoundAreKubernetesShaped) {
  ASSERT_NO_FATAL_FAILURE(StartWithThreeVms());
  const std::string vms = base_ + "/apis/vmlet.dev/v1alpha1";

  // Discovery, as kubectl walks it.
  EXPECT_EQ(HttpGet(base_ + "/api").Json()["versions"], json::array({"v1"}));
  const json groups = HttpGet(base_ + "/apis").Json();
  EXPECT_EQ(groups["kind"], "APIGroupList");
  EXPECT_EQ(groups["groups"][0]["name"], "vmlet.dev");
  EXPECT_EQ(groups["groups"][0]["preferredVersion"]["version"], "v1alpha1");
  const json resources = HttpGet(vms).Json();
  EXPECT_EQ(resources["kind"], "APIResourceList");
  EXPECT_EQ(resources["groupVersion"], "vmlet.dev/v1alpha1");
  const json vm_resource = resources["resources"][0];
  EXPECT_EQ(vm_resource["name"], "virtualmachines");
  EXPECT_EQ(vm_resource["singularName"], "virtualmachine");
  EXPECT_EQ(vm_resource["shortNames"], json::array({"vm"}));
  EXPECT_EQ(vm_resource["kind"], "VirtualMachine");
  EXPECT_EQ(vm_resource["namespaced"], true);
  EXPECT_EQ(vm_resource["verbs"], json::array({"get", "list", "watch"}));
  EXPECT_EQ(HttpGet(base_ + "/api/v1").Json()["resources"][0]["name"], "events");
  const json version = HttpGet(base_ + "/version").Json();
  EXPECT_EQ(version["gitVersion"], std::string("v") + VMLET_VERSION);
  EXPECT_EQ(HttpGet(base_ + "/healthz").body, "ok");
  HttpReply ready = HttpGet(base_ + "/readyz");
  EXPECT_EQ(ready.status, 200);
  EXPECT_EQ(ready.body, "ok");

  // Lists and gets.
  const json all = HttpGet(vms + "/virtualmachines").Json();
  EXPECT_EQ(all["kind"], "VirtualMachineList");
  EXPECT_EQ(Names(all), (std::vector<std::string>{"api-1", "db-1", "web-1"}));
  EXPECT_GT(std::stoull(all["metadata"]["resourceVersion"].get<std::string>()), 0u);
  EXPECT_EQ(Names(HttpGet(vms + "/namespaces/prod/virtualmachines").Json()),
            (std::vector<std::string>{"db-1", "web-1"}));
  const json web = HttpGet(vms + "/namespaces/prod/virtualmachines/web-1").Json();
  EXPECT_EQ(web["apiVersion"], "vmlet.dev/v1alpha1");
  EXPECT_EQ(web["kind"], "VirtualMachine");
  EXPECT_EQ(web["metadata"]["labels"], json({{"app", "web"}, {"tier", "front"}}));
  EXPECT_EQ(web["metadata"]["generation"], 1);
  EXPECT_EQ(web["metadata"]["uid"].get<std::string>().size(), 36u);
  EXPECT_EQ(web["spec"]["cpus"], 1);
  EXPECT_EQ(web["spec"]["desiredState"], "Running");
  EXPECT_EQ(web["status"]["phase"], "Ready");
  EXPECT_EQ(web["status"]["desiredState"], "Running");
  EXPECT_FALSE(web["status"]["ip"].get<std::string>().empty());
  // The same VM, the same uid, every time.
  EXPECT_EQ(HttpGet(vms + "/namespaces/prod/virtualmachines/web-1").Json()["metadata"]["uid"],
            web["metadata"]["uid"]);

  // A missing VM is a Kubernetes NotFound Status.
  HttpReply missing = HttpGet(vms + "/namespaces/prod/virtualmachines/nope");
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(missing.Json(), json::parse(R"({"kind":"Status","apiVersion":"v1","metadata":{},
      "status":"Failure","message":"virtualmachines.vmlet.dev \"nope\" not found",
      "reason":"NotFound","details":{"name":"nope","group":"vmlet.dev","kind":"virtualmachines"},
      "code":404})"));

  // Label and field selectors.
  const std::string list = vms + "/virtualmachines?";
  EXPECT_EQ(Names(HttpGet(list + "labelSelector=" + UrlEncode("app=web")).Json()),
            (std::vector<std::string>{"api-1", "web-1"}));
  EXPECT_EQ(Names(HttpGet(list + "labelSelector=" + UrlEncode("app==web,tier")).Json()),
            std::vector<std::string>{"web-1"});
  EXPECT_EQ(Names(HttpGet(list + "labelSelector=" + UrlEncode("app!=web")).Json()),
            std::vector<std::string>{"db-1"});
  EXPECT_EQ(Names(HttpGet(list + "labelSelector=" + UrlEncode("app in (db,x)")).Json()),
            std::vector<std::string>{"db-1"});
  EXPECT_EQ(Names(HttpGet(list + "labelSelector=" + UrlEncode("app notin (web)")).Json()),
            std::vector<std::string>{"db-1"});
  EXPECT_EQ(Names(HttpGet(list + "labelSelector=" + UrlEncode("!tier")).Json()),
            (std::vector<std::string>{"api-1", "db-1"}));
  EXPECT_EQ(Names(HttpGet(list + "fieldSelector=" + UrlEncode("metadata.name=db-1")).Json()),
            std::vector<std::string>{"db-1"});
  EXPECT_EQ(Names(HttpGet(list + "fieldSelector=" + UrlEncode("metadata.namespace=dev")).Json()),
            std::vector<std::string>{"api-1"});
  HttpReply bad = HttpGet(list + "fieldSelector=" + UrlEncode("spec.cpus=1"));
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(bad.Json()["message"], "field label not supported: spec.cpus");
  EXPECT_EQ(HttpGet(list + "labelSelector=" + UrlEncode("app in web")).status, 400);

  // A Table, as kubectl get asks for one.
  HttpReply table = Http({.url = vms + "/namespaces/prod/virtualmachines", .accept = kTableAccept});
  EXPECT_EQ(table.status, 200);
  EXPECT_EQ(table.content_type, "application/json;as=Table;v=v1;g=meta.k8s.io");
  const json t = table.Json();
  EXPECT_EQ(t["kind"], "Table");
  EXPECT_EQ(t["apiVersion"], "meta.k8s.io/v1");
  std::vector<std::string> columns;
  for (const json& c : t["columnDefinitions"]) {
    columns.push_back(c["name"].get<std::string>() + "/" +
                      std::to_string(c["priority"].get<int>()));
  }
  EXPECT_EQ(columns, (std::vector<std::string>{"Name/0", "Desired/0", "Phase/0", "IP/0",
                                               "Restarts/0", "Age/0", "Node/0", "Driver/1"}));
  ASSERT_EQ(t["rows"].size(), 2u);
  const json row = t["rows"][1]["cells"];
  EXPECT_EQ(row[0], "web-1");
  EXPECT_EQ(row[1], "Running");
  EXPECT_EQ(row[2], "Ready");
  EXPECT_EQ(row[3], web["status"]["ip"]);
  EXPECT_EQ(row[4], 0);
  EXPECT_EQ(row[7], "fake");
  EXPECT_EQ(t["rows"][1]["object"]["kind"], "PartialObjectMetadata");
  EXPECT_EQ(t["rows"][1]["object"]["metadata"]["name"], "web-1");
  EXPECT_EQ(t["rows"][1]["object"]["metadata"]["namespace"], "prod");

  // Read-only.
  for (const char* method : {"POST", "PUT", "DELETE", "PATCH"}) {
    HttpReply write =
        Http({.url = vms + "/namespaces/prod/virtualmachines/web-1", .method = method});
    EXPECT_EQ(write.status, 405) << method;
    EXPECT_EQ(write.Json()["kind"], "Status") << method;
    EXPECT_EQ(write.Json()["reason"], "MethodNotAllowed") << method;
  }
  EXPECT_EQ(HttpGet(vms + "/namespaces/prod/virtualmachines/web-1").status, 200);
}

TEST_F(ApiTest, AWatchSeesAVmAddedModifiedAndDeleted) {
  WriteManifest(web_, FakeDriverManifest(web_, "Running", "1", "{app: web}"));
  ASSERT_NO_FATAL_FAILURE(StartVmlet());
  ASSERT_NO_FATAL_FAILURE(WaitForReady(1));
  const std::string vms = base_ + "/apis/vmlet.dev/v1alpha1/namespaces/prod/virtualmachines";
  const std::string rv = HttpGet(vms).Json()["metadata"]["resourceVersion"];
  WatchStream watch(vms + "?watch=true&resourceVersion=" + rv);

  const api::VmKey web2{"prod", "web-2"};
  auto seen = [&](const std::string& type, const std::function<bool(const json&)>& also) {
    return WaitFor(seconds(30), [&] {
      for (const json& e : watch.Events()) {
        if (e["type"] == type && e["object"]["metadata"]["name"] == "web-2" && also(e["object"])) {
          return true;
        }
      }
      return false;
    });
  };
  WriteManifest(web2, FakeDriverManifest(web2, "Running", "1", "{app: web}"));
  ASSERT_TRUE(seen("ADDED", [](const json&) { return true; })) << watch.Raw();
  ASSERT_TRUE(seen("MODIFIED", [](const json& vm) { return vm["status"]["phase"] == "Ready"; }))
      << watch.Raw();

  WriteManifest(web2, FakeDriverManifest(web2, "Stopped", "1", "{app: web}"));
  ASSERT_TRUE(seen("MODIFIED", [](const json& vm) {
    return vm["spec"]["desiredState"] == "Stopped" && vm["metadata"]["generation"] == 2;
  })) << watch.Raw();

  fs::remove(ManifestPath(web2));
  ASSERT_TRUE(seen("DELETED", [](const json&) { return true; })) << watch.Raw();

  // Only web-2 changed; each event has a larger resourceVersion than the one
  // before; ADDED comes first and DELETED last.
  const std::vector<json> events = watch.Events();
  uint64_t last = std::stoull(rv);
  for (const json& e : events) {
    EXPECT_EQ(e["object"]["metadata"]["name"], "web-2") << e.dump();
    const uint64_t v = std::stoull(e["object"]["metadata"]["resourceVersion"].get<std::string>());
    EXPECT_GT(v, last) << e.dump();
    last = v;
  }
  ASSERT_GE(events.size(), 3u);
  EXPECT_EQ(events.front()["type"], "ADDED");
  EXPECT_EQ(events.back()["type"], "DELETED");
  EXPECT_FALSE(watch.ended());
}

TEST_F(ApiTest, EventsAreCoreV1EventsSelectedByTheirInvolvedObject) {
  ASSERT_NO_FATAL_FAILURE(StartWithThreeVms());
  const json web =
      HttpGet(base_ + "/apis/vmlet.dev/v1alpha1/namespaces/prod/virtualmachines/web-1").Json();
  const std::string selector =
      "involvedObject.name=web-1,involvedObject.namespace=prod,"
      "involvedObject.kind=VirtualMachine,involvedObject.uid=" +
      web["metadata"]["uid"].get<std::string>();
  const json events =
      HttpGet(base_ + "/api/v1/namespaces/prod/events?fieldSelector=" + UrlEncode(selector)).Json();
  EXPECT_EQ(events["kind"], "EventList");
  std::set<std::string> reasons;
  for (const json& e : events["items"]) {
    EXPECT_EQ(e["kind"], "Event");
    EXPECT_EQ(e["involvedObject"]["apiVersion"], "vmlet.dev/v1alpha1");
    EXPECT_EQ(e["involvedObject"]["kind"], "VirtualMachine");
    EXPECT_EQ(e["involvedObject"]["name"], "web-1");
    EXPECT_EQ(e["involvedObject"]["namespace"], "prod");
    EXPECT_EQ(e["involvedObject"]["uid"], web["metadata"]["uid"]);
    EXPECT_EQ(e["source"]["component"], "vmlet");
    EXPECT_EQ(e["count"], 1);
    EXPECT_FALSE(e["firstTimestamp"].get<std::string>().empty());
    reasons.insert(e["reason"].get<std::string>());
  }
  EXPECT_TRUE(reasons.contains("Booted")) << events.dump(2);
  EXPECT_TRUE(reasons.contains("Ready")) << events.dump(2);

  // Every namespace, and one other VM's.
  EXPECT_GE(HttpGet(base_ + "/api/v1/events").Json()["items"].size(), 6u);
  const json db = HttpGet(base_ + "/api/v1/events?fieldSelector=" +
                          UrlEncode("involvedObject.namespace=prod,involvedObject.name=db-1"))
                      .Json();
  ASSERT_FALSE(db["items"].empty());
  for (const json& e : db["items"]) EXPECT_EQ(e["involvedObject"]["name"], "db-1");
  EXPECT_EQ(HttpGet(base_ + "/api/v1/events?fieldSelector=" + UrlEncode("spec.x=1")).status, 400);
}

TEST_F(ApiTest, ReadyzIs503UntilTheManifestDirectoryIsRead) {
  fs::remove_all(manifests_);  // a missing directory cannot be read
  ASSERT_NO_FATAL_FAILURE(StartVmlet());
  ASSERT_TRUE(WaitFor(seconds(30), [&] { return HttpGet(base_ + "/healthz").status == 200; }));
  HttpReply not_ready = HttpGet(base_ + "/readyz");
  EXPECT_EQ(not_ready.status, 503);
  fs::create_directories(manifests_);
  EXPECT_TRUE(WaitFor(seconds(60), [&] { return HttpGet(base_ + "/readyz").status == 200; }))
      << "/readyz is not 200 60 s after the manifest directory appeared";
}

TEST_F(ApiTest, GetAndDescribePrintTheVmsAsKubectlDoes) {
  ASSERT_NO_FATAL_FAILURE(StartWithThreeVms());
  const json web =
      HttpGet(base_ + "/apis/vmlet.dev/v1alpha1/namespaces/prod/virtualmachines/web-1").Json();
  const std::string ip = web["status"]["ip"];
  const std::string db_ip =
      HttpGet(base_ + "/apis/vmlet.dev/v1alpha1/namespaces/prod/virtualmachines/db-1")
          .Json()["status"]["ip"];
  // kubectl's tabwriter: a column is as wide as its widest cell + 3.
  const size_t ip_width = std::max(ip.size(), db_ip.size()) + 3;
  auto pad = [](const std::string& cell, size_t width) {
    return cell + std::string(width - cell.size(), ' ');
  };

  CommandResult get = Vmlet({"get", "-n", "prod"});
  EXPECT_EQ(get.exit_code, 0) << get.output;
  std::istringstream lines(get.output);
  std::string header, first, second;
  std::getline(lines, header);
  std::getline(lines, first);
  std::getline(lines, second);
  // AGE's width depends on how old the VMs are; NODE is this vmlet's
  // (the manifests name none).
  EXPECT_TRUE(header.starts_with("NAME    DESIRED   PHASE   " + pad("IP", ip_width) +
                                 "RESTARTS   AGE   ") &&
              header.ends_with("   NODE"))
      << get.output;
  EXPECT_TRUE(first.ends_with("   " + HostName())) << get.output;
  EXPECT_TRUE(
      first.starts_with("db-1    Running   Ready   " + pad(db_ip, ip_width) + "0          "))
      << get.output;
  EXPECT_TRUE(second.starts_with("web-1   Running   Ready   " + pad(ip, ip_width) + "0          "))
      << get.output;

  CommandResult wide = Vmlet({"get", "-A", "-o", "wide"});
  EXPECT_EQ(wide.exit_code, 0) << wide.output;
  EXPECT_TRUE(wide.output.starts_with("NAMESPACE   NAME    DESIRED   PHASE")) << wide.output;
  EXPECT_NE(
      wide.output.find("   NODE" + std::string(std::max<size_t>(HostName().size(), 4) - 1, ' ') +
                       "DRIVER\n"),
      std::string::npos)
      << wide.output;
  EXPECT_NE(wide.output.find("\ndev         api-1   Running   Ready"), std::string::npos)
      << wide.output;

  CommandResult one = Vmlet({"get", "web-1", "-n", "prod", "-o", "json"});
  EXPECT_EQ(one.exit_code, 0) << one.output;
  const json object = json::parse(one.output, nullptr, false);
  EXPECT_EQ(object["metadata"]["uid"], web["metadata"]["uid"]) << one.output;
  CommandResult listed = Vmlet({"get", "-n", "prod", "-o", "json"});
  EXPECT_EQ(json::parse(listed.output, nullptr, false)["kind"], "List") << listed.output;
  CommandResult yaml = Vmlet({"get", "web-1", "-n", "prod", "-o", "yaml"});
  EXPECT_EQ(yaml.exit_code, 0) << yaml.output;
  EXPECT_NE(yaml.output.find("kind: VirtualMachine\n"), std::string::npos) << yaml.output;
  EXPECT_NE(yaml.output.find("  phase: Ready\n"), std::string::npos) << yaml.output;

  CommandResult none = Vmlet({"get", "-n", "empty"});
  EXPECT_EQ(none.exit_code, 0);
  EXPECT_EQ(none.output, "No resources found in empty namespace.\n");

  CommandResult missing = Vmlet({"get", "nope", "-n", "prod"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_EQ(missing.output,
            "Error from server (NotFound): virtualmachines.vmlet.dev \"nope\" not found\n");

  CommandResult describe = Vmlet({"describe", "prod/web-1"});
  EXPECT_EQ(describe.exit_code, 0) << describe.output;
  for (const std::string& expected :
       {std::string("Name:              web-1\n"), std::string("Namespace:         prod\n"),
        std::string("Labels:            app=web\n                   tier=front\n"),
        std::string("\nSpec:\n"), std::string("  Desired State:  Running\n"),
        std::string("\nStatus:\n"), std::string("  Phase:                       Ready\n"),
        std::string("\nConditions:\n  Type "), std::string("\n  Ready             True    "),
        std::string("\nEvents:\n  Type    Reason  Age"), std::string("  Normal  Booted  "),
        std::string("  Normal  Ready   ")}) {
    EXPECT_NE(describe.output.find(expected), std::string::npos)
        << "no \"" << expected << "\" in:\n"
        << describe.output;
  }
  CommandResult describe_missing = Vmlet({"describe", "prod/nope"});
  EXPECT_EQ(describe_missing.exit_code, 1);
  EXPECT_EQ(describe_missing.output,
            "Error from server (NotFound): virtualmachines.vmlet.dev \"nope\" not found\n");
}

TEST_F(ApiTest, GetAndDescribeSayNothingListensAndExit1) {
  // Nothing was started on addr_.
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"get"}, std::vector<std::string>{"describe", "prod/web-1"}}) {
    CommandResult result = Vmlet(args);
    EXPECT_EQ(result.exit_code, 1) << result.output;
    EXPECT_TRUE(result.output.starts_with("vmlet: cannot reach the vmlet API at " + addr_))
        << result.output;
    EXPECT_NE(result.output.find("is `vmlet run` running"), std::string::npos) << result.output;
  }
}

TEST_F(ApiTest, KubectlGetsDescribesAndWatchesVms) {
  const std::string kubectl = FindOnPath("kubectl");
  if (kubectl.empty()) GTEST_SKIP() << "kubectl is not installed";
  ASSERT_NO_FATAL_FAILURE(StartWithThreeVms());
  const std::string kubeconfig = tmp_ + "/kubeconfig";
  {
    std::ofstream out(kubeconfig);
    out << "apiVersion: v1\nkind: Config\n"
           "clusters:\n- name: vmlet\n  cluster: {server: \""
        << base_
        << "\"}\n"
           "contexts:\n- name: vmlet\n  context: {cluster: vmlet, user: vmlet}\n"
           "users:\n- name: vmlet\n  user: {}\n"
           "current-context: vmlet\n";
  }
  auto run = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {"--kubeconfig", kubeconfig, "--cache-dir", tmp_ + "/kube-cache"});
    return Run(kubectl, args);
  };

  // `vmlet get` prints what `kubectl get` prints (asked within the same
  // second, so that AGE agrees: retried a few times).
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"-n", "prod"}, std::vector<std::string>{"-A", "-o", "wide"},
        std::vector<std::string>{"web-1", "-n", "prod"}}) {
    CommandResult theirs, ours;
    for (int attempt = 0; attempt < 5; ++attempt) {
      std::vector<std::string> kubectl_args = {"get", "vm"};
      kubectl_args.insert(kubectl_args.end(), args.begin(), args.end());
      theirs = run(kubectl_args);
      std::vector<std::string> vmlet_args = {"get"};
      vmlet_args.insert(vmlet_args.end(), args.begin(), args.end());
      ours = Vmlet(vmlet_args);
      if (theirs.output == ours.output) break;
    }
    EXPECT_EQ(theirs.exit_code, 0) << theirs.output;
    EXPECT_EQ(ours.exit_code, 0) << ours.output;
    EXPECT_EQ(ours.output, theirs.output);
  }

  // Label and field selectors, and the short name.
  CommandResult labelled = run({"get", "vm", "-A", "-l", "app=web"});
  EXPECT_EQ(labelled.exit_code, 0) << labelled.output;
  EXPECT_NE(labelled.output.find("web-1"), std::string::npos) << labelled.output;
  EXPECT_NE(labelled.output.find("api-1"), std::string::npos) << labelled.output;
  EXPECT_EQ(labelled.output.find("db-1"), std::string::npos) << labelled.output;
  CommandResult by_field =
      run({"get", "virtualmachines", "-A", "--field-selector", "metadata.name=db-1"});
  EXPECT_EQ(by_field.exit_code, 0) << by_field.output;
  EXPECT_NE(by_field.output.find("\nprod        db-1 "), std::string::npos) << by_field.output;
  EXPECT_EQ(by_field.output.find("web-1"), std::string::npos) << by_field.output;

  CommandResult missing = run({"get", "vm", "nope", "-n", "prod"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_EQ(missing.output,
            "Error from server (NotFound): virtualmachines.vmlet.dev \"nope\" not found\n");

  // -o json parses, and its status is the VM's status.json (asked until a
  // reconcile pass does not land between the two reads).
  bool same_status = false;
  json from_kubectl, from_file;
  for (int attempt = 0; attempt < 5 && !same_status; ++attempt) {
    CommandResult as_json = run({"get", "vm", "web-1", "-n", "prod", "-o", "json"});
    ASSERT_EQ(as_json.exit_code, 0) << as_json.output;
    from_kubectl = json::parse(as_json.output, nullptr, false);
    std::ifstream in(state_ + "/vms/prod/web-1/status.json");
    from_file = json::parse(in, nullptr, false);
    ASSERT_TRUE(from_kubectl.is_object()) << as_json.output;
    same_status = from_kubectl["status"] == from_file;
  }
  EXPECT_TRUE(same_status) << from_kubectl["status"].dump(2) << "\nvs status.json\n"
                           << from_file.dump(2);
  EXPECT_EQ(from_kubectl.value("kind", ""), "VirtualMachine");

  // Git is the source of truth: the API refuses to delete.
  CommandResult deleted = run({"delete", "vm", "web-1", "-n", "prod"});
  EXPECT_NE(deleted.exit_code, 0) << deleted.output;
  EXPECT_NE(deleted.output.find("MethodNotAllowed"), std::string::npos) << deleted.output;
  EXPECT_TRUE(run({"get", "vm", "web-1", "-n", "prod"}).exit_code == 0);

  CommandResult describe = run({"describe", "vm", "-n", "prod", "web-1"});
  EXPECT_EQ(describe.exit_code, 0) << describe.output;
  EXPECT_NE(describe.output.find("Kind:         VirtualMachine\n"), std::string::npos)
      << describe.output;
  EXPECT_NE(describe.output.find("\nEvents:\n  Type    Reason  Age"), std::string::npos)
      << describe.output;
  EXPECT_NE(describe.output.find("  Normal  Booted "), std::string::npos) << describe.output;

  // kubectl get -w: the list, then the change of db-1 as a row.
  const std::string watch_log = tmp_ + "/kubectl-watch.log";
  VmletProcess watch;
  ASSERT_EQ(watch.Start(kubectl,
                        {"--kubeconfig", kubeconfig, "--cache-dir", tmp_ + "/kube-cache", "get",
                         "vm", "-n", "prod", "-w", "--output-watch-events"},
                        watch_log),
            "");
  ASSERT_TRUE(WaitFor(seconds(30), [&] {
    return TailOfFile(watch_log, 10).find("web-1") != std::string::npos;
  })) << TailOfFile(watch_log, 10);
  const auto edited = std::chrono::steady_clock::now();
  WriteManifest(db_, FakeDriverManifest(db_, "Paused", "1", "{app: db}"));
  // A MODIFIED row for db-1 whose DESIRED and PHASE both read Paused. How
  // long it took is printed (the goal: within a second), not asserted.
  EXPECT_TRUE(WaitFor(seconds(30), [&] {
    std::istringstream in(TailOfFile(watch_log, 20));
    for (std::string line; std::getline(in, line);) {
      std::istringstream words(line);
      std::vector<std::string> w{std::istream_iterator<std::string>(words), {}};
      if (w.size() >= 4 && w[0] == "MODIFIED" && w[1] == "db-1" && w[2] == "Paused" &&
          w[3] == "Paused") {
        return true;
      }
    }
    return false;
  })) << TailOfFile(watch_log, 20);
  std::cout << "kubectl get -w printed the Paused row "
            << std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - edited)
                   .count()
            << " ms after the manifest edit (polled every 50 ms)\n";
  watch.KillAndReap();
}

TEST_F(ApiTest, TellsSystemdWhenReadyPingsTheWatchdogAndSaysWhenStopping) {
  const std::string socket_path = tmp_ + "/notify.sock";
  const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", socket_path.c_str());
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);

  WriteManifest(web_, FakeDriverManifest(web_, "Running", "1", "{app: web}"));
  // The environment a unit with Type=notify and WatchdogSec=0.4 gives.
  ::setenv("NOTIFY_SOCKET", socket_path.c_str(), 1);
  ::setenv("WATCHDOG_USEC", "400000", 1);
  StartVmlet();
  ::unsetenv("NOTIFY_SOCKET");
  ::unsetenv("WATCHDOG_USEC");

  std::vector<std::string> messages;
  auto receive_until = [&](const std::function<bool()>& done) {
    const auto deadline = SteadyClock::now() + seconds(30);
    while (!done() && SteadyClock::now() < deadline) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 100) == 1) {
        char buffer[4096];
        const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
        if (n > 0) messages.emplace_back(buffer, static_cast<size_t>(n));
      }
    }
    return done();
  };
  auto count = [&](const std::string& needle) {
    return std::count_if(messages.begin(), messages.end(),
                         [&](const std::string& m) { return m.find(needle) != std::string::npos; });
  };
  EXPECT_TRUE(receive_until([&] { return count("READY=1") == 1 && count("WATCHDOG=1") >= 3; }))
      << ::testing::PrintToString(messages);
  const auto ready = std::find_if(messages.begin(), messages.end(), [](const std::string& m) {
    return m.find("READY=1") != std::string::npos;
  });
  ASSERT_NE(ready, messages.end());
  EXPECT_NE(ready->find("\nSTATUS="), std::string::npos) << *ready;
  EXPECT_TRUE(receive_until([&] { return count("STATUS=1 VM: 1 Ready") >= 1; }))
      << ::testing::PrintToString(messages);

  vmlet_.Signal(SIGTERM);
  EXPECT_TRUE(receive_until([&] { return count("STOPPING=1") == 1; }))
      << ::testing::PrintToString(messages);
  std::optional<int> status = vmlet_.WaitForExit(seconds(10));
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << "wait status " << *status;
  ::close(fd);
}

TEST_F(ApiTest, ApiAddrOffServesNothingAndAnAddressInUseStopsVmlet) {
  // Taken by a listening socket of the test's own.
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(fd, 1), 0);
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const std::string taken = "127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  ASSERT_NO_FATAL_FAILURE(
      StartVmletRun({"--driver", "fake", "--metrics-addr", "off", "--api-addr", taken}));
  std::optional<int> status = vmlet_.WaitForExit(seconds(30));
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 1) << "wait status " << *status;
  EXPECT_NE(TailOfFile(logs_.back(), 5).find("cannot serve the API on " + taken), std::string::npos)
      << TailOfFile(logs_.back(), 5);
  ::close(fd);

  VmletProcess off;
  const std::string off_log = tmp_ + "/off.log";
  ASSERT_EQ(off.Start(VMLET_BINARY,
                      {"run", "--manifests", manifests_, "--state-dir", state_, "--driver", "fake",
                       "--metrics-addr", "off", "--api-addr", "off"},
                      off_log),
            "");
  ASSERT_TRUE(WaitFor(seconds(30), [&] {
    return TailOfFile(off_log, 20).find("event=Running") != std::string::npos;
  }));
  EXPECT_EQ(TailOfFile(off_log, 20).find("event=ApiServing"), std::string::npos);
  off.Signal(SIGTERM);
  std::optional<int> off_status = off.WaitForExit(seconds(10));
  ASSERT_TRUE(off_status.has_value());
  EXPECT_TRUE(WIFEXITED(*off_status) && WEXITSTATUS(*off_status) == 0);
}

}  // namespace
}  // namespace vmlet::testing
