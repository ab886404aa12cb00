// End to end with a real Prometheus: vmlet runs real QEMU VMs (the test
// guest) and serves /metrics; /usr/bin/prometheus (the Debian package)
// scrapes it every second on loopback and evaluates
// deploy/prometheus/vmlet-alerts.yaml every second. What the monitoring kit
// promises is checked against that live data, through Prometheus's HTTP API:
// every family of docs/metrics.md is stored, every query of
// deploy/grafana/vmlet-dashboard.json answers with data (with the dashboard's
// template variables at "All" and at every value they list), and the alert
// rules load, evaluate without error, and fire on what the scenario did.

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "api/vm_key.h"
#include "tests/e2e/e2e_fixture.h"
#include "tests/e2e/vmm_backend.h"
#include "tests/support/free_port.h"
#include "tests/support/vmlet_process.h"

namespace vmlet::testing {
namespace {

using nlohmann::json;
using std::chrono::seconds;

constexpr char kPrometheusBinary[] = "/usr/bin/prometheus";
constexpr char kJob[] = "vmlet";  // the job name the alert rules expect
// What the dashboard's interval variables become. Grafana makes
// $__rate_interval at least four scrape intervals (4 s here); 15 s keeps
// every rate() window at about 15 samples.
constexpr char kRateInterval[] = "15s";
constexpr char kInterval[] = "1s";
// How long Prometheus may take to show something that has already happened
// in vmlet (a scrape and a rule evaluation are each 1 s apart).
constexpr seconds kScrapeTimeout{60};

// The metric families docs/metrics.md lists (its table rows), with their
// type ("gauge", "counter", "histogram").
std::map<std::string, std::string> DocumentedFamilies() {
  std::map<std::string, std::string> families;
  std::istringstream lines(ReadFile(std::string(VMLET_SOURCE_DIR) + "/docs/metrics.md"));
  const std::regex row(R"(^\|\s*`(vmlet_[a-z_]+)`\s*\|\s*([a-z]+))");
  std::smatch m;
  for (std::string line; std::getline(lines, line);) {
    if (std::regex_search(line, m, row)) families[m[1]] = m[2];
  }
  return families;
}

// The alert names of deploy/prometheus/vmlet-alerts.yaml.
std::set<std::string> AlertNamesInRuleFile(const std::string& path) {
  std::set<std::string> names;
  std::istringstream lines(ReadFile(path));
  const std::regex alert(R"(^\s*-\s*alert:\s*(\w+))");
  std::smatch m;
  for (std::string line; std::getline(lines, line);) {
    if (std::regex_search(line, m, alert)) names.insert(m[1]);
  }
  return names;
}

// One target of a dashboard panel.
struct DashboardQuery {
  std::string panel;
  std::string ref_id;
  std::string expr;
};

void CollectQueries(const json& panels, std::vector<DashboardQuery>& out) {
  if (!panels.is_array()) return;
  for (const json& panel : panels) {
    if (panel.contains("targets")) {
      for (const json& target : panel["targets"]) {
        out.push_back(
            {panel.value("title", "?"), target.value("refId", "?"), target.value("expr", "")});
      }
    }
    if (panel.contains("panels")) CollectQueries(panel["panels"], out);
  }
}

// Grafana's formatting of a multi-value variable for a Prometheus regex
// matcher: the values, regex-escaped, as alternatives. The backslashes are
// doubled because the regex sits inside a PromQL string.
std::string RegexOfValues(const std::vector<std::string>& values) {
  std::string out = "(";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out += "|";
    for (const char c : values[i]) {
      if (std::string_view(R"(\^$.|?*+()[]{})").find(c) != std::string_view::npos) out += "\\\\";
      out += c;
    }
  }
  return out + ")";
}

// `expr` with Grafana's variables replaced: the built-in intervals, and
// `$name` / `${name}` from `values`. A variable in neither is left as it is
// and reported in `unknown`.
std::string Substitute(std::string expr, const std::map<std::string, std::string>& values,
                       const std::string& range, std::set<std::string>& unknown) {
  const std::map<std::string, std::string> builtins = {
      {"__rate_interval", kRateInterval}, {"__interval", kInterval}, {"__range", range}};
  static const std::regex variable(R"(\$\{(\w+)\}|\$(\w+))");
  std::string out;
  std::smatch m;
  while (std::regex_search(expr, m, variable)) {
    const std::string name = m[1].matched ? m[1].str() : m[2].str();
    out += m.prefix();
    if (auto b = builtins.find(name); b != builtins.end()) {
      out += b->second;
    } else if (auto v = values.find(name); v != values.end()) {
      out += v->second;
    } else {
      unknown.insert(name);
      out += m.str();
    }
    expr = m.suffix();
  }
  return out + expr;
}

// An instant query's answer: `samples` holds the vector's elements (a scalar
// becomes one without labels); `error` is "" when Prometheus answered with
// success.
struct QueryAnswer {
  json samples = json::array();
  std::string error;
  std::string body;

  // At least one sample whose value is a number (not NaN: Grafana shows
  // nothing for NaN).
  bool HasNumber() const {
    for (const json& s : samples) {
      if (s.contains("value") && s["value"].is_array() && s["value"].size() == 2 &&
          s["value"][1] != "NaN") {
        return true;
      }
    }
    return false;
  }
};

class PrometheusE2eTest : public E2eTest {
 protected:
  PrometheusE2eTest() : E2eTest(MakeQemuBackend()) {}

  // Starts Prometheus on a free loopback port with its own configuration and
  // storage under the test's directory: scrape and rule evaluation every
  // second, the job kJob scraping vmlet at 127.0.0.1:`vmlet_port`, and the
  // repository's alert rules. Returns when Prometheus reports ready.
  void StartPrometheus(int vmlet_port) {
    ASSERT_EQ(::access(kPrometheusBinary, X_OK), 0)
        << kPrometheusBinary << " is missing: install the Debian package prometheus";
    const int port = FreeLoopbackPort();
    ASSERT_GT(port, 0);
    const std::string config = tmp_ + "/prometheus.yml";
    WriteFileAtomically(config, std::string("global:\n"
                                            "  scrape_interval: 1s\n"
                                            "  evaluation_interval: 1s\n"
                                            "rule_files:\n"
                                            "  - ") +
                                    RuleFile() +
                                    "\n"
                                    "scrape_configs:\n"
                                    "  - job_name: " +
                                    kJob +
                                    "\n"
                                    "    static_configs:\n"
                                    "      - targets: ['127.0.0.1:" +
                                    std::to_string(vmlet_port) + "']\n");
    const std::string log = tmp_ + "/prometheus.log";
    logs_.push_back(log);
    others_.push_back(std::make_unique<VmletProcess>());
    prometheus_ = others_.back().get();
    ASSERT_EQ(prometheus_->Start(
                  kPrometheusBinary,
                  {"--config.file=" + config, "--storage.tsdb.path=" + tmp_ + "/prometheus-data",
                   "--web.listen-address=127.0.0.1:" + std::to_string(port)},
                  log),
              "");
    prometheus_started_ = std::chrono::steady_clock::now();
    url_ = "http://127.0.0.1:" + std::to_string(port);
    ASSERT_TRUE(WaitFor(seconds(60), [&] {
      return !Alive(prometheus_->pid()) || HttpGet(url_ + "/-/ready").status == 200;
    })) << "Prometheus not ready within 60 s";
    ASSERT_TRUE(Alive(prometheus_->pid())) << "Prometheus exited:\n" << TailOfFile(log, 30);
  }

  static std::string RuleFile() {
    return std::string(VMLET_SOURCE_DIR) + "/deploy/prometheus/vmlet-alerts.yaml";
  }

  // GET `path` of Prometheus's API; the reply's `data`, or a discarded value
  // with `error` set.
  json ApiGet(const std::string& path, std::string& error, std::string* body = nullptr) const {
    const HttpReply reply = HttpGet(url_ + path);
    if (body != nullptr) *body = reply.body;
    if (!reply.error.empty()) {
      error = reply.error;
      return json(json::value_t::discarded);
    }
    const json parsed = json::parse(reply.body, nullptr, false);
    if (!parsed.is_object() || parsed.value("status", "") != "success") {
      error = "HTTP " + std::to_string(reply.status) + ": " + reply.body;
      return json(json::value_t::discarded);
    }
    error.clear();
    return parsed["data"];
  }

  QueryAnswer Query(const std::string& expr) const {
    QueryAnswer answer;
    const json data = ApiGet("/api/v1/query?query=" + UrlEncode(expr), answer.error, &answer.body);
    if (!answer.error.empty()) return answer;
    const std::string type = data.value("resultType", "");
    if (type == "vector") {
      answer.samples = data["result"];
    } else if (type == "scalar") {
      answer.samples.push_back(json{{"metric", json::object()}, {"value", data["result"]}});
    } else {
      answer.error = "unexpected result type " + type;
    }
    return answer;
  }

  // Waits until `expr` has at least one sample with a number.
  bool WaitForData(const std::string& expr, std::chrono::milliseconds timeout) const {
    QueryAnswer last;
    const bool ok = WaitFor(timeout, [&] { return (last = Query(expr)).HasNumber(); });
    EXPECT_TRUE(ok) << "Prometheus never had data for " << expr << "; last answer: " << last.body
                    << last.error;
    return ok;
  }

  // The samples' values of `label`.
  static std::set<std::string> LabelValues(const QueryAnswer& answer, const std::string& label) {
    std::set<std::string> values;
    for (const json& s : answer.samples) {
      if (s.contains("metric")) values.insert(s["metric"].value(label, ""));
    }
    return values;
  }

  // vmlet's own /metrics shows `vm` with `phase`: the vmlet serving it has
  // reconciled the VM (its series appear with its first status).
  bool VmletReports(const api::VmKey& vm, const std::string& phase) const {
    std::istringstream lines(HttpGet(metrics_url_).body);
    for (std::string line; std::getline(lines, line);) {
      if (line.rfind("vmlet_vm_info{", 0) == 0 &&
          line.find("namespace=\"" + vm.ns + "\"") != std::string::npos &&
          line.find("name=\"" + vm.name + "\"") != std::string::npos &&
          line.find("phase=\"" + phase + "\"") != std::string::npos) {
        return true;
      }
    }
    return false;
  }

  // $__range: everything Prometheus has stored, as the dashboard's time
  // range would cover it.
  std::string Range() const {
    const auto elapsed =
        std::chrono::duration_cast<seconds>(std::chrono::steady_clock::now() - prometheus_started_);
    return std::to_string(elapsed.count() + 10) + "s";
  }

  VmletProcess* prometheus_ = nullptr;
  std::chrono::steady_clock::time_point prometheus_started_;
  std::string url_;
  std::string metrics_url_;
};

// Given three QEMU VMs (two Running, one Paused) scraped by Prometheus, a
// restart of vmlet that finds one VM's recorded pid owned by a stranger (an
// identity mismatch: the VM boots afresh), and one VM whose VMM is SIGKILLed
// twice (two restarts, reason Crashed): Prometheus stores every documented
// family, every dashboard query answers with a number, every alert rule of
// the repository is loaded and evaluates without error, and exactly
// VmmIdentityMismatch fires.
TEST_F(PrometheusE2eTest, LiveVmsGiveEveryFamilyEveryDashboardQueryAndTheAlertRulesData) {
  const api::VmKey web{"demo", "web"}, db{"demo", "db"}, batch{"ops", "batch"};
  WriteManifest(web, Manifest(web));
  WriteManifest(db, Manifest(db));
  WriteManifest(batch, Manifest(batch, "  desiredState: Paused\n"));
  const int metrics_port = FreeLoopbackPort();
  ASSERT_GT(metrics_port, 0);
  const std::string instance = "127.0.0.1:" + std::to_string(metrics_port);
  metrics_url_ = "http://" + instance + "/metrics";
  ASSERT_NO_FATAL_FAILURE(StartPrometheus(metrics_port));
  // The same address for both vmlets, so that their series are one series in
  // Prometheus (as for a vmlet restarted on a host).
  const std::vector<std::string> metrics_flags = {"--metrics-addr", instance, "--node-name",
                                                  "e2e-node"};
  ASSERT_NO_FATAL_FAILURE(StartVmlet(metrics_flags));
  ASSERT_TRUE(WaitPhase(web, "Ready", kBootTimeout));
  ASSERT_TRUE(WaitPhase(db, "Ready", kBootTimeout));
  ASSERT_TRUE(WaitPhase(batch, "Paused", kBootTimeout));
  const std::string job_selector = std::string("job=\"") + kJob + "\"";
  // The identity-mismatch counter exists at 0 from the start; Prometheus must
  // have it at 0 before the mismatch so that increase() sees the step.
  ASSERT_TRUE(
      WaitForData("vmlet_vmm_identity_mismatch_total{" + job_selector + ", driver=\"qemu\"} == 0",
                  kScrapeTimeout));

  // vmlet restarts; meanwhile db's VMM dies and its pid is recorded as a
  // stranger's (the scenario of VmletE2eTest's identity-mismatch test).
  const pid_t web_vmm = VmmPid(Status(web));
  const pid_t db_vmm = VmmPid(Status(db));
  ASSERT_GT(web_vmm, 0);
  ASSERT_GT(db_vmm, 0);
  ASSERT_NO_FATAL_FAILURE(StopVmlet());
  ASSERT_EQ(::kill(db_vmm, SIGKILL), 0);
  ASSERT_TRUE(WaitFor(seconds(10), [&] { return !Alive(db_vmm); }));
  others_.push_back(std::make_unique<VmletProcess>());
  VmletProcess& stranger = *others_.back();
  ASSERT_EQ(stranger.Start("/bin/sleep", {"600"}, tmp_ + "/stranger.log"), "");
  const std::string record_path = VmDir(db) + "/record.json";
  json record = json::parse(ReadFile(record_path), nullptr, false);
  ASSERT_TRUE(record.is_object()) << ReadFile(record_path);
  record["vmm"]["pid"] = stranger.pid();
  WriteFileAtomically(record_path, record.dump(2));
  ASSERT_NO_FATAL_FAILURE(StartVmlet(metrics_flags));

  // The new vmlet has taken web over (same VMM) before web's VMM is killed.
  ASSERT_TRUE(WaitFor(seconds(30), [&] { return VmletReports(web, "Ready"); }))
      << HttpGet(metrics_url_).body;
  EXPECT_EQ(VmmPid(Status(web)), web_vmm) << "a restart of vmlet must not reboot a VM";
  ASSERT_EQ(::kill(web_vmm, SIGKILL), 0);
  pid_t web_second = 0;
  ASSERT_TRUE(WaitFor(kBootTimeout + seconds(20), [&] {
    const json s = Status(web);
    web_second = VmmPid(s);
    return Phase(s) == "Ready" && web_second != web_vmm && web_second != 0;
  })) << Status(web).dump();
  ASSERT_TRUE(WaitFor(kBootTimeout + seconds(20), [&] {
    const json s = Status(db);
    return Phase(s) == "Ready" && VmmPid(s) != stranger.pid() && VmmPid(s) != db_vmm &&
           VmmPid(s) != 0;
  })) << Status(db).dump();
  EXPECT_TRUE(Alive(stranger.pid())) << "the stranger was signalled";
  // The second crash waits out the crash-loop delay of 10 s x 2^2.
  ASSERT_EQ(::kill(web_second, SIGKILL), 0);
  ASSERT_TRUE(WaitFor(kBootTimeout + seconds(60), [&] {
    const json s = Status(web);
    return Phase(s) == "Ready" && VmmPid(s) != web_second && VmmPid(s) != 0;
  })) << Status(web).dump();
  EXPECT_EQ(Status(web).value("restartCount", -1), 2);
  ASSERT_TRUE(WaitPhase(batch, "Paused", seconds(30)));

  // Prometheus has caught up: web's second restart is stored, and every
  // rate() window of the last kRateInterval holds successful scrapes only,
  // at least two.
  ASSERT_TRUE(WaitForData("vmlet_vm_restarts_total{" + job_selector +
                              ", namespace=\"demo\", name=\"web\", reason=\"Crashed\"} == 2",
                          kScrapeTimeout));
  ASSERT_TRUE(WaitForData(std::string("count_over_time(up{") + job_selector + "}[" + kRateInterval +
                              "]) >= 2 and min_over_time(up{" + job_selector + "}[" +
                              kRateInterval + "]) == 1",
                          kScrapeTimeout));
  // What the VMs are now, as Prometheus has it.
  QueryAnswer phases;
  EXPECT_TRUE(WaitFor(kScrapeTimeout, [&] {
    phases = Query("sum by (phase) (vmlet_vm_info{" + job_selector + "})");
    std::map<std::string, std::string> by_phase;
    for (const json& s : phases.samples)
      by_phase[s["metric"].value("phase", "")] = s["value"][1].get<std::string>();
    return by_phase == std::map<std::string, std::string>{{"Ready", "2"}, {"Paused", "1"}};
  })) << phases.body;

  // (a) Every family of docs/metrics.md is stored; a histogram as its
  // _bucket, _sum and _count series.
  const std::map<std::string, std::string> families = DocumentedFamilies();
  ASSERT_GE(families.size(), 18u) << "cannot read the families of docs/metrics.md";
  std::set<std::string> wanted;
  for (const auto& [name, type] : families) {
    if (type == "histogram") {
      wanted.insert({name + "_bucket", name + "_sum", name + "_count"});
    } else {
      wanted.insert(name);
    }
  }
  std::set<std::string> missing;
  QueryAnswer names;
  EXPECT_TRUE(WaitFor(kScrapeTimeout,
                      [&] {
                        names = Query("count by (__name__) ({__name__=~\"vmlet_.*\", " +
                                      job_selector + "})");
                        const std::set<std::string> stored = LabelValues(names, "__name__");
                        missing.clear();
                        for (const std::string& name : wanted) {
                          if (!stored.count(name)) missing.insert(name);
                        }
                        return missing.empty();
                      }))
      << "families of docs/metrics.md that Prometheus never stored: " << json(missing).dump()
      << "\nstored: " << names.body;

  // (b) The dashboard. Its template variables first: each lists values
  // (label_values() as Grafana asks it: the label values API), including
  // this vmlet's.
  const json dashboard =
      json::parse(ReadFile(std::string(VMLET_SOURCE_DIR) + "/deploy/grafana/vmlet-dashboard.json"),
                  nullptr, false);
  ASSERT_TRUE(dashboard.is_object()) << "deploy/grafana/vmlet-dashboard.json does not parse";
  const std::map<std::string, std::set<std::string>> expected_values = {
      {"job", {kJob}},
      {"instance", {instance}},
      {"node", {"e2e-node"}},
      {"namespace", {"demo", "ops"}}};
  std::map<std::string, std::string> all_values;       // every variable at "All"
  std::map<std::string, std::string> selected_values;  // every value ticked
  std::set<std::string> unknown;
  const std::regex label_values(R"(^label_values\((.*),\s*(\w+)\)$)");
  for (const json& variable : dashboard["templating"]["list"]) {
    const std::string name = variable.value("name", "");
    if (variable.value("type", "") != "query") {
      all_values[name] = "";  // $datasource: not part of any expr
      selected_values[name] = "";
      continue;
    }
    const std::string definition = variable.value("definition", "");
    std::smatch m;
    ASSERT_TRUE(std::regex_match(definition, m, label_values))
        << "variable " << name << ": " << definition << " is not label_values(selector, label)";
    const std::string selector = Substitute(m[1].str(), all_values, Range(), unknown);
    std::string error;
    const json listed =
        ApiGet("/api/v1/label/" + m[2].str() + "/values?match[]=" + UrlEncode(selector), error);
    ASSERT_TRUE(listed.is_array()) << "variable " << name << ": " << error;
    const std::vector<std::string> values = listed.get<std::vector<std::string>>();
    EXPECT_EQ(std::set<std::string>(values.begin(), values.end()), expected_values.at(name))
        << "variable " << name << " (" << definition << ")";
    ASSERT_FALSE(values.empty()) << "variable " << name << " lists nothing";
    all_values[name] = variable.value("allValue", ".*");
    selected_values[name] = RegexOfValues(values);
  }

  std::vector<DashboardQuery> queries;
  CollectQueries(dashboard["panels"], queries);
  ASSERT_GE(queries.size(), 30u);
  struct Check {
    const DashboardQuery* query;
    std::string variables;  // which substitution
    std::string expr;       // as sent
    QueryAnswer last;
    bool ok = false;
  };
  std::vector<Check> checks;
  for (const DashboardQuery& q : queries) {
    ASSERT_FALSE(q.expr.empty()) << q.panel << " " << q.ref_id << ": no expr";
    checks.push_back({&q, "All", Substitute(q.expr, all_values, Range(), unknown), {}, false});
    checks.push_back(
        {&q, "every value", Substitute(q.expr, selected_values, Range(), unknown), {}, false});
  }
  EXPECT_TRUE(unknown.empty()) << "dashboard variables that are not defined: "
                               << json(unknown).dump();
  // Each is asked again until it answers with a number; alerts need a rule
  // evaluation or two after the data.
  WaitFor(kScrapeTimeout, [&] {
    bool all = true;
    for (Check& c : checks) {
      if (c.ok) continue;
      c.last = Query(c.expr);
      c.ok = c.last.HasNumber();
      all &= c.ok;
    }
    return all;
  });
  for (const Check& c : checks) {
    EXPECT_TRUE(c.ok) << "dashboard panel \"" << c.query->panel << "\" target " << c.query->ref_id
                      << " (variables: " << c.variables << ") has no data.\n  expr: " << c.expr
                      << "\n  answer: " << c.last.body << c.last.error;
  }

  // (c) The alert rules: every alert of the file is loaded, from that file,
  // and has been evaluated without error ("unknown" until its first
  // evaluation).
  const std::set<std::string> alerts_in_file = AlertNamesInRuleFile(RuleFile());
  ASSERT_GE(alerts_in_file.size(), 8u);
  std::set<std::string> loaded;
  std::vector<std::string> unhealthy;
  std::string rules_body;
  EXPECT_TRUE(WaitFor(
      kScrapeTimeout,
      [&] {
        std::string error;
        const json data = ApiGet("/api/v1/rules", error, &rules_body);
        if (!data.is_object()) return false;
        loaded.clear();
        unhealthy.clear();
        for (const json& group : data["groups"]) {
          for (const json& rule : group["rules"]) {
            const std::string name = rule.value("name", "");
            loaded.insert(name);
            if (group.value("file", "") != RuleFile() || rule.value("type", "") != "alerting" ||
                rule.value("health", "") != "ok" || !rule.value("lastError", "").empty()) {
              unhealthy.push_back(group.value("name", "") + "/" + name + ": " + rule.dump());
            }
          }
        }
        return loaded == alerts_in_file && unhealthy.empty();
      }))
      << "loaded " << json(loaded).dump() << ", in " << RuleFile() << " "
      << json(alerts_in_file).dump() << "\nunhealthy: " << json(unhealthy).dump() << "\n"
      << rules_body;

  // The identity mismatch of this run, and nothing else, fires (the other
  // alerts need minutes of a problem or more restarts than two).
  QueryAnswer firing;
  EXPECT_TRUE(WaitFor(kScrapeTimeout,
                      [&] {
                        firing = Query("ALERTS{component=\"vmlet\", alertstate=\"firing\"}");
                        return firing.samples.size() == 1 &&
                               firing.samples[0]["metric"].value("alertname", "") ==
                                   "VmmIdentityMismatch" &&
                               firing.samples[0]["metric"].value("driver", "") == "qemu" &&
                               firing.samples[0]["metric"].value("instance", "") == instance;
                      }))
      << firing.body << firing.error;
}

}  // namespace
}  // namespace vmlet::testing
