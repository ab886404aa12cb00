// ChApiClient over a scripted transport: which requests it sends for each
// call, and how CH's answers (and the transport's failures) become Status
// values. The curl transport itself is exercised against the fake CH
// process by tests/integration/cloud_hypervisor_driver_test.cc.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <deque>
#include <nlohmann/json.hpp>

#include "drivers/cloud_hypervisor/ch_api_client.h"

namespace vmlet::drivers {
namespace {

using nlohmann::json;
using ::testing::ElementsAre;
using Code = api::Status::Code;

const Deadline kDeadline = Deadline(std::chrono::hours(1));

// Answers each request with the next scripted outcome and records what was
// sent. With nothing scripted it answers 204.
class ScriptedTransport final : public ChApiTransport {
 public:
  struct Sent {
    std::string method;
    std::string endpoint;
    std::optional<std::string> body;
    Deadline deadline;
  };

  void Answer(int status, std::string body = "") {
    outcomes_.push_back(ChHttpResponse{status, std::move(body)});
  }
  void Fail(api::Status status) { outcomes_.push_back(std::move(status)); }

  api::StatusOr<ChHttpResponse> Request(std::string_view method, std::string_view endpoint,
                                        const std::optional<std::string>& body,
                                        Deadline deadline) override {
    sent.push_back({std::string(method), std::string(endpoint), body, deadline});
    if (outcomes_.empty()) return ChHttpResponse{204, ""};
    api::StatusOr<ChHttpResponse> next = std::move(outcomes_.front());
    outcomes_.pop_front();
    return next;
  }

  std::vector<Sent> sent;

 private:
  std::deque<api::StatusOr<ChHttpResponse>> outcomes_;
};

// --- ChErrorMessage --------------------------------------------------------

TEST(ChErrorMessageTest, JsonArrayOfStringsIsJoinedWithoutTheErrorFromApiPrefix) {
  EXPECT_EQ(
      ChErrorMessage(R"(["Error from API","The VM could not be paused","VM is not running"])"),
      "The VM could not be paused: VM is not running");
}

TEST(ChErrorMessageTest, ALoneErrorFromApiIsKept) {
  EXPECT_EQ(ChErrorMessage(R"(["Error from API"])"), "Error from API");
}

TEST(ChErrorMessageTest, ChainsWithoutThePrefixAreJoinedWhole) {
  EXPECT_EQ(ChErrorMessage(R"(["Bad Request"])"), "Bad Request");
  EXPECT_EQ(ChErrorMessage(R"(["Failed to deserialize JSON", "$.payload: required"])"),
            "Failed to deserialize JSON: $.payload: required");
}

TEST(ChErrorMessageTest, PlainTextFromOlderServersIsKeptTrimmed) {
  EXPECT_EQ(ChErrorMessage("  VmBoot(VmNotCreated)\n"), "VmBoot(VmNotCreated)");
}

TEST(ChErrorMessageTest, JsonThatIsNotAnArrayOfStringsIsKeptAsText) {
  EXPECT_EQ(ChErrorMessage(R"({ "error": "Too many open connections" })"),
            R"({ "error": "Too many open connections" })");
  EXPECT_EQ(ChErrorMessage(R"(["a", 1])"), R"(["a", 1])");
  EXPECT_EQ(ChErrorMessage("[]"), "[]");
}

TEST(ChErrorMessageTest, EmptyBodyIsEmpty) { EXPECT_EQ(ChErrorMessage(" \r\n"), ""); }

// --- ChResponseStatus ------------------------------------------------------

TEST(ChResponseStatusTest, EverySuccessCodeIsOk) {
  EXPECT_TRUE(ChResponseStatus("vm.boot", {204, ""}).ok());
  EXPECT_TRUE(ChResponseStatus("vm.info", {200, "{}"}).ok());
  EXPECT_TRUE(ChResponseStatus("vmm.shutdown", {200, ""}).ok());
}

TEST(ChResponseStatusTest, WrongStateIs500AndAFailedPreconditionWithChsMessage) {
  const api::Status s = ChResponseStatus(
      "vm.pause", {500, R"(["Error from API","The VM could not be paused","VM is not running"])"});
  EXPECT_EQ(s.code(), Code::kFailedPrecondition);
  EXPECT_EQ(s.message(), "vm.pause: The VM could not be paused: VM is not running (HTTP 500)");
  EXPECT_FALSE(s.IsRetryable());
}

TEST(ChResponseStatusTest, RefusedRequestsAreInvalidArgument) {
  EXPECT_EQ(ChResponseStatus("vm.create", {400, R"(["Bad Request"])"}),
            api::Status::InvalidArgument("vm.create: Bad Request (HTTP 400)"));
  EXPECT_EQ(ChResponseStatus("vm.boot", {405, ""}).code(), Code::kInvalidArgument);
  EXPECT_EQ(ChResponseStatus("vm.create", {413, ""}).code(), Code::kInvalidArgument);
}

TEST(ChResponseStatusTest, NotCreatedAndConflictsAreFailedPrecondition) {
  EXPECT_EQ(ChResponseStatus("vm.info", {404, R"(["Error from API","VM is not created"])"}),
            api::Status::FailedPrecondition("vm.info: VM is not created (HTTP 404)"));
  EXPECT_EQ(ChResponseStatus("vm.add-disk", {409, ""}).code(), Code::kFailedPrecondition);
}

TEST(ChResponseStatusTest, AFullServerAndTooManyRequestsAreRetryable) {
  const api::Status full =
      ChResponseStatus("vm.info", {503, R"({ "error": "Too many open connections" })"});
  EXPECT_EQ(full.code(), Code::kUnavailable);
  EXPECT_EQ(full.message(), R"(vm.info: { "error": "Too many open connections" } (HTTP 503))");
  EXPECT_TRUE(ChResponseStatus("vm.resize", {429, ""}).IsRetryable());
}

TEST(ChResponseStatusTest, UnexpectedCodesAreInternalAndSayThereWasNoMessage) {
  EXPECT_EQ(ChResponseStatus("vm.info", {302, ""}),
            api::Status::Internal("vm.info: no error message (HTTP 302)"));
  EXPECT_EQ(ChResponseStatus("vm.info", {502, "bad gateway"}).code(), Code::kInternal);
}

// --- ChApiClient -----------------------------------------------------------

TEST(ChApiClientTest, EachCallSendsItsMethodAndEndpointWithTheDeadline) {
  ScriptedTransport transport;
  ChApiClient client(transport);
  ASSERT_TRUE(client.Boot(kDeadline).ok());
  ASSERT_TRUE(client.Pause(kDeadline).ok());
  ASSERT_TRUE(client.Resume(kDeadline).ok());
  ASSERT_TRUE(client.PowerButton(kDeadline).ok());
  ASSERT_TRUE(client.ShutdownVm(kDeadline).ok());
  ASSERT_TRUE(client.ShutdownVmm(kDeadline).ok());
  std::vector<std::string> sent;
  for (const ScriptedTransport::Sent& s : transport.sent) {
    sent.push_back(s.method + " " + s.endpoint);
    EXPECT_EQ(s.body, std::nullopt) << s.endpoint << " takes no body";
    EXPECT_EQ(s.deadline, kDeadline);
  }
  EXPECT_THAT(sent, ElementsAre("PUT vm.boot", "PUT vm.pause", "PUT vm.resume",
                                "PUT vm.power-button", "PUT vm.shutdown", "PUT vmm.shutdown"));
}

TEST(ChApiClientTest, CreateSendsTheConfigAsItsJsonBody) {
  ScriptedTransport transport;
  ChApiClient client(transport);
  const json config = {{"payload", {{"kernel", "/k"}}}};
  ASSERT_TRUE(client.Create(config, kDeadline).ok());
  ASSERT_EQ(transport.sent.size(), 1u);
  EXPECT_EQ(transport.sent[0].method, "PUT");
  EXPECT_EQ(transport.sent[0].endpoint, "vm.create");
  ASSERT_TRUE(transport.sent[0].body.has_value());
  EXPECT_EQ(json::parse(*transport.sent[0].body), config);
}

TEST(ChApiClientTest, VmmShutdownsEmpty200IsSuccess) {
  ScriptedTransport transport;
  transport.Answer(200, "");
  ChApiClient client(transport);
  EXPECT_TRUE(client.ShutdownVmm(kDeadline).ok());
}

TEST(ChApiClientTest, PingReturnsTheVersion) {
  ScriptedTransport transport;
  transport.Answer(200, R"({"build_version":"v53.0.0","version":"53.0.0","pid":7})");
  ChApiClient client(transport);
  api::StatusOr<std::string> version = client.Ping(kDeadline);
  ASSERT_TRUE(version.ok()) << version.status();
  EXPECT_EQ(*version, "53.0.0");
  EXPECT_EQ(transport.sent[0].method, "GET");
  EXPECT_EQ(transport.sent[0].endpoint, "vmm.ping");
}

TEST(ChApiClientTest, PingWithoutAVersionIsInternal) {
  ScriptedTransport transport;
  transport.Answer(200, R"({"pid":7})");
  transport.Answer(200, "not json");
  ChApiClient client(transport);
  EXPECT_EQ(client.Ping(kDeadline).status().code(), Code::kInternal);
  EXPECT_EQ(client.Ping(kDeadline).status().code(), Code::kInternal);
}

TEST(ChApiClientTest, InfoReturnsTheStateAndTheConfig) {
  ScriptedTransport transport;
  transport.Answer(200, R"({"config":{"payload":{"kernel":"/k"}},"state":"Paused"})");
  ChApiClient client(transport);
  api::StatusOr<ChVmInfo> info = client.Info(kDeadline);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->state, "Paused");
  EXPECT_EQ(info->config, json::parse(R"({"payload":{"kernel":"/k"}})"));
  EXPECT_EQ(transport.sent[0].method, "GET");
  EXPECT_EQ(transport.sent[0].endpoint, "vm.info");
}

TEST(ChApiClientTest, InfoWithoutAStateIsInternal) {
  ScriptedTransport transport;
  transport.Answer(200, R"({"config":{}})");
  ChApiClient client(transport);
  EXPECT_EQ(client.Info(kDeadline).status(),
            api::Status::Internal("vm.info: the answer has no \"state\""));
}

TEST(ChApiClientTest, ChsErrorAnswersMapByStatusClass) {
  ScriptedTransport transport;
  transport.Answer(500, R"(["Error from API","The VM could not be paused","VM is not running"])");
  transport.Answer(404, R"(["Error from API","The VM info is not available","VM is not created"])");
  transport.Answer(400, R"(["Failed to deserialize JSON","$.payload: required"])");
  ChApiClient client(transport);
  EXPECT_EQ(client.Pause(kDeadline),
            api::Status::FailedPrecondition(
                "vm.pause: The VM could not be paused: VM is not running (HTTP 500)"));
  EXPECT_EQ(client.Info(kDeadline).status(),
            api::Status::FailedPrecondition(
                "vm.info: The VM info is not available: VM is not created (HTTP 404)"));
  EXPECT_EQ(client.Create(json::object(), kDeadline),
            api::Status::InvalidArgument(
                "vm.create: Failed to deserialize JSON: $.payload: required (HTTP 400)"));
}

TEST(ChApiClientTest, TransportFailuresPassThroughUnchanged) {
  ScriptedTransport transport;
  transport.Fail(api::Status::Unavailable("GET vm.info: cannot connect"));
  transport.Fail(api::Status::DeadlineExceeded("PUT vm.boot: no answer"));
  transport.Fail(api::Status::Internal("PUT vm.pause: curl broke"));
  ChApiClient client(transport);
  EXPECT_EQ(client.Info(kDeadline).status(),
            api::Status::Unavailable("GET vm.info: cannot connect"));
  EXPECT_EQ(client.Boot(kDeadline), api::Status::DeadlineExceeded("PUT vm.boot: no answer"));
  EXPECT_EQ(client.Pause(kDeadline), api::Status::Internal("PUT vm.pause: curl broke"));
}

}  // namespace
}  // namespace vmlet::drivers
