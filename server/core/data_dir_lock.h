// An exclusive lock on --data_dir (flock on data_dir/LOCK), held for the life of
// the process: a second server on the same directory is refused at start instead of
// corrupting the first one's view. The kernel drops it when the process dies
// (kill -9 included).
#ifndef UPDP_SERVER_CORE_DATA_DIR_LOCK_H_
#define UPDP_SERVER_CORE_DATA_DIR_LOCK_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace updp::core {

class DataDirLock {
 public:
  // FAILED_PRECONDITION naming the holder's pid when another process holds it.
  static absl::StatusOr<std::unique_ptr<DataDirLock>> Acquire(const std::string& data_dir);
  ~DataDirLock();

 private:
  explicit DataDirLock(int fd) : fd_(fd) {}
  int fd_;
};

}  // namespace updp::core

#endif  // UPDP_SERVER_CORE_DATA_DIR_LOCK_H_
