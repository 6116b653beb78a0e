// The feature matrix a selection reads: [N, D] rows stored as a sequence of parts
// (the memory-mapped feature chunk files of a dataset, or one in-memory tensor),
// read block by block. Nothing here concatenates the parts or converts the whole
// matrix: a block or a gathered set of rows is converted to float32 (and
// L2-normalised when asked) on its own, so memory stays O(block) on top of the
// mapped files, which the kernel pages in and out as it needs.
#ifndef UPDP_SERVER_SELECT_FEATURE_SOURCE_H_
#define UPDP_SERVER_SELECT_FEATURE_SOURCE_H_

#include <torch/torch.h>

#include <functional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/select/thread_pool.h"

namespace updp::select {

class FeatureSource {
 public:
  // Rows per block handed to kernels: [kBlockRows, K] float32 distance blocks stay
  // in the cache hierarchy's reach and are reused between blocks.
  static constexpr int64_t kBlockRows = 4096;

  // `parts`: 2-D CPU tensors with equal column counts and one dtype among float16,
  // bfloat16, float32 and float64 (views of mapped files are fine: they are only
  // read). INVALID_ARGUMENT otherwise.
  static absl::StatusOr<FeatureSource> Create(std::vector<torch::Tensor> parts, bool normalize);
  // One in-memory matrix.
  static absl::StatusOr<FeatureSource> FromTensor(const torch::Tensor& x, bool normalize);

  int64_t rows() const { return rows_; }
  int64_t dim() const { return dim_; }
  bool normalized() const { return normalize_; }
  // The same rows, read with or without L2 normalisation.
  FeatureSource WithNormalize(bool normalize) const;

  // Rows [begin, begin + len) as a new float32 [len, D] tensor.
  torch::Tensor Block(int64_t begin, int64_t len) const;
  // Calls fn(begin, block) for consecutive blocks of at most kBlockRows rows (never
  // crossing a part), in order. Stops early when fn returns false.
  void ForEachBlock(const std::function<bool(int64_t, const torch::Tensor&)>& fn) const;
  // The blocks' [begin, len) ranges, for kernels that spread blocks over a pool.
  std::vector<std::pair<int64_t, int64_t>> BlockRanges() const;
  // The given rows as float32 [m, D], in order (parallel over `pool` when given).
  torch::Tensor Gather(const std::vector<int64_t>& rows, ThreadPool* pool = nullptr) const;
  // Row r as float32 into out[0..D).
  void Row(int64_t r, float* out) const;
  // The first row holding a NaN or an infinity, or -1: the raw values' exponent bits
  // are tested in place (no conversion), in parallel over `pool` when given.
  int64_t FirstNonFiniteRow(ThreadPool* pool = nullptr) const;

 private:
  struct Part {
    torch::Tensor t;  // [n, D], contiguous
    int64_t begin = 0;
  };
  const Part& PartOf(int64_t row) const;
  void ConvertRow(const Part& p, int64_t local, float* out) const;
  bool RowHasNonFinite(const Part& p, int64_t local) const;

  std::vector<Part> parts_;
  int64_t rows_ = 0, dim_ = 0;
  torch::ScalarType dtype_ = torch::kFloat32;
  bool normalize_ = true;
};

}  // namespace updp::select

#endif  // UPDP_SERVER_SELECT_FEATURE_SOURCE_H_
