#include "server/core/names.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "server/util/error_text.h"

namespace updp::core {

absl::Status ValidateName(const std::string& field, const std::string& name) {
  bool ok = !name.empty() && name.size() <= static_cast<size_t>(kMaxNameLength) && absl::ascii_isalnum(name[0]);
  for (char c : name) {
    if (!ok) break;
    ok = absl::ascii_isalnum(c) || c == '.' || c == '_' || c == '-';
  }
  if (!ok) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": ", Quote(name), " must be 1-", kMaxNameLength,
                     " characters of [A-Za-z0-9._-] starting with a letter or digit"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ChildPath(const std::string& parent, const std::string& component) {
  if (parent.empty() || component.empty() || component == "." || component == ".." ||
      component.find('/') != std::string::npos || component.find('\0') != std::string::npos) {
    return absl::InternalError(absl::StrCat("refusing to derive a path from ", Quote(component),
                                            " under ", Quote(parent)));
  }
  return parent + "/" + component;
}

}  // namespace updp::core
