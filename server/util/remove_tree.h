// Removes a file or a directory tree (without following symlinks), with POSIX nftw.
// Not std::filesystem::remove_all: PyPI's LibTorch 2.x exports its own copy of that
// symbol, which interposes libstdc++'s in every binary linked with it and crashes.
#ifndef UPDP_SERVER_UTIL_REMOVE_TREE_H_
#define UPDP_SERVER_UTIL_REMOVE_TREE_H_

#include <string>

#include "absl/status/status.h"

namespace updp {

// OK when `path` no longer exists (including when it never did).
absl::Status RemoveTree(const std::string& path);

}  // namespace updp

#endif  // UPDP_SERVER_UTIL_REMOVE_TREE_H_
