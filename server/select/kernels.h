// Kernels shared by the selection strategies: blocked nearest-centroid scans fused
// with per-centroid top-k and Lloyd accumulation, k-NN distances inside a set, AVX2
// dot products, sampling. No N x N matrix is ever formed.
#ifndef UPDP_SERVER_SELECT_KERNELS_H_
#define UPDP_SERVER_SELECT_KERNELS_H_

#include <torch/torch.h>

#include <cstdint>
#include <random>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "server/select/feature_source.h"
#include "server/select/strategy.h"
#include "server/select/thread_pool.h"

namespace updp::select {

constexpr float kInf = std::numeric_limits<float>::infinity();

// What one pass of NearestScan computes besides walking every row once.
struct ScanRequest {
  bool assign = false;      // nearest centroid and squared distance of every row
  int top_per_centroid = 0; // the nearest non-excluded rows of every centroid
  const std::vector<char>* excluded = nullptr;  // rows left out of the per-centroid lists
  bool accumulate = false;  // per-centroid sums and counts of the assigned rows (Lloyd)
  bool second = false;      // also every row's squared distance to its second-nearest
};

struct ScanResult {
  std::vector<int32_t> assign;  // [N] when asked
  std::vector<float> dist;      // [N] squared distance to the assigned centroid
  std::vector<float> dist2;     // [N] to the second-nearest centroid, when asked
  // Per centroid, ascending (squared distance, row), at most top_per_centroid.
  std::vector<std::vector<std::pair<float, int64_t>>> top;
  torch::Tensor sums;           // [K, D] float64 when accumulating
  std::vector<int64_t> counts;  // [K]
  double inertia = 0;           // sum of squared distances to the nearest centroid
  bool cancelled = false;
};

// One pass over all rows of `x` against `centroids` [K, D] float32: per block one
// GEMM into a reused buffer, then the rows' argmin and the centroids' top lists,
// spread over the pool. Stops (cancelled = true) when `cancelled` fires.
ScanResult NearestScan(const FeatureSource& x, const torch::Tensor& centroids,
                       const ScanRequest& req, ThreadPool& pool,
                       const CancelledFn& cancelled = nullptr);

// For every centroid a distinct row: the globally closest (centroid, row) pairs of the
// scan's top lists claim first. Returns (row, squared distance); row -1 when none.
std::vector<std::pair<int64_t, float>> MatchDistinct(
    const std::vector<std::vector<std::pair<float, int64_t>>>& top);

// Squared Euclidean distances [n, m] between rows of a and b (float32).
torch::Tensor SqDist(const torch::Tensor& a, const torch::Tensor& b);

// Mean Euclidean distance of each row of `q` to its k nearest rows of `ref`; when
// q's rows are also rows of ref, the nearest one (the row itself) is skipped.
torch::Tensor MeanKnnDistance(const torch::Tensor& q, const torch::Tensor& ref, int k,
                              bool self_included, ThreadPool& pool);

// The k smallest of v[0..n) into out[0..k), ascending.
void SmallestK(const float* v, int64_t n, int64_t k, float* out);

// k distinct values of [0, n), sorted (Floyd's algorithm: no permutation of n).
std::vector<int64_t> RandomSample(int64_t n, int64_t k, std::mt19937_64& rng);

// INVALID_ARGUMENT naming the first row holding NaN or Inf.
absl::Status CheckFinite(const FeatureSource& x, ThreadPool* pool = nullptr);

// Tops `picks` up with random rows that are neither excluded nor picked.
void FillRandom(std::vector<Pick>& picks, int64_t want, const std::vector<char>& excluded,
                std::mt19937_64& rng);

// Dot product of two float32 vectors (AVX2/FMA when the CPU has it).
using DotFn = float (*)(const float*, const float*, int64_t);
DotFn BestDot();

}  // namespace updp::select

#endif  // UPDP_SERVER_SELECT_KERNELS_H_
