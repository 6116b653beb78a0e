// A dataset manifest (one path, or `id,path`, a line) and an embeddings ids file, read
// through the same PathPolicy the server uses: a status for any text, never a crash.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "absl/strings/string_view.h"
#include "fuzz/common.h"
#include "server/core/paths.h"
#include "server/core/registration.h"

namespace {

// An allowed root with a few images (empty files: only their paths are checked), so
// manifest lines can resolve, miss, escape the root or be duplicates.
const updp::core::PathPolicy& Policy() {
  static const updp::core::PathPolicy* policy = [] {
    namespace fs = std::filesystem;
    const fs::path root = fs::path(updp::fuzz::ScratchDir()) / "root";
    fs::create_directories(root / "sub");
    for (const char* f : {"a.jpg", "b.png", "sub/c.webp"}) {
      updp::fuzz::WriteInput(std::string("root/") + f, nullptr, 0);
    }
    std::error_code ec;
    fs::create_symlink("/etc", root / "escape", ec);
    return new updp::core::PathPolicy({root.string()});
  }();
  return *policy;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const updp::core::PathPolicy& policy = Policy();
  const std::string path = updp::fuzz::WriteInput("root/manifest.csv", data, size);
  int64_t last = 0;
  auto list = updp::core::ReadManifest(policy, path, [&](const char*, int64_t done, int64_t) {
    if (done < last) std::abort();  // progress must not go backwards
    last = done;
    return true;
  });
  if (list.ok() && list->items.empty()) std::abort();  // documented: "lists no items" error
  auto ids = updp::core::IdsFile::Read(policy, path);
  if (ids.ok()) {
    int64_t n = 0;
    absl::string_view id;
    while (ids->Next(&id)) {
      if (id.empty()) std::abort();
      ++n;
    }
    if (n != ids->size()) std::abort();
  }
  return 0;
}
