#include "controller/cli_render.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>

namespace vmlet::controller {
namespace {

using nlohmann::json;
using std::chrono::minutes;
using std::chrono::seconds;
using ::testing::HasSubstr;

const json kTable = json::parse(R"({
  "kind": "Table", "apiVersion": "meta.k8s.io/v1",
  "columnDefinitions": [{"name": "Name", "priority": 0}, {"name": "Phase", "priority": 0},
                        {"name": "Node", "priority": 1}],
  "rows": [{"cells": ["web-1", "Ready", "node-a"],
            "object": {"metadata": {"namespace": "prod"}}},
           {"cells": ["a", "Starting", null], "object": {"metadata": {"namespace": "dev"}}}]})");

TEST(RenderTableTest, AlignsPriorityZeroColumnsAsKubectlsTabwriter) {
  EXPECT_EQ(RenderTable(kTable, false, false),
            "NAME    PHASE\n"
            "web-1   Ready\n"
            "a       Starting\n");
}

TEST(RenderTableTest, WideAddsTheOtherColumnsAndANullCellIsEmpty) {
  EXPECT_EQ(RenderTable(kTable, true, false),
            "NAME    PHASE      NODE\n"
            "web-1   Ready      node-a\n"
            "a       Starting   \n");
}

TEST(RenderTableTest, AllNamespacesPutsTheRowsNamespaceFirst) {
  EXPECT_EQ(RenderTable(kTable, false, true),
            "NAMESPACE   NAME    PHASE\n"
            "prod        web-1   Ready\n"
            "dev         a       Starting\n");
}

TEST(RenderDescribeTest, PrintsMetadataSpecStatusConditionsAndEvents) {
  const json vm = json::parse(R"({
    "metadata": {"name": "web-1", "namespace": "prod", "labels": {"app": "web", "tier": "front"},
                 "uid": "u-1", "generation": 2, "resourceVersion": "9",
                 "creationTimestamp": "2026-11-28T00:00:00Z"},
    "spec": {"cpus": 2, "desiredState": "Running", "readiness": {"timeoutSeconds": 300},
             "networks": [{"tap": "tap0"}]},
    "status": {"phase": "Ready", "ip": "10.0.0.2",
               "conditions": [{"type": "Ready", "status": "True", "reason": "GuestReady",
                               "message": "ready at 10.0.0.2",
                               "lastTransitionTime": "2026-11-28T00:01:00.500Z"}]}})");
  const json events = json::parse(R"({"items": [
    {"type": "Normal", "reason": "Ready", "message": "the guest is ready ", "count": 1,
     "firstTimestamp": "2026-11-28T00:01:00Z", "lastTimestamp": "2026-11-28T00:01:00Z",
     "source": {"component": "vmlet"}},
    {"type": "Normal", "reason": "Booted", "message": "VMM started", "count": 3,
     "firstTimestamp": "2026-11-28T00:00:00Z", "lastTimestamp": "2026-11-28T00:02:00Z",
     "source": {"component": "vmlet"}}]})");
  const WallTime now = WallTime(seconds(1795824000)) + minutes(5);
  EXPECT_EQ(RenderDescribe(vm, events, now),
            "Name:              web-1\n"
            "Namespace:         prod\n"
            "Labels:            app=web\n"
            "                   tier=front\n"
            "UID:               u-1\n"
            "Created:           2026-11-28T00:00:00Z (5m ago)\n"
            "Generation:        2\n"
            "Resource Version:  9\n"
            "Spec:\n"
            "  Cpus:           2\n"
            "  Desired State:  Running\n"
            "  Networks:\n"
            "    Tap:  tap0\n"
            "  Readiness:\n"
            "    Timeout Seconds:  300\n"
            "Status:\n"
            "  Ip:     10.0.0.2\n"
            "  Phase:  Ready\n"
            "Conditions:\n"
            "  Type   Status  Reason      Last Transition  Message\n"
            "  ----   ------  ------      ---------------  -------\n"
            "  Ready  True    GuestReady  3m59s ago        ready at 10.0.0.2\n"
            "Events:\n"
            "  Type    Reason  Age              From   Message\n"
            "  ----    ------  ----             ----   -------\n"
            "  Normal  Ready   4m               vmlet  the guest is ready\n"
            "  Normal  Booted  3m (x3 over 5m)  vmlet  VMM started\n");
}

TEST(RenderDescribeTest, NoConditionsOrEventsReadNone) {
  const json vm = json::parse(R"({"metadata": {"name": "a", "namespace": "b",
                                 "creationTimestamp": "2026-11-28T00:00:00Z"}})");
  const std::string text = RenderDescribe(vm, json::object(), WallTime(seconds(1795824000)));
  EXPECT_THAT(text, HasSubstr("Labels:            <none>\n"));
  EXPECT_THAT(text, HasSubstr("\nConditions:  <none>\nEvents:  <none>\n"));
}

}  // namespace
}  // namespace vmlet::controller
