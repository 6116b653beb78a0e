#include "server/select/usl.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <unordered_set>

#include "server/select/density.h"
#include "server/select/kernels.h"
#include "server/select/kmeans.h"
#include "server/select/select.h"

namespace updp::select {

std::vector<Pick> RunUsl(const StrategyContext& ctx) {
  const auto& o = ctx.opt.usl;
  const int64_t n = ctx.x.rows();
  ctx.Report("kmeans", 0.0);
  KMeansResult km =
      TrainKMeans(ctx.x, ctx.want, ctx.opt.kmeans, ctx.rng(), ctx.pool, ctx.cancelled);
  if (km.cancelled) return {};
  const int64_t k = km.centroids.size(0);
  ScanRequest req;
  req.assign = true;
  ScanResult s = NearestScan(ctx.x, km.centroids, req, ctx.pool, ctx.cancelled);
  if (s.cancelled) return {};
  const std::vector<int32_t>& a = s.assign;
  ctx.Report("density", 0.3);
  std::vector<float> rho(n, -std::numeric_limits<float>::infinity());
  if (n <= o.density_exact_max) {
    std::vector<int64_t> all(n);
    for (int64_t i = 0; i < n; ++i) all[i] = i;
    torch::Tensor xs = ctx.x.Gather(all, &ctx.pool);
    torch::Tensor d = 1.0 / (MeanKnnDistance(xs, xs, o.knn, /*self_included=*/true, ctx.pool) + 1e-8);
    std::copy(d.data_ptr<float>(), d.data_ptr<float>() + n, rho.begin());
  } else {
    const Groups g = GroupBy(a, k);
    const int64_t cap = CandidateCap(g, o.max_candidates_per_cluster, o.max_pairs);
    for (int64_t c = 0; c < k; ++c) {
      if (g.size(c) == 0) continue;
      if (ctx.Cancelled()) return {};
      auto r = ClusterDensity(ctx.x, g.Members(c), o.knn, cap, ctx.rng, ctx.pool);
      auto da = r.density.accessor<float, 1>();
      for (size_t j = 0; j < r.rows.size(); ++j) rho[r.rows[j]] = da[j];
    }
  }
  std::vector<int64_t> pick(k, -1);
  for (int64_t i = 0; i < n; ++i) {
    if (ctx.excluded[i]) continue;
    if (pick[a[i]] < 0 || rho[i] > rho[pick[a[i]]]) pick[a[i]] = i;
  }
  // Candidates of every cluster by decreasing density (ties: lower row first). A
  // row's value, density - lambda * regulariser, is at most its density, so a
  // cluster's scan stops at the first candidate whose density is below the best
  // value found: the result equals a pass over all rows, usually at a fraction of it.
  std::vector<int64_t> cand_offset(k + 1, 0), cand;
  {
    for (int64_t i = 0; i < n; ++i) {
      if (!ctx.excluded[i] && std::isfinite(rho[i])) ++cand_offset[a[i] + 1];
    }
    for (int64_t c = 0; c < k; ++c) cand_offset[c + 1] += cand_offset[c];
    cand.resize(cand_offset[k]);
    std::vector<int64_t> at(cand_offset.begin(), cand_offset.end() - 1);
    for (int64_t i = 0; i < n; ++i) {
      if (!ctx.excluded[i] && std::isfinite(rho[i])) cand[at[a[i]]++] = i;
    }
    for (int64_t c = 0; c < k; ++c) {
      std::sort(cand.begin() + cand_offset[c], cand.begin() + cand_offset[c + 1],
                [&](int64_t x, int64_t y) { return rho[x] > rho[y] || (rho[x] == rho[y] && x < y); });
    }
  }
  std::vector<double> score(k, 0.0);
  for (int it = 0; it < o.iterations; ++it) {
    ctx.Report("regularise", 0.6 + 0.3 * it / std::max(1, o.iterations));
    std::vector<int64_t> valid, rows;
    for (int64_t c = 0; c < k; ++c) {
      if (pick[c] >= 0) {
        valid.push_back(c);
        rows.push_back(pick[c]);
      }
    }
    const torch::Tensor p = ctx.x.Gather(rows);
    const torch::Tensor pp = p.pow(2).sum(1).unsqueeze(0);
    const torch::Tensor pt = p.t().contiguous();
    const int64_t np = static_cast<int64_t>(valid.size());
    const int64_t m = std::min<int64_t>(o.nearest_selected, np);
    std::vector<int64_t> next(pick), pos(cand_offset.begin(), cand_offset.end() - 1);
    std::vector<double> best(k, -std::numeric_limits<double>::infinity());
    std::vector<int64_t> open;
    for (int64_t c = 0; c < k; ++c) {
      if (cand_offset[c + 1] > cand_offset[c]) open.push_back(c);
    }
    int64_t per_cluster = o.prune ? 16 : n;
    while (!open.empty()) {
      if (ctx.Cancelled()) return {};
      std::vector<int64_t> batch;
      for (int64_t c : open) {
        const int64_t end = std::min(cand_offset[c + 1], pos[c] + per_cluster);
        for (; pos[c] < end; ++pos[c]) batch.push_back(cand[pos[c]]);
      }
      per_cluster = std::max<int64_t>(per_cluster, std::min<int64_t>(per_cluster * 2, 1024));
      const int64_t nb = static_cast<int64_t>(batch.size());
      std::vector<double> val(nb);
      for (int64_t b0 = 0; b0 < nb; b0 += FeatureSource::kBlockRows) {
        const int64_t len = std::min(FeatureSource::kBlockRows, nb - b0);
        const std::vector<int64_t> part(batch.begin() + b0, batch.begin() + b0 + len);
        const torch::Tensor xb = ctx.x.Gather(part, &ctx.pool);
        const torch::Tensor sq = torch::addmm(pp, xb, pt, 1.0, -2.0).add_(xb.pow(2).sum(1, true));
        const float* dp = sq.data_ptr<float>();
        ctx.pool.ParallelRanges(len, [&](int64_t lo, int64_t hi) {
          std::vector<float> tmp(np), near(m);
          for (int64_t r = lo; r < hi; ++r) {
            const int64_t i = part[r];
            // Squared distances to the picks of other clusters; the m nearest of them
            // enter the regulariser.
            int64_t cnt = 0;
            for (int64_t j = 0; j < np; ++j) {
              if (valid[j] != a[i]) tmp[cnt++] = dp[r * np + j];
            }
            const int64_t mm = std::min(m, cnt);
            SmallestK(tmp.data(), cnt, mm, near.data());
            double reg = 0;
            for (int64_t j = 0; j < mm; ++j) {
              const double dist =
                  std::max(1e-6, std::sqrt(std::max(0.0, static_cast<double>(near[j]))));
              reg += o.alpha == 1.0 ? 1.0 / dist : 1.0 / std::pow(dist, o.alpha);
            }
            val[b0 + r] = rho[i] - o.lambda * reg;
          }
        });
      }
      for (int64_t r = 0; r < nb; ++r) {  // the best value; ties keep the lower row
        const int64_t i = batch[r], c = a[i];
        if (val[r] > best[c] || (val[r] == best[c] && i < next[c])) {
          best[c] = val[r];
          next[c] = i;
        }
      }
      std::vector<int64_t> still;
      for (int64_t c : open) {
        if (pos[c] < cand_offset[c + 1] && rho[cand[pos[c]]] >= best[c]) still.push_back(c);
      }
      open.swap(still);
    }
    pick = next;
    score = best;
  }
  std::vector<Pick> picks;
  std::unordered_set<int64_t> seen;
  for (int64_t c = 0; c < k; ++c) {
    if (pick[c] >= 0 && seen.insert(pick[c]).second) picks.push_back({pick[c], c, score[c]});
  }
  return picks;
}

}  // namespace updp::select
