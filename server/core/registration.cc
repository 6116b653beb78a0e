#include "server/core/registration.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>
#include <unordered_set>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "server/util/atomic_file.h"
#include "server/util/error_text.h"

namespace updp::core {

namespace fs = std::filesystem;

namespace {

const std::set<std::string> kImageExtensions = {".jpg", ".jpeg", ".png", ".webp"};
constexpr int64_t kMaxListFileBytes = int64_t{1} << 30;  // manifests and ids files
constexpr int64_t kProgressEvery = 4096;                 // entries between progress calls

// Reports every kProgressEvery-th entry (and the first and last); false to stop.
bool Report(const ListProgress& progress, const char* stage, int64_t done, int64_t total) {
  if (!progress || (done % kProgressEvery != 0 && done != total)) return true;
  return progress(stage, done, total);
}

absl::Status Stopped(const char* field) {
  return absl::CancelledError(absl::StrCat(field, ": listing stopped"));
}

// Adds items with unique, non-empty ids.
class ItemAdder {
 public:
  explicit ItemAdder(ItemList* list) : list_(list) {}
  absl::Status Add(const std::string& id, const std::string& path, const std::string& field) {
    if (id.empty()) return absl::InvalidArgumentError(absl::StrCat(field, ": empty item id"));
    if (!seen_.insert(id).second) {
      return absl::InvalidArgumentError(absl::StrCat(field, ": duplicate item id ", Quote(id)));
    }
    list_->items.push_back({static_cast<int64_t>(list_->items.size()), id, path});
    return absl::OkStatus();
  }

 private:
  ItemList* list_;
  std::unordered_set<std::string> seen_;
};

}  // namespace

absl::StatusOr<std::string> ReadRequestFile(const std::string& field, const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    return absl::NotFoundError(
        absl::StrCat(field, ": ", Quote(path, 200), ": ", std::strerror(errno)));
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": ", Quote(path, 200), " is not a regular file"));
  }
  if (st.st_size > kMaxListFileBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": ", Quote(path, 200), " is larger than ", kMaxListFileBytes >> 20, " MiB"));
  }
  auto text = ReadFile(path);
  if (!text.ok()) return absl::NotFoundError(absl::StrCat(field, ": ", text.status().message()));
  return text;
}

absl::StatusOr<ItemList> ScanImageDirectory(const PathPolicy& paths, const std::string& path,
                                            const ListProgress& progress) {
  auto root = paths.Resolve("images.path", path);
  if (!root.ok()) return root.status();
  std::error_code ec;
  if (!fs::is_directory(*root, ec)) {
    return absl::InvalidArgumentError(
        absl::StrCat("images.path: ", Quote(path, 200), " is not a directory"));
  }
  ItemList list;
  list.source_path = *root;
  std::vector<std::string> files;
  for (auto it = fs::recursive_directory_iterator(
           *root, fs::directory_options::skip_permission_denied, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    std::error_code fec;
    if (!it->is_regular_file(fec)) continue;
    std::string ext = absl::AsciiStrToLower(it->path().extension().string());
    if (!kImageExtensions.count(ext)) continue;
    files.push_back(it->path().string());
    if (!Report(progress, "list", static_cast<int64_t>(files.size()), 0)) {
      return Stopped("images.path");
    }
  }
  if (ec) {
    return absl::InvalidArgumentError(
        absl::StrCat("images.path: cannot list ", Quote(path, 200), ": ", ec.message()));
  }
  std::sort(files.begin(), files.end());
  if (files.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("images.path: no images (jpg, jpeg, png, webp) under ", Quote(path, 200)));
  }
  ItemAdder add(&list);
  const auto total = static_cast<int64_t>(files.size());
  if (!Report(progress, "check", 0, total)) return Stopped("images.path");
  for (int64_t i = 0; i < total; ++i) {
    const std::string& f = files[i];
    if (!Report(progress, "check", i + 1, total)) return Stopped("images.path");
    // A symlink inside the tree may point outside the allowed roots.
    std::error_code fec;
    std::string canon = fs::weakly_canonical(f, fec).string();
    std::string rel = fs::path(f).lexically_relative(*root).string();
    if (fec || !paths.Allowed(canon)) {
      list.failed.push_back({rel, f, "resolves outside the allowed roots"});
      continue;
    }
    if (auto s = add.Add(rel, canon, "images.path"); !s.ok()) return s;
  }
  return list;
}

absl::StatusOr<ItemList> ReadManifest(const PathPolicy& paths, const std::string& path,
                                      const ListProgress& progress) {
  auto manifest = paths.Resolve("manifest.path", path);
  if (!manifest.ok()) return manifest.status();
  auto text = ReadRequestFile("manifest.path", *manifest);
  if (!text.ok()) return text.status();
  ItemList list;
  list.source_path = *manifest;
  ItemAdder add(&list);
  const fs::path base = fs::path(*manifest).parent_path();
  int64_t line_no = 0;
  // Lines as StrSplit counts them (a last line without '\n' included).
  const int64_t lines = static_cast<int64_t>(std::count(text->begin(), text->end(), '\n')) + 1;
  for (absl::string_view raw : absl::StrSplit(*text, '\n')) {
    ++line_no;
    if (!Report(progress, "list", line_no, lines)) return Stopped("manifest.path");
    std::string line(absl::StripAsciiWhitespace(raw));
    if (line.empty() || line[0] == '#') continue;
    std::string id, p;
    std::vector<std::string> parts = absl::StrSplit(line, absl::MaxSplits(',', 1));
    if (parts.size() == 2) {
      id = std::string(absl::StripAsciiWhitespace(parts[0]));
      p = std::string(absl::StripAsciiWhitespace(parts[1]));
      if (line_no == 1 && id == "id" && p == "path") continue;  // header
    } else {
      p = line;
    }
    const std::string field = absl::StrCat("manifest.path: ", *manifest, " line ", line_no);
    fs::path full = fs::path(p).is_absolute() ? fs::path(p) : base / p;
    auto resolved = paths.Resolve(field, full.string());
    // A line outside the roots is a failed item like a missing file (one bad line does
    // not refuse the whole manifest); its path is kept as written, not resolved.
    const bool outside = resolved.status().code() == absl::StatusCode::kPermissionDenied;
    std::string item_path = resolved.ok() ? *resolved : full.lexically_normal().string();
    if (id.empty()) id = p;
    if (auto s = add.Add(id, item_path, field); !s.ok()) return s;
    if (!resolved.ok()) {
      list.failed.push_back(
          {id, item_path, outside ? "outside the allowed roots" : "file does not exist"});
    }
  }
  if (list.items.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("manifest.path: ", Quote(path, 200), " lists no items"));
  }
  return list;
}

absl::StatusOr<IdsFile> IdsFile::Read(const PathPolicy& paths, const std::string& path) {
  auto idf = paths.Resolve("embeddings.ids_path", path);
  if (!idf.ok()) return idf.status();
  auto text = ReadRequestFile("embeddings.ids_path", *idf);
  if (!text.ok()) return text.status();
  IdsFile f;
  f.text_ = std::move(*text);
  absl::string_view id;
  while (f.Next(&id)) ++f.count_;
  f.pos_ = 0;
  return f;
}

bool IdsFile::Next(absl::string_view* id) {
  while (pos_ < text_.size()) {
    size_t end = text_.find('\n', pos_);
    if (end == std::string::npos) end = text_.size();
    *id = absl::StripAsciiWhitespace(absl::string_view(text_).substr(pos_, end - pos_));
    pos_ = end + 1;
    if (!id->empty()) return true;
  }
  return false;
}

}  // namespace updp::core
