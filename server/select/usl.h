// USL (unsupervised selective labeling): B k-means clusters, the densest member of
// each, then a few rounds that trade density against closeness to the picks of
// other clusters.
#ifndef UPDP_SERVER_SELECT_USL_H_
#define UPDP_SERVER_SELECT_USL_H_

#include <vector>

#include "server/select/strategy.h"

namespace updp::select {

struct UslParameters {
  int knn = 20;
  int iterations = 2;  // regularisation rounds
  double alpha = 1.0;
  double lambda = 0.05;
  int nearest_selected = 32;  // picks of other clusters in the regulariser
  // Evaluate the regulariser only down each cluster's density ranking until no lower
  // density can win (exact); false evaluates every candidate.
  bool prune = true;
  // Exact global k-NN density up to this many rows; above, k-NN within the row's
  // k-means cluster (equal to the global one when a row's neighbours share its cluster).
  int64_t density_exact_max = 50000;
  // Candidate caps inside clusters, as TypiClustParameters.
  int64_t max_candidates_per_cluster = 2048;
  double max_pairs = 2e9;
};

// Memory: the k-means sample, O(N) scalars (assignment, groups, density), one block
// of [rows, B] distances; below density_exact_max the whole (small) matrix.
std::vector<Pick> RunUsl(const StrategyContext& ctx);

}  // namespace updp::select

#endif  // UPDP_SERVER_SELECT_USL_H_
