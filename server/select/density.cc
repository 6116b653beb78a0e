#include "server/select/density.h"

#include <algorithm>
#include <numeric>

#include "server/select/kernels.h"

namespace updp::select {

Groups GroupBy(const std::vector<int32_t>& assign, int64_t k) {
  Groups g;
  g.offset.assign(k + 1, 0);
  for (int32_t a : assign) ++g.offset[a + 1];
  std::partial_sum(g.offset.begin(), g.offset.end(), g.offset.begin());
  g.rows.resize(assign.size());
  std::vector<int64_t> at(g.offset.begin(), g.offset.end() - 1);
  for (size_t i = 0; i < assign.size(); ++i) g.rows[at[assign[i]]++] = static_cast<int64_t>(i);
  return g;
}

int64_t CandidateCap(const Groups& g, int64_t max_candidates, double max_pairs,
                     int64_t min_candidates) {
  const int64_t k = static_cast<int64_t>(g.offset.size()) - 1;
  auto pairs = [&](int64_t cap) {
    double p = 0;
    for (int64_t c = 0; c < k; ++c) p += static_cast<double>(std::min(g.size(c), cap)) * g.size(c);
    return p;
  };
  int64_t lo = std::min(min_candidates, max_candidates), hi = max_candidates;
  if (pairs(hi) <= max_pairs) return hi;
  while (lo < hi) {  // the largest cap within the budget (lo when none is)
    const int64_t mid = (lo + hi + 1) / 2;
    if (pairs(mid) <= max_pairs) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}

ClusterDensityResult ClusterDensity(const FeatureSource& x, const std::vector<int64_t>& members,
                                    int knn, int64_t cap, std::mt19937_64& rng, ThreadPool& pool) {
  torch::Tensor xs = x.Gather(members, &pool);
  std::vector<int64_t> pos;
  if (static_cast<int64_t>(members.size()) <= cap) {
    pos.resize(members.size());
    std::iota(pos.begin(), pos.end(), 0);
  } else {
    pos = RandomSample(static_cast<int64_t>(members.size()), cap, rng);
  }
  torch::Tensor q = xs.index_select(0, torch::tensor(pos, torch::kLong));
  ClusterDensityResult r;
  r.density = 1.0 / (MeanKnnDistance(q, xs, knn, /*self_included=*/true, pool) + 1e-8);
  r.rows.reserve(pos.size());
  for (int64_t p : pos) r.rows.push_back(members[p]);
  return r;
}

}  // namespace updp::select
