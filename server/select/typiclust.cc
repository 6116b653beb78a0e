#include "server/select/typiclust.h"

#include <algorithm>
#include <numeric>

#include "server/select/density.h"
#include "server/select/kernels.h"
#include "server/select/kmeans.h"
#include "server/select/select.h"

namespace updp::select {

std::vector<Pick> RunTypiClust(const StrategyContext& ctx) {
  const auto& p = ctx.opt.typiclust;
  const int64_t n = ctx.x.rows();
  const int64_t k = std::min<int64_t>({ctx.want + ctx.n_labeled, p.max_clusters, n});
  ctx.Report("kmeans", 0.0);
  KMeansResult km = TrainKMeans(ctx.x, k, ctx.opt.kmeans, ctx.rng(), ctx.pool, ctx.cancelled);
  if (km.cancelled) return {};
  ScanRequest req;
  req.assign = true;
  ScanResult s = NearestScan(ctx.x, km.centroids, req, ctx.pool, ctx.cancelled);
  if (s.cancelled) return {};
  const Groups g = GroupBy(s.assign, k);
  std::vector<char> has_labeled(k, 0);
  for (int64_t i = 0; i < n; ++i) {
    if (ctx.labeled[i]) has_labeled[s.assign[i]] = 1;
  }
  std::vector<int64_t> order(k);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    if (has_labeled[a] != has_labeled[b]) return has_labeled[a] < has_labeled[b];
    return g.size(a) > g.size(b);
  });
  const int64_t cap = CandidateCap(g, p.max_candidates_per_cluster, p.max_pairs);
  ctx.Report("typicality", 0.6);
  std::vector<Pick> picks;
  std::vector<char> used(ctx.excluded);
  for (int64_t r = 0; r < k && static_cast<int64_t>(picks.size()) < ctx.want; ++r) {
    const int64_t cl = order[r];
    if (g.size(cl) == 0) continue;
    if (ctx.Cancelled()) return {};
    if (r % 16 == 0) ctx.Report("typicality", 0.6 + 0.4 * r / k);
    auto d = ClusterDensity(ctx.x, g.Members(cl), p.knn, cap, ctx.rng, ctx.pool);
    auto ta = d.density.accessor<float, 1>();
    int64_t best = -1;
    float bv = -1;
    for (size_t j = 0; j < d.rows.size(); ++j) {
      if (!used[d.rows[j]] && ta[j] > bv) {
        bv = ta[j];
        best = d.rows[j];
      }
    }
    if (best < 0) continue;
    used[best] = 1;
    picks.push_back({best, cl, bv});
  }
  return picks;
}

}  // namespace updp::select
