#include "server/util/remove_tree.h"

#include <ftw.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace updp {
namespace {

int RemoveEntry(const char* path, const struct stat*, int, struct FTW*) {
  return std::remove(path) == 0 || errno == ENOENT ? 0 : errno;
}

}  // namespace

absl::Status RemoveTree(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return absl::InternalError(absl::StrCat("cannot remove '", path, "': ", std::strerror(errno)));
  }
  // Depth first (children before their folder), never following symlinks.
  const int rc = ::nftw(path.c_str(), RemoveEntry, 32, FTW_DEPTH | FTW_PHYS);
  if (rc != 0) {
    return absl::InternalError(
        absl::StrCat("cannot remove '", path, "': ", std::strerror(rc > 0 ? rc : errno)));
  }
  return absl::OkStatus();
}

}  // namespace updp
