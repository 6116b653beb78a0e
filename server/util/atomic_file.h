// Crash-safe file replacement: write to a temp name in the same directory,
// fsync, then rename over the destination.
#ifndef UPDP_SERVER_UTIL_ATOMIC_FILE_H_
#define UPDP_SERVER_UTIL_ATOMIC_FILE_H_

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace updp {

absl::Status WriteFileAtomically(const std::string& path, std::string_view contents);
absl::StatusOr<std::string> ReadFile(const std::string& path);

// The same, written in pieces (a file larger than memory): Write() appends to the temp
// file, Commit() fsyncs it and renames it over `path`. Destroyed uncommitted, the temp
// file is removed and `path` is untouched.
class AtomicFileWriter {
 public:
  static absl::StatusOr<std::unique_ptr<AtomicFileWriter>> Create(const std::string& path);
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  absl::Status Write(std::string_view bytes);
  absl::Status Commit();

 private:
  AtomicFileWriter(std::string path, std::string tmp, int fd)
      : path_(std::move(path)), tmp_(std::move(tmp)), fd_(fd) {}
  std::string path_, tmp_;
  int fd_;  // -1 once closed
  bool committed_ = false;
};

}  // namespace updp

#endif  // UPDP_SERVER_UTIL_ATOMIC_FILE_H_
