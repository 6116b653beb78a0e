// Names of datasets and prompts, validated once at the edge, and the only way paths
// are derived from them: a derived path is checked to stay under its parent before
// anything is created or removed there.
#ifndef UPDP_SERVER_CORE_NAMES_H_
#define UPDP_SERVER_CORE_NAMES_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace updp::core {

// The longest name; also the ceiling of the server's --max_name_length.
inline constexpr int kMaxNameLength = 64;

// 1-64 characters of [A-Za-z0-9._-], starting with a letter or digit (so never "."
// or ".." or a hidden file). INVALID_ARGUMENT naming `field` otherwise.
absl::Status ValidateName(const std::string& field, const std::string& name);

// parent/component, where `component` is one path element (no '/', not "." or "..",
// not empty). INTERNAL otherwise: callers pass validated names, so a refusal here is
// a bug caught before it touches the file system.
absl::StatusOr<std::string> ChildPath(const std::string& parent, const std::string& component);

}  // namespace updp::core

#endif  // UPDP_SERVER_CORE_NAMES_H_
