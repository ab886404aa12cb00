#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "api/clock.h"
#include "api/status.h"
#include "controller/api_messages.h"

namespace vmlet::controller {

// What the HTTP server serves. Both calls are made from cpprestsdk's threads
// and the server's pump thread, concurrently: they must be thread-safe.
class ApiHandler {
 public:
  virtual ~ApiHandler() = default;
  // Answers one request.
  virtual ApiReply Handle(const ApiRequest& request) = 0;
  // For a reply with a watch: the lines its stream gets next ("" when there
  // is nothing new); sets `watch.done` when the stream is over.
  virtual std::string NextWatchLines(WatchState& watch) = 0;
};

// Serves an ApiHandler at http://<address>/ with cpprestsdk's http_listener,
// and keeps its watch streams fed: one pump thread writes what
// NextWatchLines() gives to every open stream when told of a change
// (Notify()), and looks at every open stream once a second (timeouts,
// stalled clients). A watch holds no thread.
//
// The constructor opens nothing; Start() binds and starts the pump, Stop()
// ends every watch and closes the socket. Notify() is thread-safe and may be
// called at any time, started or not.
class ApiHttpServer {
 public:
  struct Options {
    // "HOST:PORT" to serve at ("127.0.0.1:9471", "[::1]:9471").
    std::string address = "127.0.0.1:9471";
    // A watch whose client has not read what was written for this long is
    // ended (cpprestsdk does not say when a client went away).
    std::chrono::seconds watch_stall = std::chrono::seconds(10);
  };

  // `clock` and `handler` outlive the server.
  ApiHttpServer(Options options, api::Clock& clock, ApiHandler& handler);
  // Stop().
  ~ApiHttpServer();

  ApiHttpServer(const ApiHttpServer&) = delete;
  ApiHttpServer& operator=(const ApiHttpServer&) = delete;

  // Binds the address and starts serving. Unavailable, with the address and
  // cpprestsdk's reason, when it cannot. REQUIRES: not started.
  [[nodiscard]] api::Status Start();
  // Ends every watch, stops serving and closes the socket. Idempotent.
  void Stop();
  // The handler has something new for the open watches: wakes the pump.
  void Notify();

 private:
  class Listener;
  struct Stream;

  // Registers the stream of a watch reply; false when stopping (the caller
  // closes it).
  bool AddStream(const std::shared_ptr<Stream>& stream);
  void Pump();
  // Writes what is new to `stream` and closes it when its watch is over, its
  // client stalled, or `stopping`.
  void Feed(Stream& stream, api::Clock::MonotonicTime now, bool stopping);

  const Options options_;
  api::Clock& clock_;
  ApiHandler& handler_;
  std::unique_ptr<Listener> listener_;  // set while started

  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;                         // guarded by mu_
  bool changed_ = false;                          // guarded by mu_: the pump has something to send
  std::vector<std::shared_ptr<Stream>> streams_;  // guarded by mu_
  std::thread pump_;
};

// Sizes cpprestsdk's process-wide thread pool (40 threads unless told),
// which runs the API's handlers; a watch holds no thread. cpprestsdk leaves
// this to the application: call it from main, before anything of cpprestsdk
// runs. False (and no change) when the pool was already started.
bool SizeHttpThreadPool(size_t threads);

}  // namespace vmlet::controller
