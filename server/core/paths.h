// Server-side path checks: every path a client names must resolve (after symlinks)
// inside one of --allowed_roots.
#ifndef UPDP_SERVER_CORE_PATHS_H_
#define UPDP_SERVER_CORE_PATHS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace updp::core {

class PathPolicy {
 public:
  explicit PathPolicy(std::vector<std::string> roots);
  // Canonical absolute path of `path` if it exists and lies inside an allowed root.
  // NOT_FOUND if it does not exist, PERMISSION_DENIED if it escapes the roots.
  // `field` names the request field in error messages.
  absl::StatusOr<std::string> Resolve(const std::string& field, const std::string& path) const;
  // True when the canonical `path` lies inside an allowed root.
  bool Allowed(const std::string& canonical) const;
  const std::vector<std::string>& roots() const { return roots_; }

 private:
  std::vector<std::string> roots_;  // canonical
};

}  // namespace updp::core

#endif  // UPDP_SERVER_CORE_PATHS_H_
