#include "server/select/probcover.h"

#include <unordered_set>

#include "server/select/kernels.h"
#include "server/select/kmeans.h"
#include "server/select/select.h"

namespace updp::select {

std::vector<Pick> RunProbCover(const StrategyContext& ctx) {
  const auto& o = ctx.opt.probcover;
  const int64_t n = ctx.x.rows();
  std::vector<int64_t> idx = RandomSample(n, std::min<int64_t>(n, o.max_points), ctx.rng);
  {
    std::unordered_set<int64_t> in(idx.begin(), idx.end());
    for (int64_t i = 0; i < n; ++i) {
      if (ctx.labeled[i] && !in.count(i)) idx.push_back(i);
    }
  }
  const int64_t m = static_cast<int64_t>(idx.size());
  const torch::Tensor xs = ctx.x.Gather(idx, &ctx.pool);
  const FeatureSource sample = *FeatureSource::FromTensor(xs, /*normalize=*/false);
  ctx.Report("delta", 0.0);
  // delta: the (1 - purity) quantile of the distance to the nearest point with another
  // pseudo-label (k-means, K = budget unless set).
  const int64_t pseudo = o.clusters > 0 ? o.clusters : ctx.want;
  KMeansResult km = TrainKMeans(sample, std::min<int64_t>(pseudo, m), ctx.opt.kmeans, ctx.rng(),
                                ctx.pool, ctx.cancelled);
  if (km.cancelled) return {};
  ScanRequest req;
  req.assign = true;
  ScanResult lab_scan = NearestScan(sample, km.centroids, req, ctx.pool);
  const torch::Tensor lab =
      torch::tensor(std::vector<int64_t>(lab_scan.assign.begin(), lab_scan.assign.end()));
  torch::Tensor other = torch::empty({m});
  for (int64_t b = 0; b < m; b += 4096) {
    const int64_t len = std::min<int64_t>(4096, m - b);
    torch::Tensor d = SqDist(xs.narrow(0, b, len), xs).sqrt_();
    d.masked_fill_(lab.narrow(0, b, len).unsqueeze(1).eq(lab.unsqueeze(0)), kInf);
    other.narrow(0, b, len).copy_(std::get<0>(d.min(1)));
  }
  torch::Tensor finite = other.masked_select(torch::isfinite(other));
  double delta = finite.numel() == 0 ? 1.0 : torch::quantile(finite, 1.0 - o.purity).item<double>();
  delta = std::max(delta, 1e-6);
  if (ctx.Cancelled()) return {};
  ctx.Report("graph", 0.4);
  std::vector<std::vector<int32_t>> adj(m);  // i -> points within delta (incl. itself)
  for (int64_t b = 0; b < m; b += 4096) {
    const int64_t len = std::min<int64_t>(4096, m - b);
    torch::Tensor d = SqDist(xs.narrow(0, b, len), xs);
    torch::Tensor nz = (d < delta * delta).nonzero();
    auto na = nz.accessor<int64_t, 2>();
    for (int64_t e = 0; e < nz.size(0); ++e) {
      adj[b + na[e][0]].push_back(static_cast<int32_t>(na[e][1]));
    }
  }
  std::vector<char> covered(m, 0);
  std::vector<int64_t> degree(m);
  for (int64_t i = 0; i < m; ++i) degree[i] = static_cast<int64_t>(adj[i].size());
  std::vector<std::vector<int32_t>> radj(m);  // reverse edges: degrees drop on cover
  for (int64_t i = 0; i < m; ++i) {
    for (int32_t j : adj[i]) radj[j].push_back(static_cast<int32_t>(i));
  }
  auto cover = [&](int64_t i) {
    for (int32_t j : adj[i]) {
      if (covered[j]) continue;
      covered[j] = 1;
      for (int32_t p : radj[j]) --degree[p];
    }
  };
  std::vector<char> used(m, 0);
  for (int64_t s = 0; s < m; ++s) {
    if (ctx.excluded[idx[s]]) used[s] = 1;  // never picked
    if (ctx.labeled[idx[s]]) cover(s);      // and covers its ball when labeled
  }
  std::vector<Pick> picks;
  while (static_cast<int64_t>(picks.size()) < ctx.want) {
    int64_t best = -1, bd = 0;
    for (int64_t i = 0; i < m; ++i) {
      if (!used[i] && degree[i] > bd) {
        bd = degree[i];
        best = i;
      }
    }
    if (best < 0) break;  // everything covered: Select() fills the rest at random
    used[best] = 1;
    picks.push_back({idx[best], static_cast<int64_t>(picks.size()), static_cast<double>(bd)});
    cover(best);
  }
  return picks;
}

}  // namespace updp::select
