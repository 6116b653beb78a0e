// Feature chunk files: safetensors with "features" [n, D] and "index" [n] (the item
// index of each row), written atomically by jobs and read back for selection.
#ifndef UPDP_SERVER_ENGINE_FEATURE_IO_H_
#define UPDP_SERVER_ENGINE_FEATURE_IO_H_

#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/core/types.h"
#include "server/select/feature_source.h"

namespace updp::engine {

std::string ChunkName(int64_t chunk);

// The chunks of a feature source, memory-mapped and read in place (no copy of the
// features), plus the item index of each row (O(N) integers). Every index is
// checked against `num_items`; shapes and dtypes must agree across chunks.
struct OpenedFeatures {
  select::FeatureSource source;
  std::vector<int64_t> item_of_row;
};
absl::StatusOr<OpenedFeatures> OpenFeatures(const std::vector<core::FeatureChunk>& chunks,
                                            int64_t num_items);

// The rows of a stored chunk whose item index is below `end` (float16 [m, D]) and
// their indexes: what a chunk a refresh grew keeps of its old self.
struct ChunkRows {
  torch::Tensor features;
  std::vector<int64_t> index;
};
absl::StatusOr<ChunkRows> ReadChunkRows(const core::FeatureChunk& chunk, int64_t end);

// Writes dir/ChunkName(chunk) (float16 features) and returns its path.
absl::StatusOr<std::string> WriteChunk(const std::string& dir, int64_t chunk,
                                       const torch::Tensor& features,
                                       const std::vector<int64_t>& index);

}  // namespace updp::engine

#endif  // UPDP_SERVER_ENGINE_FEATURE_IO_H_
