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

absl::StatusOr<OpenedFeatures> OpenFeatures(const std::vector<core::FeatureChunk>& chunks,
                                            int64_t num_items) {
  std::vector<torch::Tensor> parts;
  std::vector<int64_t> item_of_row;
  int64_t dim = -1;
  for (const auto& c : chunks) {
    auto opened = model::SafetensorsFile::Open(c.path);
    if (!opened.ok()) {
      return absl::DataLossError(absl::StrCat("feature chunk: ", opened.status().message()));
    }
    std::shared_ptr<const model::SafetensorsFile> f = std::move(*opened);
    const auto& info = f->tensors();
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
    // A view of the mapped file (it keeps the mapping alive): pages are read on demand.
    auto features = model::SafetensorsFile::MapTensor(f, "features");
    if (!features.ok()) {
      return absl::DataLossError(absl::StrCat(c.path, ": ", features.status().message()));
    }
    auto idx = f->Get("index", torch::kLong);
    if (!idx.ok()) return absl::DataLossError(absl::StrCat(c.path, ": ", idx.status().message()));
    const int64_t* a = idx->data_ptr<int64_t>();
    for (int64_t i = 0; i < idx->size(0); ++i) {
      if (a[i] < 0 || a[i] >= num_items) {
        return absl::DataLossError(absl::StrCat(c.path, ": item index ", a[i],
                                                " is outside the dataset's ", num_items, " items"));
      }
    }
    item_of_row.insert(item_of_row.end(), a, a + idx->size(0));
    parts.push_back(*features);
  }
  auto source = select::FeatureSource::Create(std::move(parts), /*normalize=*/true);
  if (!source.ok()) return absl::DataLossError(source.status().message());
  return OpenedFeatures{std::move(*source), std::move(item_of_row)};
}

absl::StatusOr<ChunkRows> ReadChunkRows(const core::FeatureChunk& chunk, int64_t end) {
  auto f = model::SafetensorsFile::Open(chunk.path);
  if (!f.ok()) return absl::DataLossError(absl::StrCat("feature chunk: ", f.status().message()));
  auto features = (*f)->Get("features", torch::kFloat16);
  auto idx = (*f)->Get("index", torch::kLong);
  if (!features.ok() || !idx.ok() || features->dim() != 2 || idx->dim() != 1 ||
      idx->size(0) != features->size(0)) {
    return absl::DataLossError(absl::StrCat(chunk.path, ": not a feature chunk"));
  }
  ChunkRows out;
  std::vector<int64_t> keep;
  const int64_t* a = idx->data_ptr<int64_t>();
  for (int64_t i = 0; i < idx->size(0); ++i) {
    // A file rewritten by a run that stopped before its store row may hold more.
    if (a[i] < end) {
      keep.push_back(i);
      out.index.push_back(a[i]);
    }
  }
  out.features = features->index_select(0, torch::tensor(keep, torch::kLong)).contiguous();
  return out;
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
