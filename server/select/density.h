// Cluster membership lists and the density (typicality) of rows inside their
// cluster, shared by TypiClust and USL: the inverse mean distance of a row to its k
// nearest members of the same cluster.
#ifndef UPDP_SERVER_SELECT_DENSITY_H_
#define UPDP_SERVER_SELECT_DENSITY_H_

#include <torch/torch.h>

#include <cstdint>
#include <random>
#include <vector>

#include "server/select/feature_source.h"
#include "server/select/thread_pool.h"

namespace updp::select {

// Rows grouped by cluster (counting sort of an assignment): O(N) scalars.
struct Groups {
  std::vector<int64_t> offset;  // [K + 1]
  std::vector<int64_t> rows;    // [N], ascending within a cluster
  int64_t size(int64_t c) const { return offset[c + 1] - offset[c]; }
  std::vector<int64_t> Members(int64_t c) const {
    return {rows.begin() + offset[c], rows.begin() + offset[c + 1]};
  }
};
Groups GroupBy(const std::vector<int32_t>& assign, int64_t k);

// How many candidates per cluster get a density: all members up to `max_candidates`,
// lowered (not below `min_candidates`) until sum_c min(size_c, cap) * size_c, the
// distance pairs computed, is at most `max_pairs`. Keeps huge pools (10M rows in 1,000
// clusters of 10,000) at a bounded cost instead of O(N^2 / K * D).
int64_t CandidateCap(const Groups& g, int64_t max_candidates, double max_pairs,
                     int64_t min_candidates = 32);

struct ClusterDensityResult {
  std::vector<int64_t> rows;  // candidate rows
  torch::Tensor density;      // [rows.size()] = 1 / (mean k-NN distance + 1e-8)
};
// Density of the candidates of one cluster (all members when at most `cap`, else a
// random subset of `cap`), their neighbours searched among all members.
ClusterDensityResult ClusterDensity(const FeatureSource& x, const std::vector<int64_t>& members,
                                    int knn, int64_t cap, std::mt19937_64& rng, ThreadPool& pool);

}  // namespace updp::select

#endif  // UPDP_SERVER_SELECT_DENSITY_H_
