// Opening a file a request names, safely: only a regular file, and never blocking on a
// FIFO. Shared by the .npy and safetensors readers.
#ifndef UPDP_SERVER_UTIL_REGULAR_FILE_H_
#define UPDP_SERVER_UTIL_REGULAR_FILE_H_

#include <cstddef>
#include <string>

#include "absl/status/statusor.h"

namespace updp {

// Opens `path` read-only if it is a regular file and sets `*size`; the caller closes
// the descriptor. NOT_FOUND when it cannot be opened, INVALID_ARGUMENT for a FIFO,
// device or directory. stat() comes first: opening a FIFO for reading blocks until a
// writer appears; O_NONBLOCK covers a FIFO swapped in between (no effect on regular
// files).
absl::StatusOr<int> OpenRegularFile(const std::string& path, size_t* size);

}  // namespace updp

#endif  // UPDP_SERVER_UTIL_REGULAR_FILE_H_
