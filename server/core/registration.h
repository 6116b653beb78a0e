// Reading a dataset's item list from its source: a server-side image directory or a
// manifest (plus the ids file of an embeddings source). Pure listing and validation;
// ServerCore stores the result.
#ifndef UPDP_SERVER_CORE_REGISTRATION_H_
#define UPDP_SERVER_CORE_REGISTRATION_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/core/paths.h"
#include "server/core/types.h"

namespace updp::core {

struct ItemList {
  std::string source_path;  // canonical
  std::vector<ItemRow> items;
  std::vector<FailedItemRow> failed;
};

// Called every few thousand entries of a listing with its stage, the entries done and
// their total (0 while unknown); returning false stops the listing (CANCELLED).
using ListProgress = std::function<bool(const char* stage, int64_t done, int64_t total)>;

// Every jpg/jpeg/png/webp under `path` (recursively, sorted); ids are relative paths.
// A file that resolves outside the allowed roots is listed as failed. Progress: stage
// "list" (files found), then "check" (files resolved, of all found).
absl::StatusOr<ItemList> ScanImageDirectory(const PathPolicy& paths, const std::string& path,
                                            const ListProgress& progress = nullptr);

// One image path per line, or CSV `id,path` lines (optional header `id,path`).
// Relative paths are relative to the manifest. A missing file is listed as failed.
// Progress: stage "list" (lines read, of the file's lines).
absl::StatusOr<ItemList> ReadManifest(const PathPolicy& paths, const std::string& path,
                                      const ListProgress& progress = nullptr);

// The ids of an embeddings source: the non-empty lines of its ids file (whitespace
// stripped), in order. Kept as the file's text: ten million ids are not ten million
// strings.
class IdsFile {
 public:
  static absl::StatusOr<IdsFile> Read(const PathPolicy& paths, const std::string& path);
  int64_t size() const { return count_; }
  // The next id (a view into the text); false after the last.
  bool Next(absl::string_view* id);

 private:
  std::string text_;
  size_t pos_ = 0;
  int64_t count_ = 0;
};

// The contents of a regular file that a request names (`field`). A FIFO, device or
// directory is refused before it is opened, so a read can never block forever.
absl::StatusOr<std::string> ReadRequestFile(const std::string& field, const std::string& path);

}  // namespace updp::core

#endif  // UPDP_SERVER_CORE_REGISTRATION_H_
