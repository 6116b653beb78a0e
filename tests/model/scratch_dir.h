// A fresh directory for each test's files, removed afterwards. The name carries the test
// and the process id: ctest runs tests in parallel processes, and two builds of the
// suite may run at once.
#ifndef UPDP_TESTS_MODEL_SCRATCH_DIR_H_
#define UPDP_TESTS_MODEL_SCRATCH_DIR_H_

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <system_error>

#include "server/util/remove_tree.h"

namespace updp::model {

class ScratchDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = ::testing::TempDir() + "/" + info->test_suite_name() + "." + info->name() + "-" +
           std::to_string(::getpid());
    std::error_code ec;
    ASSERT_TRUE(RemoveTree(dir_).ok());
    ASSERT_TRUE(std::filesystem::create_directories(dir_, ec)) << dir_ << ": " << ec.message();
  }
  void TearDown() override { RemoveTree(dir_).IgnoreError(); }
  std::string TmpPath(const std::string& name) const { return dir_ + "/" + name; }

 private:
  std::string dir_;
};

}  // namespace updp::model

#endif  // UPDP_TESTS_MODEL_SCRATCH_DIR_H_
