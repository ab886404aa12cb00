#include "controller/api_http_server.h"

#include <cpprest/http_listener.h>
#include <cpprest/producerconsumerstream.h>
#include <pplx/threadpool.h>
#include <spdlog/spdlog.h>

#include <exception>
#include <optional>
#include <utility>

#include "controller/api_query.h"
#include "controller/kube_objects.h"

namespace vmlet::controller {

// One open watch stream.
struct ApiHttpServer::Stream {
  std::shared_ptr<WatchState> watch;
  concurrency::streams::producer_consumer_buffer<uint8_t> buffer;
  // Since when bytes written to it have waited unread.
  std::optional<api::Clock::MonotonicTime> unread_since;
  bool closed = false;
};

// cpprestsdk's listener: turns its requests into ApiRequests and the
// handler's replies into responses.
class ApiHttpServer::Listener {
 public:
  Listener(ApiHttpServer& server, const std::string& uri) : server_(server), listener_(uri) {}

  void Open() {
    listener_.support([this](const web::http::http_request& request) { Serve(request); });
    listener_.open().wait();
  }

  void Close() {
    try {
      listener_.close().wait();
    } catch (const std::exception& e) {
      spdlog::warn("event=ApiCloseError {}", e.what());
    }
  }

 private:
  void Serve(const web::http::http_request& request) {
    ApiRequest r;
    r.method = request.method();
    const web::uri& uri = request.request_uri();
    r.path = uri.path();
    r.query = ParseQuery(uri.query());
    auto accept = request.headers().find("Accept");
    if (accept != request.headers().end()) r.accept = accept->second;

    ApiReply reply;
    try {
      reply = server_.handler_.Handle(r);
    } catch (const std::exception& e) {
      spdlog::error("event=ApiError path={} {}", r.path, e.what());
      const std::string message = std::string("internal error: ") + e.what();
      reply.code = 500;
      reply.content_type = std::string(kJsonContentType);
      reply.body = KubeStatus(500, "InternalError", message).dump();
    }
    web::http::http_response response(static_cast<web::http::status_code>(reply.code));
    for (const auto& [name, value] : reply.headers) response.headers().add(name, value);
    if (reply.watch) {
      auto stream = std::make_shared<Stream>();
      stream->watch = reply.watch;
      response.set_body(concurrency::streams::istream(stream->buffer), reply.content_type);
      if (!server_.AddStream(stream)) stream->buffer.close(std::ios_base::out).wait();
    } else {
      response.set_body(std::move(reply.body), reply.content_type);
    }
    // An unobserved failed task would end the process: observe it.
    request.reply(response).then([](const pplx::task<void>& sent) {
      try {
        sent.get();
      } catch (const std::exception&) {
        // The client went away; nothing to do.
      }
    });
  }

  ApiHttpServer& server_;
  web::http::experimental::listener::http_listener listener_;
};

ApiHttpServer::ApiHttpServer(Options options, api::Clock& clock, ApiHandler& handler)
    : options_(std::move(options)), clock_(clock), handler_(handler) {}

ApiHttpServer::~ApiHttpServer() { Stop(); }

api::Status ApiHttpServer::Start() {
  const std::string uri = "http://" + options_.address;
  try {
    auto listener = std::make_unique<Listener>(*this, uri);
    listener->Open();
    listener_ = std::move(listener);
  } catch (const std::exception& e) {
    return api::Status::Unavailable("cannot serve the API on " + options_.address + ": " +
                                    e.what());
  }
  {
    std::lock_guard lock(mu_);
    stopping_ = false;
  }
  pump_ = std::thread([this] { Pump(); });
  return api::Status::Ok();
}

void ApiHttpServer::Stop() {
  if (!listener_) return;
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (pump_.joinable()) pump_.join();
  listener_->Close();
  listener_.reset();
}

void ApiHttpServer::Notify() {
  {
    std::lock_guard lock(mu_);
    changed_ = true;
  }
  cv_.notify_all();
}

bool ApiHttpServer::AddStream(const std::shared_ptr<Stream>& stream) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return false;
    streams_.push_back(stream);
    changed_ = true;
  }
  cv_.notify_all();
  return true;
}

void ApiHttpServer::Pump() {
  std::unique_lock lock(mu_);
  while (true) {
    // Open streams are looked at every second (timeouts, stalled clients);
    // without any, only a change or Stop() wakes the pump.
    const auto tick = streams_.empty() ? std::chrono::hours(24) : std::chrono::seconds(1);
    clock_.WaitUntil(cv_, lock, clock_.MonotonicNow() + tick,
                     [this] { return stopping_ || changed_; });
    const bool stopping = stopping_;
    changed_ = false;
    std::vector<std::shared_ptr<Stream>> streams = streams_;
    lock.unlock();
    const api::Clock::MonotonicTime now = clock_.MonotonicNow();
    for (const std::shared_ptr<Stream>& s : streams) Feed(*s, now, stopping);
    lock.lock();
    std::erase_if(streams_, [](const auto& s) { return s->closed; });
    if (stopping) return;
  }
}

void ApiHttpServer::Feed(Stream& s, api::Clock::MonotonicTime now, bool stopping) {
  try {
    if (!stopping) {
      const std::string lines = handler_.NextWatchLines(*s.watch);
      if (!lines.empty()) {
        s.buffer.putn_nocopy(reinterpret_cast<const uint8_t*>(lines.data()), lines.size()).wait();
        s.buffer.sync().wait();
      }
    }
    // cpprestsdk does not tell when a client goes away; one that leaves
    // what was written unread is taken as gone.
    if (s.buffer.in_avail() == 0) {
      s.unread_since.reset();
    } else if (!s.unread_since) {
      s.unread_since = now;
    } else if (now - *s.unread_since >= options_.watch_stall) {
      s.watch->done = true;
    }
    if (stopping || s.watch->done) {
      s.buffer.close(std::ios_base::out).wait();
      s.closed = true;
    }
  } catch (const std::exception& e) {
    spdlog::debug("event=WatchEnded {}", e.what());
    s.closed = true;
  }
}

bool SizeHttpThreadPool(size_t threads) {
  try {
    crossplat::threadpool::initialize_with_threads(threads);
    return true;
  } catch (const std::exception&) {
    return false;
  }
}

}  // namespace vmlet::controller
