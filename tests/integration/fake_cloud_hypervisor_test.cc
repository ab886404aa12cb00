// fake-cloud-hypervisor as a separate process, spoken to as vmlet's Cloud
// Hypervisor driver will speak to it: libcurl over the Unix API socket, plus
// raw socket reads where the bytes on the wire are what is being checked.
// These tests pin the behaviour of real Cloud Hypervisor that the fake
// reproduces (framing, status codes, state machine, events, process exit),
// so that the driver's tests against the fake mean something.
//
// Every fake is started by VmletProcess and ended by its recorded pid. Waits
// poll a condition until a deadline; none sleeps a fixed time to let
// something happen. Each test has its own temporary directory, removed in
// TearDown.

#include <curl/curl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/fakes/fake_cloud_hypervisor/openapi_validator.h"
#include "tests/support/files.h"
#include "tests/support/temp_dir.h"
#include "tests/support/vmlet_process.h"
#include "tests/support/wait_for.h"

namespace vmlet::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using std::chrono::milliseconds;
using SteadyClock = std::chrono::steady_clock;

constexpr milliseconds kDeadline{10000};

bool IsArrayOfStrings(const std::string& body) {
  const json parsed = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!parsed.is_array() || parsed.empty()) return false;
  for (const json& item : parsed) {
    if (!item.is_string()) return false;
  }
  return true;
}

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

struct Reply {
  CURLcode code = CURLE_OK;
  long status = 0;
  std::string headers;
  std::string body;
};

// A libcurl client on the API socket. One easy handle, so consecutive calls
// reuse one connection, as the driver's will.
class ChClient {
 public:
  explicit ChClient(std::string socket_path)
      : socket_path_(std::move(socket_path)), curl_(curl_easy_init()) {}
  ~ChClient() { curl_easy_cleanup(curl_); }
  ChClient(const ChClient&) = delete;
  ChClient& operator=(const ChClient&) = delete;

  Reply Call(const std::string& method, const std::string& endpoint,
             const std::optional<std::string>& body = std::nullopt,
             milliseconds timeout = milliseconds(5000)) {
    Reply reply;
    curl_easy_reset(curl_);  // keeps the connection cache
    const std::string url = "http://localhost/api/v1/" + endpoint;
    curl_easy_setopt(curl_, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl_, CURLOPT_UNIX_SOCKET_PATH, socket_path_.c_str());
    curl_easy_setopt(curl_, CURLOPT_CUSTOMREQUEST, method.c_str());
    curl_easy_setopt(curl_, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout.count()));
    curl_slist* headers = nullptr;
    if (body) {
      headers = curl_slist_append(headers, "Content-Type: application/json");
      headers = curl_slist_append(headers, "Expect:");
      curl_easy_setopt(curl_, CURLOPT_POSTFIELDS, body->data());
      curl_easy_setopt(curl_, CURLOPT_POSTFIELDSIZE, static_cast<long>(body->size()));
      curl_easy_setopt(curl_, CURLOPT_HTTPHEADER, headers);
    }
    curl_easy_setopt(curl_, CURLOPT_WRITEFUNCTION, &Append);
    curl_easy_setopt(curl_, CURLOPT_WRITEDATA, &reply.body);
    curl_easy_setopt(curl_, CURLOPT_HEADERFUNCTION, &Append);
    curl_easy_setopt(curl_, CURLOPT_HEADERDATA, &reply.headers);
    reply.code = curl_easy_perform(curl_);
    curl_easy_getinfo(curl_, CURLINFO_RESPONSE_CODE, &reply.status);
    long connects = 0;
    curl_easy_getinfo(curl_, CURLINFO_NUM_CONNECTS, &connects);
    connects_ += connects;
    curl_slist_free_all(headers);
    return reply;
  }

  Reply Put(const std::string& endpoint, const std::optional<std::string>& body = std::nullopt) {
    return Call("PUT", endpoint, body);
  }
  Reply Get(const std::string& endpoint) { return Call("GET", endpoint); }

  // New connections opened so far.
  long connects() const { return connects_; }

 private:
  static size_t Append(char* data, size_t size, size_t count, void* out) {
    static_cast<std::string*>(out)->append(data, size * count);
    return size * count;
  }

  std::string socket_path_;
  CURL* curl_;
  long connects_ = 0;
};

// A raw client connection, for checking bytes on the wire.
class RawConnection {
 public:
  RawConnection() = default;
  ~RawConnection() { Close(); }
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;

  bool Connect(const std::string& path) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
    return fd_ >= 0 && ::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
  }

  // Connect(path), then Send(bytes).
  bool ConnectAndSend(const std::string& path, const std::string& bytes) {
    return Connect(path) && Send(bytes);
  }

  bool Send(const std::string& bytes) {
    size_t sent = 0;
    while (sent < bytes.size()) {
      const ssize_t n = ::send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return false;
      sent += static_cast<size_t>(n);
    }
    return true;
  }

  // One whole response (head, and a body by Content-Length), exactly as
  // received; nullopt if it is not complete within `timeout`.
  std::optional<std::string> ReadResponse(milliseconds timeout = kDeadline) {
    const auto deadline = SteadyClock::now() + timeout;
    for (;;) {
      const size_t head_end = buffer_.find("\r\n\r\n");
      if (head_end != std::string::npos) {
        const std::string head = buffer_.substr(0, head_end + 4);
        size_t length = 0;
        if (const size_t at = head.find("Content-Length: "); at != std::string::npos) {
          length = std::stoul(head.substr(at + 16));
        }
        if (buffer_.size() >= head.size() + length) {
          std::string response = buffer_.substr(0, head.size() + length);
          buffer_.erase(0, response.size());
          return response;
        }
      }
      if (!Fill(deadline)) return std::nullopt;
    }
  }

  // Everything until the server closes the connection; nullopt if it does
  // not close it within `timeout`.
  std::optional<std::string> ReadUntilClosed(milliseconds timeout = kDeadline) {
    const auto deadline = SteadyClock::now() + timeout;
    while (!closed_) {
      if (!Fill(deadline) && !closed_) return std::nullopt;
    }
    std::string all = std::move(buffer_);
    buffer_.clear();
    return all;
  }

  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  // Reads what arrives before `deadline`; false on timeout or EOF.
  bool Fill(SteadyClock::time_point deadline) {
    const auto left =
        std::chrono::duration_cast<milliseconds>(deadline - SteadyClock::now()).count();
    if (left <= 0) return false;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left)) <= 0) return false;
    char chunk[4096];
    const ssize_t n = ::recv(fd_, chunk, sizeof(chunk), 0);
    if (n <= 0) {
      closed_ = true;
      return false;
    }
    buffer_.append(chunk, static_cast<size_t>(n));
    return true;
  }

  int fd_ = -1;
  std::string buffer_;
  bool closed_ = false;
};

std::string RawRequest(const std::string& method, const std::string& endpoint,
                       const std::string& body = "") {
  std::string request = method + " /api/v1/" + endpoint + " HTTP/1.1\r\nHost: localhost\r\n";
  if (!body.empty()) {
    request +=
        "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  }
  return request + "\r\n" + body;
}

std::string BodyOf(const std::string& raw_response) {
  return raw_response.substr(raw_response.find("\r\n\r\n") + 4);
}

class FakeCloudHypervisorTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { curl_global_init(CURL_GLOBAL_DEFAULT); }
  static void TearDownTestSuite() { curl_global_cleanup(); }

  void TearDown() override {
    process_.KillAndReap();
    if (HasFailure()) {
      std::cerr << "--- fake-cloud-hypervisor log ---\n" << TailOfFile(ProcessLog(), 40);
    }
  }

  std::string ProcessLog() const { return (dir_ / "fake.log").string(); }

  // Starts the fake on socket_ (as path=, or as a bare path) with events and
  // a request log, plus `extra` flags, and waits until vmm.ping answers.
  // Unless `extra` says otherwise, the guest is ready as soon as it boots.
  void Start(const std::vector<std::string>& extra = {}, bool bare_socket_path = false) {
    std::vector<std::string> args = {
        "--api-socket",       bare_socket_path ? socket_ : "path=" + socket_,
        "--event-monitor",    "path=" + events_.string(),
        "--fake-request-log", request_log_.string()};
    if (std::find(extra.begin(), extra.end(), "--fake-boot-delay-ms") == extra.end()) {
      args.insert(args.end(), {"--fake-boot-delay-ms", "0"});
    }
    args.insert(args.end(), extra.begin(), extra.end());
    ASSERT_EQ(process_.Start(FAKE_CH_BINARY, args, ProcessLog()), "");
    ASSERT_TRUE(WaitFor(kDeadline, [this] {
      ChClient client(socket_);
      return client.Call("GET", "vmm.ping", std::nullopt, milliseconds(500)).status == 200;
    })) << "the fake never answered vmm.ping";
  }

  // Ten connections, each answered once and held open in `held`: every
  // connection the fake serves at a time (micro_http's limit).
  void TakeEveryConnectionSlot(std::vector<std::unique_ptr<RawConnection>>& held) {
    for (int i = 0; i < 10; ++i) {
      held.push_back(std::make_unique<RawConnection>());
      ASSERT_TRUE(held.back()->ConnectAndSend(socket_, RawRequest("GET", "vmm.ping")));
      ASSERT_TRUE(held.back()->ReadResponse()) << "connection " << i;
    }
  }

  // A minimal VmConfig whose serial console goes to serial_.
  json MinimalConfig() const {
    return {{"payload", {{"kernel", "/boot/vmlinuz"}, {"cmdline", "console=ttyS0"}}},
            {"serial", {{"mode", "File"}, {"file", serial_.string()}}},
            {"console", {{"mode", "Off"}}}};
  }

  // The event monitor file as "source/event" names.
  std::vector<std::string> EventNames() const {
    std::vector<std::string> names;
    const std::string text = ReadFile(events_);
    for (size_t start = 0; start < text.size();) {
      size_t end = text.find("\n\n", start);
      if (end == std::string::npos) end = text.size();
      const json event = json::parse(text.substr(start, end - start), nullptr, false);
      if (event.is_object()) {
        names.push_back(event.value("source", "?") + "/" + event.value("event", "?"));
      }
      start = end + 2;
    }
    return names;
  }

  std::vector<json> RequestLog() const {
    std::vector<json> lines;
    std::istringstream in(ReadFile(request_log_));
    for (std::string line; std::getline(in, line);) lines.push_back(json::parse(line));
    return lines;
  }

  // Waits for the process to exit; its wait status, or -1 at the deadline.
  int WaitForExit(milliseconds timeout = kDeadline) {
    return process_.WaitForExit(timeout).value_or(-1);
  }

  std::string State(ChClient& client) {
    const Reply reply = client.Get("vm.info");
    if (reply.status != 200) return "HTTP " + std::to_string(reply.status);
    return json::parse(reply.body).value("state", "?");
  }

  bool SerialHas(const std::string& text) const { return Contains(ReadFile(serial_), text); }

  const TempDir temp_dir_{"fakech-test"};
  const fs::path dir_ = temp_dir_.path();
  const std::string socket_ = (dir_ / "api.sock").string();
  const fs::path events_ = dir_ / "events.json";
  const fs::path serial_ = dir_ / "serial.log";
  const fs::path request_log_ = dir_ / "requests.jsonl";
  VmletProcess process_;
};

// --- Framing -------------------------------------------------------------

TEST_F(FakeCloudHypervisorTest, StatusLineHasNoReasonPhraseAndJsonRepliesCarryTheirLength) {
  Start();
  RawConnection connection;
  ASSERT_TRUE(connection.ConnectAndSend(socket_, RawRequest("GET", "vmm.ping")));
  const std::optional<std::string> response = connection.ReadResponse();
  ASSERT_TRUE(response);
  const std::string body = BodyOf(*response);
  EXPECT_EQ(response->substr(0, response->find("\r\n\r\n") + 4),
            "HTTP/1.1 200 \r\nServer: Cloud Hypervisor API\r\nConnection: keep-alive\r\n"
            "Content-Type: application/json\r\nContent-Length: " +
                std::to_string(body.size()) + "\r\n\r\n");
  const json ping = json::parse(body);
  EXPECT_EQ(ping["pid"], process_.pid());
  EXPECT_TRUE(ping["version"].is_string());
}

TEST_F(FakeCloudHypervisorTest, NoContentReplyHasNoBodyNoLengthAndTheConnectionStaysUsable) {
  Start();
  RawConnection connection;
  ASSERT_TRUE(
      connection.ConnectAndSend(socket_, RawRequest("PUT", "vm.create", MinimalConfig().dump())));
  EXPECT_EQ(connection.ReadResponse(),
            "HTTP/1.1 204 \r\nServer: Cloud Hypervisor API\r\nConnection: keep-alive\r\n\r\n");
  ASSERT_TRUE(connection.Send(RawRequest("GET", "vm.info")));
  const std::optional<std::string> info = connection.ReadResponse();
  ASSERT_TRUE(info);
  EXPECT_EQ(info->substr(0, 15), "HTTP/1.1 200 \r\n");
}

TEST_F(FakeCloudHypervisorTest, PipelinedRequestsOnOneConnectionAreAnsweredInOrder) {
  Start();
  RawConnection connection;
  ASSERT_TRUE(connection.ConnectAndSend(
      socket_, RawRequest("GET", "vm.info") + RawRequest("GET", "vmm.ping") +
                   RawRequest("PUT", "vm.create", MinimalConfig().dump()) +
                   RawRequest("GET", "vm.info")));
  EXPECT_EQ(connection.ReadResponse().value_or("").substr(0, 15), "HTTP/1.1 404 \r\n");
  EXPECT_EQ(connection.ReadResponse().value_or("").substr(0, 15), "HTTP/1.1 200 \r\n");
  EXPECT_EQ(connection.ReadResponse().value_or("").substr(0, 15), "HTTP/1.1 204 \r\n");
  const std::string info = connection.ReadResponse().value_or("");
  EXPECT_EQ(json::parse(BodyOf(info))["state"], "Created");
}

TEST_F(FakeCloudHypervisorTest, CurlKeepsOneConnectionAliveForManyCalls) {
  Start();
  ChClient client(socket_);
  for (int i = 0; i < 20; ++i) ASSERT_EQ(client.Get("vmm.ping").status, 200);
  EXPECT_EQ(client.connects(), 1);
}

TEST_F(FakeCloudHypervisorTest, EleventhConnectionGets503AndIsClosedAsMicroHttpDoes) {
  Start();
  std::vector<std::unique_ptr<RawConnection>> held;
  ASSERT_NO_FATAL_FAILURE(TakeEveryConnectionSlot(held));
  RawConnection eleventh;
  ASSERT_TRUE(eleventh.Connect(socket_));
  EXPECT_EQ(eleventh.ReadUntilClosed(),
            "HTTP/1.1 503\r\nServer: Firecracker API\r\nConnection: close\r\n"
            "Content-Length: 40\r\n\r\n{ \"error\": \"Too many open connections\" }");

  held[0]->Close();
  EXPECT_TRUE(WaitFor(kDeadline, [this] {
    ChClient client(socket_);
    return client.Get("vmm.ping").status == 200;
  })) << "a freed slot is never served";
}

TEST_F(FakeCloudHypervisorTest, EleventhConnectionWaitsUnansweredInBacklogMode) {
  Start({"--fake-overflow", "backlog"});
  std::vector<std::unique_ptr<RawConnection>> held;
  ASSERT_NO_FATAL_FAILURE(TakeEveryConnectionSlot(held));
  RawConnection eleventh;
  // The kernel's backlog takes the connection.
  ASSERT_TRUE(eleventh.ConnectAndSend(socket_, RawRequest("GET", "vmm.ping")));
  EXPECT_FALSE(eleventh.ReadResponse(milliseconds(300)));

  held[0]->Close();
  const std::optional<std::string> late = eleventh.ReadResponse();
  ASSERT_TRUE(late);
  EXPECT_EQ(late->substr(0, 15), "HTTP/1.1 200 \r\n");
}

TEST_F(FakeCloudHypervisorTest, MalformedRequestGetsMicroHttps400AndTheConnectionIsClosed) {
  Start();
  RawConnection garbage;
  ASSERT_TRUE(garbage.ConnectAndSend(socket_, "GARBAGE\r\n\r\n"));
  const std::string reply = garbage.ReadUntilClosed().value_or("(not closed)");
  EXPECT_EQ(reply.substr(0, 15), "HTTP/1.1 400 \r\n");
  EXPECT_TRUE(Contains(reply, "Server: Firecracker API\r\n")) << reply;
  EXPECT_TRUE(Contains(reply, "All previous unanswered requests will be dropped.")) << reply;

  RawConnection chunked;
  ASSERT_TRUE(chunked.ConnectAndSend(
      socket_,
      "PUT /api/v1/vm.create HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"));
  EXPECT_EQ(chunked.ReadUntilClosed().value_or("(not closed)").substr(0, 15), "HTTP/1.1 400 \r\n");

  ChClient client(socket_);
  EXPECT_EQ(client.Get("vmm.ping").status, 200);
  const std::vector<json> log = RequestLog();
  ASSERT_GE(log.size(), 2u);
  EXPECT_EQ(log[1], json({{"malformed", "Invalid request."}, {"valid", false}, {"status", 400}}));
}

// --- Routing and method discipline ----------------------------------------

TEST_F(FakeCloudHypervisorTest, WrongMethodIsBadRequestNot405) {
  Start();
  ChClient client(socket_);
  const Reply get_boot = client.Get("vm.boot");
  EXPECT_EQ(get_boot.status, 400);
  EXPECT_EQ(get_boot.body, R"(["Bad Request"])");
  EXPECT_EQ(client.Put("vm.info").status, 400);
  EXPECT_EQ(client.Put("vmm.ping").status, 400);
  EXPECT_EQ(client.Get("vm.create").status, 400);
  EXPECT_EQ(client.Get("vmm.shutdown").status, 400);
  // Methods other than GET and PUT on the generic action handlers: 400, no body.
  const Reply post_boot = client.Call("POST", "vm.boot");
  EXPECT_EQ(post_boot.status, 400);
  EXPECT_EQ(post_boot.body, "");
  EXPECT_TRUE(Contains(post_boot.headers, "Content-Length: 0\r\n")) << post_boot.headers;
  EXPECT_EQ(State(client), "HTTP 404");  // none of it did anything
}

TEST_F(FakeCloudHypervisorTest, UnknownPathIsNotFound) {
  Start();
  ChClient client(socket_);
  const Reply reply = client.Get("vm.nonsense");
  EXPECT_EQ(reply.status, 404);
  EXPECT_EQ(reply.body, R"(["Not Found"])");
  EXPECT_EQ(client.Call("GET", "../vmm.ping").status, 404);
}

TEST_F(FakeCloudHypervisorTest, CallsBeforeCreateAnswerAsChV53Does) {
  Start();
  ChClient client(socket_);
  const Reply info = client.Get("vm.info");
  EXPECT_EQ(info.status, 404);
  EXPECT_EQ(json::parse(info.body),
            json({"Error from API", "The VM info is not available", "VM is not created"}));
  EXPECT_EQ(client.Put("vm.boot").status, 404);  // VmMissingConfig
  const Reply pause = client.Put("vm.pause");    // VmNotRunning: 500, not 404
  EXPECT_EQ(pause.status, 500);
  EXPECT_TRUE(IsArrayOfStrings(pause.body)) << pause.body;
  EXPECT_EQ(client.Put("vm.power-button").status, 500);
  EXPECT_EQ(client.Put("vm.delete").status, 204);  // idempotent
}

TEST_F(FakeCloudHypervisorTest, BodyOnABodilessCallIsBadRequest) {
  Start();
  ChClient client(socket_);
  ASSERT_EQ(client.Put("vm.create", MinimalConfig().dump()).status, 204);
  const Reply reply = client.Put("vm.boot", "{}");
  EXPECT_EQ(reply.status, 400);
  EXPECT_EQ(reply.body, R"(["Bad Request"])");
  EXPECT_EQ(State(client), "Created");
}

TEST_F(FakeCloudHypervisorTest, CreateWithoutABodyIs400WithAnEmptyBody) {
  Start();
  ChClient client(socket_);
  const Reply reply = client.Put("vm.create");
  EXPECT_EQ(reply.status, 400);
  EXPECT_EQ(reply.body, "");
  EXPECT_TRUE(Contains(reply.headers, "Content-Length: 0\r\n")) << reply.headers;
}

// --- Lifecycle -----------------------------------------------------------

TEST_F(FakeCloudHypervisorTest, CreateBootPauseResumePowerButtonEndsTheProcessWithStatusZero) {
  Start();
  ChClient client(socket_);
  ASSERT_EQ(client.Put("vm.create", MinimalConfig().dump()).status, 204);
  EXPECT_EQ(State(client), "Created");
  ASSERT_EQ(client.Put("vm.boot").status, 204);
  ASSERT_TRUE(WaitFor(kDeadline, [this] { return SerialHas("VMRS_READY 10.0.2.15\r\n"); }))
      << ReadFile(serial_);
  const std::string serial = ReadFile(serial_);
  EXPECT_TRUE(Contains(serial, "Linux version")) << "no kernel noise before the marker";
  EXPECT_LT(serial.find("Linux version"), serial.find("VMRS_READY"));
  EXPECT_EQ(State(client), "Running");

  ASSERT_EQ(client.Put("vm.pause").status, 204);
  EXPECT_EQ(State(client), "Paused");
  ASSERT_EQ(client.Put("vm.resume").status, 204);
  EXPECT_EQ(State(client), "Running");
  ASSERT_EQ(client.Put("vm.power-button").status, 204);

  const int status = WaitForExit();
  ASSERT_TRUE(WIFEXITED(status)) << "wait status " << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_FALSE(fs::exists(socket_)) << "CH removes its socket on a clean exit";
  EXPECT_TRUE(SerialHas("reboot: Power down\r\n"));
  EXPECT_EQ(EventNames(),
            (std::vector<std::string>{"vmm/starting", "vm/booting", "vm/booted", "vm/pausing",
                                      "vm/paused", "vm/resuming", "vm/resumed", "vm/shutdown",
                                      "vm/deleted", "vmm/shutdown"}));
}

TEST_F(FakeCloudHypervisorTest, EventsArePrettyPrintedObjectsSeparatedByBlankLines) {
  Start();
  ChClient client(socket_);
  ASSERT_EQ(client.Put("vm.create", MinimalConfig().dump()).status, 204);
  ASSERT_EQ(client.Put("vm.boot").status, 204);
  ASSERT_TRUE(WaitFor(kDeadline, [this] { return EventNames().size() == 3; }));
  const std::string text = ReadFile(events_);
  EXPECT_EQ(text.rfind("{\n  \"timestamp\": {\n    \"secs\": 0,\n    \"nanos\": ", 0), 0u) << text;
  EXPECT_EQ(text.substr(text.size() - 3), "}\n\n") << "each event ends with a blank line";
  const std::string first = text.substr(0, text.find("\n\n"));
  const json event = json::parse(first);
  EXPECT_EQ(event["source"], "vmm");
  EXPECT_EQ(event["event"], "starting");
  EXPECT_TRUE(event["properties"].is_null());
  EXPECT_TRUE(Contains(first, "\n  \"source\": \"vmm\",\n  \"event\": \"starting\",\n"))
      << "keys are in CH's order, 2-space indented";
}

TEST_F(FakeCloudHypervisorTest, WrongStateCallsAnswer500WithAJsonArrayOfStrings) {
  Start();
  ChClient client(socket_);
  ASSERT_EQ(client.Put("vm.create", MinimalConfig().dump()).status, 204);
  for (const char* call : {"vm.pause", "vm.resume", "vm.shutdown", "vm.power-button"}) {
    const Reply reply = client.Put(call);
    EXPECT_EQ(reply.status, 500) << call << " on a created, unbooted VM";
    EXPECT_TRUE(IsArrayOfStrings(reply.body)) << call << ": " << reply.body;
  }
  const Reply again = client.Put("vm.create", MinimalConfig().dump());
  EXPECT_EQ(again.status, 500);
  EXPECT_EQ(json::parse(again.body),
            json({"Error from API", "The VM could not be created", "VM is already created"}));

  ASSERT_EQ(client.Put("vm.boot").status, 204);
  const Reply boot_again = client.Put("vm.boot");
  EXPECT_EQ(boot_again.status, 500);
  EXPECT_EQ(json::parse(boot_again.body).back(), "VM is already created");
  const Reply resume = client.Put("vm.resume");
  EXPECT_EQ(resume.status, 500);
  EXPECT_TRUE(IsArrayOfStrings(resume.body)) << resume.body;
  EXPECT_EQ(State(client), "Running");
  // CH emits "vm resuming" before it finds the VM is not paused.
  EXPECT_EQ(EventNames().back(), "vm/resuming");
}

TEST_F(FakeCloudHypervisorTest, ShutdownKeepsTheConfigAndTheVmBootsAgain) {
  Start();
  ChClient client(socket_);
  ASSERT_EQ(client.Put("vm.create", MinimalConfig().dump()).status, 204);
  ASSERT_EQ(client.Put("vm.boot").status, 204);
  ASSERT_TRUE(WaitFor(kDeadline, [this] { return SerialHas("VMRS_READY"); }));
  ASSERT_EQ(client.Put("vm.shutdown").status, 204);
  EXPECT_EQ(State(client), "Created");
  EXPECT_EQ(process_.WaitForExit(milliseconds(0)), std::nullopt) << "vm.shutdown ends no process";

  ASSERT_EQ(client.Put("vm.boot").status, 204);
  EXPECT_EQ(State(client), "Running");
  const std::string serial = ReadFile(serial_);
  EXPECT_EQ(serial.rfind("[    0.000000] Linux version", 0), 0u) << serial;
  EXPECT_EQ(serial.find("Linux version", serial.find("Linux version") + 1), std::string::npos)
      << "a new boot starts a new serial file:\n"
      << serial;
}

TEST_F(FakeCloudHypervisorTest, RebootRestartsTheGuestInPlace) {
  Start();
  ChClient client(socket_);
  EXPECT_EQ(client.Put("vm.reboot").status, 404);  // no VM: VmNotCreated
  ASSERT_EQ(client.Put("vm.create", MinimalConfig().dump()).status, 204);
  ASSERT_EQ(client.Put("vm.boot").status, 204);
  ASSERT_EQ(client.Put("vm.reboot").status, 204);
  EXPECT_EQ(State(client), "Running");
  const std::vector<std::string> events = EventNames();
  ASSERT_GE(events.size(), 2u);
  EXPECT_EQ(events[events.size() - 2], "vm/rebooting");
  EXPECT_EQ(events.back(), "vm/rebooted");
}

TEST_F(FakeCloudHypervisorTest, DeleteShutsARunningVmDownAndForgetsIt) {
  Start();
  ChClient client(socket_);
  ASSERT_EQ(client.Put("vm.create", MinimalConfig().dump()).status, 204);
  ASSERT_EQ(client.Put("vm.boot").status, 204);
  ASSERT_EQ(client.Put("vm.delete").status, 204);
  EXPECT_EQ(State(client), "HTTP 404");
  const std::vector<std::string> events = EventNames();
  EXPECT_EQ(std::vector<std::string>(events.end() - 2, events.end()),
            (std::vector<std::string>{"vm/shutdown", "vm/deleted"}));
  ASSERT_EQ(client.Put("vm.create", MinimalConfig().dump()).status, 204);
}

TEST_F(FakeCloudHypervisorTest, VmmShutdownAnswers200WithAnEmptyBodyThenExitsZero) {
  Start();
  ChClient client(socket_);
  ASSERT_EQ(client.Put("vm.create", MinimalConfig().dump()).status, 204);
  ASSERT_EQ(client.Put("vm.boot").status, 204);
  const Reply reply = client.Put("vmm.shutdown");
  EXPECT_EQ(reply.status, 200);  // the spec says 204; CH's code sends 200
  EXPECT_EQ(reply.body, "");
  EXPECT_TRUE(Contains(reply.headers, "Content-Length: 0\r\n")) << reply.headers;
  const int status = WaitForExit();
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_FALSE(fs::exists(socket_));
  const std::vector<std::string> events = EventNames();
  EXPECT_EQ(std::vector<std::string>(events.end() - 3, events.end()),
            (std::vector<std::string>{"vm/shutdown", "vm/deleted", "vmm/shutdown"}));
}

TEST_F(FakeCloudHypervisorTest, SigtermEndsTheProcessCleanlyWithinOneSecond) {
  Start();
  ChClient client(socket_);
  ASSERT_EQ(client.Put("vm.create", MinimalConfig().dump()).status, 204);
  ASSERT_EQ(client.Put("vm.boot").status, 204);
  process_.Signal(SIGTERM);
  const std::optional<int> status = process_.WaitForExit(milliseconds(1000));
  ASSERT_TRUE(status) << "still running 1 s after SIGTERM";
  ASSERT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 0);
  EXPECT_FALSE(fs::exists(socket_));
  EXPECT_EQ(EventNames().back(), "vmm/shutdown");
}

TEST_F(FakeCloudHypervisorTest, NoShutdownKeepsTheVmmAfterTheGuestPowersOff) {
  Start({"--no-shutdown"});
  ChClient client(socket_);
  ASSERT_EQ(client.Put("vm.create", MinimalConfig().dump()).status, 204);
  ASSERT_EQ(client.Put("vm.boot").status, 204);
  ASSERT_EQ(client.Put("vm.power-button").status, 204);
  ASSERT_TRUE(WaitFor(kDeadline, [this] { return EventNames().back() == "vm/shutdown"; }));
  EXPECT_EQ(State(client), "Created");
  EXPECT_EQ(process_.WaitForExit(milliseconds(0)), std::nullopt);
}

TEST_F(FakeCloudHypervisorTest, PowerButtonWhilePausedTakesEffectOnResume) {
  Start();
  ChClient client(socket_);
  ASSERT_EQ(client.Put("vm.create", MinimalConfig().dump()).status, 204);
  ASSERT_EQ(client.Put("vm.boot").status, 204);
  ASSERT_EQ(client.Put("vm.pause").status, 204);
  ASSERT_EQ(client.Put("vm.power-button").status, 204);
  EXPECT_EQ(State(client), "Paused");  // a paused guest cannot act on it
  ASSERT_EQ(client.Put("vm.resume").status, 204);
  const int status = WaitForExit();
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

// --- Request bodies against the spec ---------------------------------------

TEST_F(FakeCloudHypervisorTest, SchemaViolationsAre400NamingThePathAndTheRule) {
  Start();
  ChClient client(socket_);
  struct Case {
    std::function<void(json&)> edit;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {[](json& c) { c.erase("payload"); }, "$.payload: required"},
      {[](json& c) {
         c["cpus"] = {{"boot_vcpus", "2"}, {"max_vcpus", 2}};
       },
       "$.cpus.boot_vcpus: expected integer, got string"},
      {[](json& c) {
         c["cpus"] = {{"boot_vcpus", 0}, {"max_vcpus", 2}};
       },
       "$.cpus.boot_vcpus: must be >= 1, got 0"},
      {[](json& c) {
         c["cpus"] = {{"boot_vcpus", 1}};
       },
       "$.cpus.max_vcpus: required"},
      {[](json& c) { c["serial"]["mode"] = "file"; },
       R"($.serial.mode: must be one of [Off, Pty, Tty, File, Socket, Null], got "file")"},
      {[](json& c) {
         c["memory"] = {{"size", "1G"}};
       },
       "$.memory.size: expected integer, got string"},
      {[](json& c) {
         c["vsock"] = {{"cid", 2}, {"socket", "/tmp/v.sock"}};
       },
       "$.vsock.cid: must be >= 3, got 2"},
      {[](json& c) {
         c["fs"] = json::array({{{"tag", "t"}, {"num_queues", 1}, {"queue_size", 8}}});
       },
       "$.fs[0].socket: required"},
      {[](json& c) {
         c["disks"] = json::array({{{"path", "/d"}, {"pci_segment", 70000}}});
       },
       "$.disks[0].pci_segment: out of range for int16 (-32768..32767), got 70000"},
      {[](json& c) { c["payload"]["kernel"] = nullptr; },
       "$.payload.kernel: expected string, got null"},
      {[](json& c) {
         c["net"] = {{"tap", "t0"}};
       },
       "$.net: expected array, got object"},
  };
  for (const Case& test_case : cases) {
    json config = MinimalConfig();
    test_case.edit(config);
    const Reply reply = client.Put("vm.create", config.dump());
    EXPECT_EQ(reply.status, 400) << test_case.expected;
    ASSERT_TRUE(IsArrayOfStrings(reply.body)) << reply.body;
    const json chain = json::parse(reply.body);
    EXPECT_EQ(chain.front(), "Failed to deserialize JSON");
    EXPECT_NE(std::find(chain.begin(), chain.end(), test_case.expected), chain.end())
        << "want " << test_case.expected << " in " << reply.body;
  }
  EXPECT_EQ(State(client), "HTTP 404") << "no invalid config was stored";

  const std::vector<json> log = RequestLog();
  ASSERT_EQ(log.size(), cases.size() + 2);  // + the readiness ping, + vm.info
  for (size_t i = 0; i < cases.size(); ++i) {
    const json& entry = log[i + 1];
    EXPECT_EQ(entry["method"], "PUT");
    EXPECT_EQ(entry["path"], "/api/v1/vm.create");
    EXPECT_TRUE(entry["body"].is_object());
    EXPECT_EQ(entry["valid"], false);
    EXPECT_EQ(entry["status"], 400);
    const json& errors = entry["errors"];
    EXPECT_NE(std::find(errors.begin(), errors.end(), cases[i].expected), errors.end())
        << entry.dump();
  }
}

TEST_F(FakeCloudHypervisorTest, BodyThatIsNotJsonIs400) {
  Start();
  ChClient client(socket_);
  const Reply reply = client.Put("vm.create", "{\"payload\": ");
  EXPECT_EQ(reply.status, 400);
  EXPECT_TRUE(IsArrayOfStrings(reply.body)) << reply.body;
  EXPECT_EQ(RequestLog().back()["valid"], false);
}

TEST_F(FakeCloudHypervisorTest, FullVmConfigIsAcceptedBootsAndIsEchoedByVmInfo) {
  Start();
  ChClient client(socket_);
  const json config = {
      {"payload",
       {{"kernel", "/var/lib/vmlet/img/vmlinuz"},
        {"initramfs", "/var/lib/vmlet/img/initrd.img"},
        {"cmdline", "console=ttyS0 root=/dev/vda rw"}}},
      {"cpus", {{"boot_vcpus", 2}, {"max_vcpus", 4}}},
      {"memory", {{"size", 1073741824}, {"shared", true}}},
      {"disks", json::array({{{"path", "/var/lib/vmlet/prod/web-1/root.raw"},
                              {"readonly", false},
                              {"image_type", "Raw"},
                              {"id", "root"}}})},
      {"net", json::array({{{"tap", "vmtap0"}, {"mac", "52:54:00:12:34:56"}}})},
      {"fs", json::array({{{"tag", "shared"},
                           {"socket", "/run/vmlet/web-1/virtiofsd.sock"},
                           {"num_queues", 1},
                           {"queue_size", 1024}}})},
      {"serial", {{"mode", "File"}, {"file", serial_.string()}}},
      {"console", {{"mode", "Off"}}},
      {"vsock", {{"cid", 3}, {"socket", "/run/vmlet/web-1/vsock.sock"}}},
      {"rng", {{"src", "/dev/urandom"}}},
  };
  const Reply create = client.Put("vm.create", config.dump());
  ASSERT_EQ(create.status, 204) << create.body;
  ASSERT_EQ(client.Put("vm.boot").status, 204);

  const Reply info = client.Get("vm.info");
  ASSERT_EQ(info.status, 200);
  const json parsed = json::parse(info.body);
  std::string error;
  std::unique_ptr<fake_ch::OpenApiValidator> spec =
      fake_ch::OpenApiValidator::Load(FAKE_CH_OPENAPI, error);
  ASSERT_TRUE(spec) << error;
  const fake_ch::OpenApiValidator::Result result = spec->Validate("VmInfo", parsed);
  EXPECT_TRUE(result.ok()) << ::testing::PrintToString(result.violations);
  EXPECT_EQ(parsed["state"], "Running");
  for (const auto& [key, value] : config.items()) EXPECT_EQ(parsed["config"][key], value) << key;
  EXPECT_EQ(parsed["memory_actual_size"], 1073741824);
  EXPECT_TRUE(parsed["device_tree"].contains("root"));
}

TEST_F(FakeCloudHypervisorTest, BootRefusesAConfigThatChWouldRefuse) {
  Start();
  ChClient client(socket_);
  json config = MinimalConfig();
  config["fs"] = json::array(
      {{{"tag", "shared"}, {"socket", "/run/v.sock"}, {"num_queues", 1}, {"queue_size", 1024}}});
  ASSERT_EQ(client.Put("vm.create", config.dump()).status, 204);  // CH checks at boot
  const Reply boot = client.Put("vm.boot");
  EXPECT_EQ(boot.status, 500);
  EXPECT_TRUE(Contains(boot.body, "shared memory")) << boot.body;
  EXPECT_EQ(State(client), "Created");
}

TEST_F(FakeCloudHypervisorTest, UnknownFieldIsAcceptedButLoggedAsAWarning) {
  Start();
  ChClient client(socket_);
  json config = MinimalConfig();
  config["cpus"] = {{"boot_vcpus", 1}, {"max_vcpus", 1}, {"boot_vcpu", 2}};
  ASSERT_EQ(client.Put("vm.create", config.dump()).status, 204);
  const json entry = RequestLog().back();
  EXPECT_EQ(entry["valid"], true);
  EXPECT_EQ(entry["warnings"],
            json({"$.cpus.boot_vcpu: not in the spec; Cloud Hypervisor ignores it"}));
}

// --- Fault injection and process behaviour ---------------------------------

TEST_F(FakeCloudHypervisorTest, BootDelayHoldsTheMarkerBackAndReadyIpSetsItsAddress) {
  Start({"--fake-boot-delay-ms", "1500", "--fake-ready-ip", "192.0.2.7"});
  ChClient client(socket_);
  ASSERT_EQ(client.Put("vm.create", MinimalConfig().dump()).status, 204);
  const auto booted = SteadyClock::now();
  ASSERT_EQ(client.Put("vm.boot").status, 204);
  EXPECT_TRUE(SerialHas("Linux version"));
  EXPECT_FALSE(SerialHas("VMRS_READY")) << "the marker came with vm.boot's answer";
  ASSERT_TRUE(WaitFor(kDeadline, [this] { return SerialHas("VMRS_READY 192.0.2.7\r\n"); }));
  EXPECT_GE(SteadyClock::now() - booted, milliseconds(1400));
}

TEST_F(FakeCloudHypervisorTest, InjectedFailureAnswersItsCodeWithoutEffectForItsCount) {
  Start({"--fake-fail", "vm.boot=503:1"});
  ChClient client(socket_);
  ASSERT_EQ(client.Put("vm.create", MinimalConfig().dump()).status, 204);
  const Reply failed = client.Put("vm.boot");
  EXPECT_EQ(failed.status, 503);
  EXPECT_TRUE(IsArrayOfStrings(failed.body)) << failed.body;
  EXPECT_EQ(State(client), "Created");
  EXPECT_EQ(client.Put("vm.boot").status, 204);
  EXPECT_EQ(RequestLog()[2]["fault"], "fail 503");
}

TEST_F(FakeCloudHypervisorTest, InjectedDelayHoldsTheAnswerAndTheWholeServer) {
  Start({"--fake-delay", "vm.info=1500:1"});
  ChClient slow(socket_);
  const auto start = SteadyClock::now();
  const Reply timed_out = slow.Call("GET", "vm.info", std::nullopt, milliseconds(300));
  EXPECT_EQ(timed_out.code, CURLE_OPERATION_TIMEDOUT);
  // CH's HTTP thread is busy until the slow call is done: nobody is served.
  ChClient other(socket_);
  EXPECT_EQ(other.Get("vmm.ping").status, 200);
  EXPECT_GE(SteadyClock::now() - start, milliseconds(1400));
  EXPECT_EQ(other.Get("vm.info").status, 404);  // only the first call was delayed
}

TEST_F(FakeCloudHypervisorTest, IgnoredPowerButtonLeavesTheGuestRunning) {
  Start({"--fake-ignore-power-button", "--fake-poweroff-delay-ms", "0"});
  ChClient client(socket_);
  ASSERT_EQ(client.Put("vm.create", MinimalConfig().dump()).status, 204);
  ASSERT_EQ(client.Put("vm.boot").status, 204);
  ASSERT_EQ(client.Put("vm.power-button").status, 204);
  // A few round trips give a guest that would power off every chance to.
  for (int i = 0; i < 5; ++i) ASSERT_EQ(client.Get("vmm.ping").status, 200);
  EXPECT_EQ(State(client), "Running");
  EXPECT_FALSE(SerialHas("Power down"));
}

TEST_F(FakeCloudHypervisorTest, CrashLeavesAStaleSocketThatTheNextStartReplaces) {
  Start({"--fake-crash-on", "vm.boot"});
  ChClient client(socket_);
  ASSERT_EQ(client.Put("vm.create", MinimalConfig().dump()).status, 204);
  const Reply crashed = client.Put("vm.boot");
  EXPECT_NE(crashed.code, CURLE_OK);
  const int status = WaitForExit();
  ASSERT_TRUE(WIFSIGNALED(status)) << "wait status " << status;
  EXPECT_EQ(WTERMSIG(status), SIGKILL);
  EXPECT_TRUE(fs::exists(socket_)) << "a crashed VMM leaves its socket behind";

  Start();  // v53: takes the free lock and removes the stale socket
  ChClient fresh(socket_);
  EXPECT_EQ(fresh.Get("vm.info").status, 404);
}

TEST_F(FakeCloudHypervisorTest, SecondInstanceOnALiveSocketFailsToStart) {
  Start();
  VmletProcess second;
  ASSERT_EQ(second.Start(FAKE_CH_BINARY, {"--api-socket", "path=" + socket_},
                         (dir_ / "second.log").string()),
            "");
  const std::optional<int> status = second.WaitForExit(kDeadline);
  ASSERT_TRUE(status);
  ASSERT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 1);
  EXPECT_TRUE(Contains(ReadFile(dir_ / "second.log"), "already in use"));
  ChClient client(socket_);
  EXPECT_EQ(client.Get("vmm.ping").status, 200) << "the first instance lost its socket";
}

TEST_F(FakeCloudHypervisorTest, LegacySocketModeFailsOnAStaleSocketFileAsChV52Did) {
  {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, socket_.c_str(), sizeof(address.sun_path) - 1);
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    ::close(fd);  // the file stays: a stale socket
  }
  ASSERT_EQ(
      process_.Start(FAKE_CH_BINARY, {"--api-socket", "path=" + socket_, "--fake-legacy-socket"},
                     ProcessLog()),
      "");
  const int status = WaitForExit();
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1);
  EXPECT_TRUE(Contains(ReadFile(ProcessLog()), "Address already in use"));
}

TEST_F(FakeCloudHypervisorTest, BareApiSocketPathIsAccepted) {
  Start({}, /*bare_socket_path=*/true);
  ChClient client(socket_);
  EXPECT_EQ(client.Get("vmm.ping").status, 200);
}

TEST_F(FakeCloudHypervisorTest, UnknownFaultMethodIsAUsageError) {
  ASSERT_EQ(process_.Start(FAKE_CH_BINARY,
                           {"--api-socket", "path=" + socket_, "--fake-fail", "vm.bot=500"},
                           ProcessLog()),
            "");
  const int status = WaitForExit();
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 2);
  EXPECT_FALSE(fs::exists(socket_));
}

}  // namespace
}  // namespace vmlet::testing
