// The /metrics endpoint as a scraper and a hostile client see it: GET answers, other
// methods get 405 at once (no body is waited for), and idle connections do not hold
// up a scrape.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "server/core/metrics.h"
#include "tests/core/core_test_util.h"

namespace updp::testing {
namespace {

// A TCP connection to 127.0.0.1:port whose reads give up after `timeout_s`.
int Connect(int port, int timeout_s) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  timeval tv{timeout_s, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  return fd;
}

// Sends `request` and returns what came back before the server closed the connection
// or the read timed out (then whatever had arrived, possibly nothing).
std::string Exchange(int port, const std::string& request, int timeout_s) {
  int fd = Connect(port, timeout_s);
  EXPECT_EQ(send(fd, request.data(), request.size(), 0), static_cast<ssize_t>(request.size()));
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = recv(fd, buf, sizeof(buf), 0)) > 0) {
    out.append(buf, static_cast<size_t>(n));
    if (out.find("\r\n\r\n") != std::string::npos &&
        out.find("Content-Length") != std::string::npos) {
      const size_t body = out.find("\r\n\r\n") + 4;
      const size_t len_at = out.find("Content-Length: ") + 16;
      if (out.size() >= body + std::stoul(out.substr(len_at))) break;
    }
  }
  close(fd);
  return out;
}

class MetricsHttpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(metrics_.Expose("127.0.0.1", 0));
    port_ = metrics_.bound_port();
  }
  core::Metrics metrics_;
  int port_ = 0;
};

TEST_F(MetricsHttpTest, GetAnswersTheExposition) {
  const std::string r = Exchange(port_, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 10);
  EXPECT_EQ(r.rfind("HTTP/1.1 200", 0), 0u) << r.substr(0, 80);
  EXPECT_NE(r.find("updp_build_info"), std::string::npos);
}

// The server waits 5 s for a body that does not come; the client here waits 3 s, so
// a 405 that arrives means it came before any body was read.
TEST_F(MetricsHttpTest, OtherMethodsGet405WithoutWaitingForABody) {
  for (const char* method : {"POST", "PUT", "DELETE", "PATCH"}) {
    const std::string r = Exchange(
        port_, std::string(method) + " /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n",
        3);
    EXPECT_EQ(r.rfind("HTTP/1.1 405", 0), 0u) << method << ": " << r.substr(0, 80);
    EXPECT_NE(r.find("Allow: GET, HEAD"), std::string::npos) << method;
  }
}

// Idle connections (opened, nothing sent) used to hold every worker for 5 s each.
TEST_F(MetricsHttpTest, IdleConnectionsDoNotHoldUpAScrape) {
  std::vector<int> idle;
  for (int i = 0; i < 24; ++i) idle.push_back(Connect(port_, 10));
  const std::string r = Exchange(port_, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 3);
  EXPECT_EQ(r.rfind("HTTP/1.1 200", 0), 0u) << "no answer within 3 s: " << r.substr(0, 80);
  for (int fd : idle) close(fd);
}

}  // namespace
}  // namespace updp::testing
