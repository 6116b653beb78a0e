// TypiClust: K = B + |labeled| k-means clusters; from the largest clusters without a
// labeled item, the most typical member of each.
#ifndef UPDP_SERVER_SELECT_TYPICLUST_H_
#define UPDP_SERVER_SELECT_TYPICLUST_H_

#include <vector>

#include "server/select/strategy.h"

namespace updp::select {

struct TypiClustParameters {
  int knn = 20;             // typicality: inverse mean distance to the k nearest members
  int max_clusters = 5000;  // cap on K (the paper's setting)
  // Typicality is computed for at most this many random candidates per cluster (their
  // neighbours searched among all members) ...
  int64_t max_candidates_per_cluster = 2048;
  // ... and fewer when candidates x members over all clusters would exceed this
  // (see CandidateCap): 2e9 pairs are ~1e12 multiply-adds at D = 256.
  double max_pairs = 2e9;
};

// Memory: the k-means sample, O(N) scalars (assignment, groups), one cluster's rows.
std::vector<Pick> RunTypiClust(const StrategyContext& ctx);

}  // namespace updp::select

#endif  // UPDP_SERVER_SELECT_TYPICLUST_H_
