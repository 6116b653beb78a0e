// Crash-safe file replacement: write to a temp name in the same directory,
// fsync, then rename over the destination.
#ifndef UPDP_SERVER_UTIL_ATOMIC_FILE_H_
#define UPDP_SERVER_UTIL_ATOMIC_FILE_H_

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace updp {

absl::Status WriteFileAtomically(const std::string& path, std::string_view contents);
absl::StatusOr<std::string> ReadFile(const std::string& path);

}  // namespace updp

#endif  // UPDP_SERVER_UTIL_ATOMIC_FILE_H_
