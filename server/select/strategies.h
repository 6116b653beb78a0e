// Budgeted selection strategies over a feature matrix (LibTorch, CPU). No N x N
// matrix is ever formed: distances are computed in row chunks.
#ifndef UPDP_SERVER_SELECT_STRATEGIES_H_
#define UPDP_SERVER_SELECT_STRATEGIES_H_

#include <torch/torch.h>

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace updp::select {

struct SelectOptions {
  std::string strategy = "kmeans";  // random kmeans kcenter typiclust usl activeft probcover
  int64_t budget = 0;
  uint64_t seed = 0;
  std::vector<int64_t> labeled;  // row indices already labeled: never picked again
  bool normalize = true;         // cosine geometry on L2-normalised features
  // k-means (also used inside typiclust, usl, probcover).
  int kmeans_iterations = 10;  // Lloyd iterations on the training sample
  int kmeans_points_per_centroid = 256;  // FAISS-style training sample
  // typiclust / usl
  int knn = 20;
  int typiclust_max_clusters = 5000;
  // Typicality / density inside a cluster is computed for at most this many randomly
  // chosen candidates per cluster (their k-NN searched among all members), so a few
  // huge clusters (small B, large N) stay O(N * cap * D) instead of O(N^2/K * D).
  int max_candidates_per_cluster = 2048;
  int usl_iterations = 2;
  double usl_alpha = 1.0;
  double usl_lambda = 0.05;
  int usl_nearest_selected = 32;
  // USL density: exact global k-NN up to this many rows; above, k-NN within the
  // item's k-means cluster (documented approximation, O(N * N/K * D)).
  int64_t density_exact_max = 50000;
  // activeft
  double activeft_tau = 0.07;
  double activeft_lr = 1e-3;
  int activeft_steps = 300;
  int64_t activeft_batch = 8192;  // items per optimisation step (mini-batch when N is larger)
  // probcover
  double probcover_purity = 0.95;
  // k-means pseudo-labels for the purity of delta: 0 = the budget (K = B).
  int probcover_clusters = 0;
  int64_t probcover_max_points = 20000;  // ProbCover runs on a sample of this size
};

struct Pick {
  int64_t index = 0;    // row in the feature matrix
  int64_t cluster = -1; // cluster id where the strategy has clusters
  double score = 0.0;   // strategy-specific (higher = more representative/typical)
};

using ProgressFn = std::function<void(const std::string& phase, double fraction)>;
using CancelledFn = std::function<bool()>;

const std::vector<std::string>& StrategyNames();

// Returns exactly min(budget, N - |labeled|) distinct picks in rank order.
// INVALID_ARGUMENT for an unknown strategy, budget <= 0, a labeled index out of
// range, or a row holding NaN/Inf (named). CANCELLED when `cancelled` fires.
absl::StatusOr<std::vector<Pick>> Select(const torch::Tensor& features, const SelectOptions& opt,
                                         const ProgressFn& progress = nullptr,
                                         const CancelledFn& cancelled = nullptr);

// k-means (k-means++ init on a sample, Lloyd on <= K*points_per_centroid points).
// Returns centroids [K,D] float32. Exposed for the updp strategy and the benchmark.
torch::Tensor KMeansCentroids(const torch::Tensor& x, int64_t k, uint64_t seed, int iterations,
                              int points_per_centroid, const CancelledFn& cancelled = nullptr);
// Nearest centroid of every row (chunked): {assignment [N] int64, squared distance [N]}.
std::pair<torch::Tensor, torch::Tensor> AssignNearest(const torch::Tensor& x,
                                                      const torch::Tensor& centroids);

}  // namespace updp::select

#endif  // UPDP_SERVER_SELECT_STRATEGIES_H_
