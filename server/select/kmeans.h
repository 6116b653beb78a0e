// k-means clustering (cf. FAISS's Clustering / ClusteringParameters) and the kmeans
// selection strategy: B centroids, then for each the nearest distinct item.
#ifndef UPDP_SERVER_SELECT_KMEANS_H_
#define UPDP_SERVER_SELECT_KMEANS_H_

#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "server/select/feature_source.h"
#include "server/select/strategy.h"
#include "server/select/thread_pool.h"

namespace updp::select {

struct KMeansParameters {
  // Full mode: Lloyd on every row until the relative change of the inertia falls below
  // `tolerance` (or `max_iterations`), chosen when N * K * D <= full_max_work, i.e.
  // when that costs little. Sampled mode otherwise: `niter` Lloyd iterations on a
  // random sample of max_points_per_centroid * K rows (FAISS's scheme).
  double full_max_work = 1e10;
  double tolerance = 1e-4;
  int max_iterations = 300;
  int niter = 10;
  int max_points_per_centroid = 256;
  // Greedy k-means++ seeding (2 + ln K trials per centre) on a sample of
  // init_points_per_centroid * K rows (sampled mode) or up to full_init_max_points
  // rows (full mode).
  int init_points_per_centroid = 16;
  int64_t full_init_max_points = 100000;
  // Sampled mode: keep a row's centroid without searching when it provably has not
  // changed (Hamerly's bounds: its exact distance to that centroid, from one dot
  // product, is below a lower bound of its distance to every other centroid, the
  // second-nearest distance of its last search minus the largest centroid move
  // since). Same assignments as searching every row, at a fraction of the GEMM work
  // once the centroids settle.
  bool bounds = true;
};

struct KMeansIterationStats {
  int iteration = 0;
  double objective = 0;  // inertia: sum of squared distances to the nearest centroid
  double seconds = 0;    // since the start of training
  int64_t points = 0;    // rows the iteration assigned
  int64_t searched = 0;  // of those, rows compared with every centroid (see bounds)
  int empty_reseeded = 0;
};

struct KMeansResult {
  torch::Tensor centroids;  // [K, D] float32
  std::vector<KMeansIterationStats> stats;
  bool full = false;       // trained on every row
  bool converged = false;  // full mode stopped on the tolerance
  bool cancelled = false;
};

// Memory: O(K * D) centroids and sums, the sample (max_points_per_centroid * K * D
// floats) and four scalars per sample row for the bounds in sampled mode, O(N) scalars
// in full mode, plus one block.
KMeansResult TrainKMeans(const FeatureSource& x, int64_t k, const KMeansParameters& p,
                         uint64_t seed, ThreadPool& pool, const CancelledFn& cancelled = nullptr);

// The kmeans strategy (and the completion of the updp strategy's picks).
std::vector<Pick> RunKMeans(const StrategyContext& ctx);

}  // namespace updp::select

#endif  // UPDP_SERVER_SELECT_KMEANS_H_
