#include "server/core/paths.h"

#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace updp::core {

namespace fs = std::filesystem;

PathPolicy::PathPolicy(std::vector<std::string> roots) {
  for (const auto& r : roots) {
    if (r.empty()) continue;
    std::error_code ec;
    fs::path c = fs::weakly_canonical(fs::absolute(r), ec);
    if (!ec) roots_.push_back(c.string());
  }
}

bool PathPolicy::Allowed(const std::string& canonical) const {
  for (const auto& root : roots_) {
    if (canonical == root || root == "/" || absl::StartsWith(canonical, root + "/")) {
      return true;
    }
  }
  return false;
}

absl::StatusOr<std::string> PathPolicy::Resolve(const std::string& field,
                                                const std::string& path) const {
  if (path.empty()) return absl::InvalidArgumentError(absl::StrCat(field, ": path is empty"));
  std::error_code ec;
  fs::path abs = fs::absolute(path, ec);
  if (!fs::exists(abs, ec)) {
    // Check the policy on what the path would resolve to, so that a missing file
    // outside the roots reads as PERMISSION_DENIED rather than leaking existence.
    fs::path weak = fs::weakly_canonical(abs, ec);
    if (!Allowed(weak.string())) {
      return absl::PermissionDeniedError(
          absl::StrCat(field, ": '", path, "' is outside the allowed roots"));
    }
    return absl::NotFoundError(absl::StrCat(field, ": '", path, "' does not exist"));
  }
  fs::path canon = fs::canonical(abs, ec);
  if (ec) {
    return absl::NotFoundError(
        absl::StrCat(field, ": cannot resolve '", path, "': ", ec.message()));
  }
  if (!Allowed(canon.string())) {
    // The same answer as for a missing path outside the roots, and never the target a
    // symlink points at: neither existence nor layout outside the roots leaks.
    return absl::PermissionDeniedError(
        absl::StrCat(field, ": '", path, "' is outside the allowed roots"));
  }
  return canon.string();
}

}  // namespace updp::core
