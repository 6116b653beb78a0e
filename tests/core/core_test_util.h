// Helpers for core tests: a temp data dir, a store with a registered dataset, and a
// one-shot notification (absl::Notification is not in every Abseil we build with).
#ifndef UPDP_TESTS_CORE_CORE_TEST_UTIL_H_
#define UPDP_TESTS_CORE_CORE_TEST_UTIL_H_

#include <gtest/gtest.h>
#include <stdlib.h>

#include <condition_variable>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>

#include "server/core/store.h"

namespace updp::testing {

inline std::string CoreTempDir(const std::string& tag) {
  std::string tmpl = ::testing::TempDir() + "/updp_core_" + tag + "_XXXXXX";
  return std::filesystem::canonical(mkdtemp(tmpl.data())).string();
}

class Note {
 public:
  void Notify() {
    std::lock_guard<std::mutex> l(mu_);
    done_ = true;
    cv_.notify_all();
  }
  // False after `timeout_s`: a failure of the test, never a timing assumption.
  bool Wait(double timeout_s = 60) {
    std::unique_lock<std::mutex> l(mu_);
    return cv_.wait_for(l, std::chrono::duration<double>(timeout_s), [&] { return done_; });
  }
  bool HasBeenNotified() {
    std::lock_guard<std::mutex> l(mu_);
    return done_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
};

inline void AddReadyDataset(core::Store& store, const std::string& name, int items = 3) {
  core::DatasetInfo d;
  d.name = name;
  d.source_kind = core::SourceKind::kManifest;
  ASSERT_TRUE(store.ReserveDataset(d).ok());
  std::vector<core::ItemRow> rows;
  for (int i = 0; i < items; ++i) rows.push_back({i, "item" + std::to_string(i), "/x"});
  ASSERT_TRUE(store.AddItems(name, rows).ok());
  ASSERT_TRUE(store.CommitDataset(name, "/m", items, {}, "", {}).ok());
}

}  // namespace updp::testing

#endif  // UPDP_TESTS_CORE_CORE_TEST_UTIL_H_
