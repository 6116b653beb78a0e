// Bring-your-own embeddings: a [N, D] .npy streamed into feature-chunk files
// (safetensors "features" [n, D] and "index" [n] int64, the format selection reads) in
// bounded memory, however large the array.
#ifndef UPDP_SERVER_MODEL_FEATURE_IMPORT_H_
#define UPDP_SERVER_MODEL_FEATURE_IMPORT_H_

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace updp::model {

struct ImportedChunk {
  int64_t chunk = 0;
  int64_t rows = 0;
  std::string path;
};

struct FeatureImport {
  int64_t rows = 0;                           // N
  int64_t dim = 0;                            // D
  torch::ScalarType dtype = torch::kFloat32;  // as stored
  std::vector<ImportedChunk> chunks;          // in row order
};

// Rows [c * chunk_rows, (c + 1) * chunk_rows) go to chunk_path(c), their index being the
// row number. float16 and float32 are stored as they are; float64 (numpy's default) as
// float32, converted block by block. Every value must be finite, and a float64 value
// must fit in float32: INVALID_ARGUMENT naming the first bad row (checked in the same
// pass as the copy). Other input errors (not a .npy, another dtype, not [N, D] with
// N, D > 0) are INVALID_ARGUMENT too, NOT_FOUND when the file cannot be opened. On any
// error no chunk file is left behind. Memory: two blocks of about `block_bytes`.
// `progress` (optional) is called after every block with the rows copied and N;
// returning false stops the import (CANCELLED, no chunk file left).
absl::StatusOr<FeatureImport> ImportNpyFeatures(
    const std::string& npy, int64_t chunk_rows,
    const std::function<std::string(int64_t chunk)>& chunk_path,
    size_t block_bytes = size_t{8} << 20,
    const std::function<bool(int64_t done, int64_t total)>& progress = nullptr);

}  // namespace updp::model

#endif  // UPDP_SERVER_MODEL_FEATURE_IMPORT_H_
