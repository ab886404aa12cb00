#include "api/status.h"

#include <gtest/gtest.h>

namespace vmlet::api {
namespace {

TEST(StatusTest, DefaultIsOkAndPrintsOk) {
  Status s;
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s.ToString(), "OK");
}

TEST(StatusTest, ErrorCarriesCodeAndMessage) {
  Status s = Status::NotFound("no VM prod/web-1");
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(s.IsNotFound());
  EXPECT_EQ(s.message(), "no VM prod/web-1");
  EXPECT_EQ(s.ToString(), "NotFound: no VM prod/web-1");
}

TEST(StatusTest, OnlyUnavailableAndDeadlineExceededAreRetryable) {
  EXPECT_TRUE(Status::Unavailable("x").IsRetryable());
  EXPECT_TRUE(Status::DeadlineExceeded("x").IsRetryable());
  EXPECT_FALSE(Status::InvalidArgument("x").IsRetryable());
  EXPECT_FALSE(Status::NotFound("x").IsRetryable());
  EXPECT_FALSE(Status::Internal("x").IsRetryable());
  EXPECT_FALSE(Status::Ok().IsRetryable());
}

TEST(StatusTest, WithContextPrefixesTheMessageAndKeepsOkOk) {
  EXPECT_EQ(Status::Unavailable("connection refused").WithContext("qmp").ToString(),
            "Unavailable: qmp: connection refused");
  EXPECT_TRUE(Status::Ok().WithContext("qmp").ok());
}

TEST(StatusOrTest, HoldsAValue) {
  StatusOr<int> v = 42;
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, 42);
  EXPECT_TRUE(v.status().ok());
}

TEST(StatusOrTest, HoldsAnError) {
  StatusOr<std::string> v = Status::PermissionDenied("cannot read /etc/shadow");
  EXPECT_FALSE(v.ok());
  EXPECT_EQ(v.status().code(), Status::Code::kPermissionDenied);
}

}  // namespace
}  // namespace vmlet::api
