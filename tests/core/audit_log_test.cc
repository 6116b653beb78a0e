// The audit trail's lines: one JSON object per line, appended to a 0600 file, with
// request bytes that are not UTF-8 replaced instead of breaking the line.
#include "server/core/audit_log.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/core/core_test_util.h"

namespace updp::core {
namespace {

std::vector<nlohmann::json> Lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<nlohmann::json> out;
  for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
  return out;
}

TEST(AuditLogTest, AppendsOneJsonLinePerRecordToAPrivateFile) {
  const std::string path = testing::CoreTempDir("audit") + "/audit.log";
  {
    auto log = AuditLog::Open(path);
    ASSERT_TRUE(log.ok()) << log.status();
    AuditRecord r;
    r.caller = "alice";
    r.role = "admin";
    r.method = "DeleteDataset";
    r.target = "pool-a";
    r.peer = "ipv4:127.0.0.1:5000";
    r.outcome = "OK";
    (*log)->Write(r);
    r.target = std::string("bad\xff\xfe", 5);  // not UTF-8
    r.outcome = "NOT_FOUND";
    r.message = std::string(2000, 'm');
    (*log)->Write(r);
  }
  {
    auto log = AuditLog::Open(path);  // a restart appends
    ASSERT_TRUE(log.ok());
    AuditRecord r;
    r.caller = "anonymous";
    r.method = "Select";
    r.outcome = "OK";
    (*log)->Write(r);
  }
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  const auto lines = Lines(path);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0]["caller"], "alice");
  EXPECT_EQ(lines[0]["role"], "admin");
  EXPECT_EQ(lines[0]["method"], "DeleteDataset");
  EXPECT_EQ(lines[0]["target"], "pool-a");
  EXPECT_EQ(lines[0]["outcome"], "OK");
  EXPECT_EQ(lines[0]["audit"], "updp");
  EXPECT_EQ(lines[0]["ts"].get<std::string>().size(), 24u);  // 2026-11-30T12:00:00.123Z
  EXPECT_EQ(lines[1]["target"].get<std::string>().substr(0, 3), "bad");
  EXPECT_EQ(lines[1]["message"].get<std::string>().size(), 512u);
  EXPECT_FALSE(lines[2].contains("role"));
  EXPECT_FALSE(lines[2].contains("target"));
}

TEST(AuditLogTest, AFileThatCannotBeOpenedNamesTheFlag) {
  auto log = AuditLog::Open("/nonexistent-dir/audit.log");
  ASSERT_FALSE(log.ok());
  EXPECT_NE(log.status().message().find("--audit_log /nonexistent-dir/audit.log"),
            std::string::npos)
      << log.status();
}

}  // namespace
}  // namespace updp::core
