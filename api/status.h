#pragma once

#include <cassert>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace vmlet::api {

// The outcome of a fallible operation: OK, or a code and a message.
//
// Errors are values (see leveldb's Status): functions that can fail return a
// [[nodiscard]] Status or StatusOr<T>, never throw. The code says what kind of
// failure it was and, through IsRetryable(), whether trying again can help;
// the message is for people and is never parsed.
class [[nodiscard]] Status {
 public:
  enum class Code {
    kOk = 0,
    kInvalidArgument,     // the input is wrong; retrying the same input cannot help
    kNotFound,            // the thing asked for does not exist
    kAlreadyExists,       // the thing to create is there already
    kFailedPrecondition,  // the system is not in a state where this can be done
    kPermissionDenied,    // not allowed
    kUnavailable,         // transient: retrying later may succeed
    kDeadlineExceeded,    // the deadline passed before the operation finished
    kInternal,            // a broken invariant or an unexpected failure
  };

  // OK. Cheap: no allocation.
  Status() = default;

  static Status Ok() { return Status(); }
  static Status InvalidArgument(std::string msg) {
    return {Code::kInvalidArgument, std::move(msg)};
  }
  static Status NotFound(std::string msg) { return {Code::kNotFound, std::move(msg)}; }
  static Status AlreadyExists(std::string msg) { return {Code::kAlreadyExists, std::move(msg)}; }
  static Status FailedPrecondition(std::string msg) {
    return {Code::kFailedPrecondition, std::move(msg)};
  }
  static Status PermissionDenied(std::string msg) {
    return {Code::kPermissionDenied, std::move(msg)};
  }
  static Status Unavailable(std::string msg) { return {Code::kUnavailable, std::move(msg)}; }
  static Status DeadlineExceeded(std::string msg) {
    return {Code::kDeadlineExceeded, std::move(msg)};
  }
  static Status Internal(std::string msg) { return {Code::kInternal, std::move(msg)}; }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }

  bool IsInvalidArgument() const { return code_ == Code::kInvalidArgument; }
  bool IsNotFound() const { return code_ == Code::kNotFound; }
  bool IsAlreadyExists() const { return code_ == Code::kAlreadyExists; }

  // True when the same call, made again later, may succeed (unavailable,
  // deadline exceeded). Invalid input, missing things and broken invariants
  // are not retryable: repeating them only repeats the failure.
  bool IsRetryable() const {
    return code_ == Code::kUnavailable || code_ == Code::kDeadlineExceeded;
  }

  // "OK", or "<code name>: <message>".
  std::string ToString() const;

  // A copy whose message is "<context>: <message>"; OK stays OK.
  Status WithContext(std::string_view context) const;

  friend bool operator==(const Status&, const Status&) = default;

 private:
  Status(Code code, std::string msg) : code_(code), message_(std::move(msg)) {}

  Code code_ = Code::kOk;
  std::string message_;
};

std::string_view CodeName(Status::Code code);
std::ostream& operator<<(std::ostream& os, const Status& status);

// Either a T or a non-OK Status explaining why there is none.
//
// REQUIRES: a StatusOr is never built from an OK Status; value() is called
// only when ok().
template <typename T>
class [[nodiscard]] StatusOr {
 public:
  StatusOr(T value) : value_(std::move(value)) {}         // NOLINT: implicit by design
  StatusOr(Status status) : status_(std::move(status)) {  // NOLINT: implicit by design
    assert(!status_.ok() && "StatusOr built from an OK status has no value");
    if (status_.ok()) status_ = Status::Internal("StatusOr built from an OK status");
  }

  bool ok() const { return value_.has_value(); }
  const Status& status() const { return status_; }

  const T& value() const& {
    assert(ok());
    return *value_;
  }
  T& value() & {
    assert(ok());
    return *value_;
  }
  T&& value() && {
    assert(ok());
    return std::move(*value_);
  }
  const T& operator*() const& { return value(); }
  T& operator*() & { return value(); }
  const T* operator->() const { return &value(); }
  T* operator->() { return &value(); }

 private:
  Status status_;  // OK exactly when value_ holds a value.
  std::optional<T> value_;
};

}  // namespace vmlet::api

// Returns the Status of `expr` (a Status) from the enclosing function, which
// returns Status or StatusOr<T>, unless it is OK.
#define VMLET_RETURN_IF_ERROR(expr)                             \
  do {                                                          \
    if (::vmlet::api::Status status_ = (expr); !status_.ok()) { \
      return status_;                                           \
    }                                                           \
  } while (false)
