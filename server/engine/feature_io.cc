#include "server/engine/feature_io.h"

#include <cstdio>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "server/model/safetensors.h"

namespace updp::engine {

namespace fs = std::filesystem;

std::string ChunkName(int64_t c) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "chunk_%06lld.safetensors", static_cast<long long>(c));
  return buf;
}

absl::StatusOr<std::pair<torch::Tensor, std::vector<int64_t>>> LoadFeatures(
    const std::vector<core::FeatureChunk>& chunks, int64_t num_items) {
  int64_t rows = 0, dim = -1;
  std::vector<std::unique_ptr<model::SafetensorsFile>> files;
  for (const auto& c : chunks) {
    auto f = model::SafetensorsFile::Open(c.path);
    if (!f.ok()) return absl::DataLossError(absl::StrCat("feature chunk: ", f.status().message()));
    const auto& info = (*f)->tensors();
    if (!info.count("features") || !info.count("index")) {
      return absl::DataLossError(absl::StrCat(c.path, ": not a feature chunk"));
    }
    const auto& shape = info.at("features").shape;
    const auto& ishape = info.at("index").shape;
    if (shape.size() != 2 || (dim >= 0 && shape[1] != dim) || ishape.size() != 1 ||
        ishape[0] != shape[0]) {
      return absl::DataLossError(absl::StrCat(c.path, ": inconsistent feature chunk shapes"));
    }
    dim = shape[1];
    rows += shape[0];
    files.push_back(std::move(*f));
  }
  // One copy out of the mapped chunk files, in the stored dtype (float16 for image
  // and prompt features); selection converts to float32 once.
  torch::ScalarType dtype = torch::kFloat32;
  if (!files.empty()) {
    auto t = model::DtypeFromString(files[0]->tensors().at("features").dtype);
    if (!t.ok()) return t.status();
    dtype = *t;
  }
  torch::Tensor x = torch::empty({rows, std::max<int64_t>(dim, 0)}, dtype);
  std::vector<int64_t> index;
  index.reserve(rows);
  int64_t at = 0;
  for (size_t k = 0; k < files.size(); ++k) {
    auto part = files[k]->Get("features", dtype);
    if (!part.ok())
      return absl::DataLossError(absl::StrCat(chunks[k].path, ": ", part.status().message()));
    auto idx = files[k]->Get("index", torch::kLong);
    if (!idx.ok())
      return absl::DataLossError(absl::StrCat(chunks[k].path, ": ", idx.status().message()));
    x.narrow(0, at, part->size(0)).copy_(*part);
    at += part->size(0);
    auto a = idx->accessor<int64_t, 1>();
    for (int64_t i = 0; i < idx->size(0); ++i) {
      if (a[i] < 0 || a[i] >= num_items) {
        return absl::DataLossError(absl::StrCat(chunks[k].path, ": item index ", a[i],
                                                " is outside the dataset's ", num_items, " items"));
      }
      index.push_back(a[i]);
    }
  }
  return std::make_pair(x, index);
}

absl::StatusOr<std::string> WriteChunk(const std::string& dir, int64_t chunk,
                                       const torch::Tensor& features,
                                       const std::vector<int64_t>& index) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create '", dir, "': ", ec.message()));
  std::string path = dir + "/" + ChunkName(chunk);
  auto s = model::WriteSafetensors(path, {{"features", features.to(torch::kCPU, torch::kFloat16)},
                                          {"index", torch::tensor(index, torch::kLong)}});
  if (!s.ok()) return s;
  return path;
}

}  // namespace updp::engine
