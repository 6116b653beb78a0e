#include "server/select/updp_rule.h"

#include "server/select/kmeans.h"
#include "server/select/select.h"

namespace updp::select {

std::vector<Pick> RunUpdp(const StrategyContext& ctx) {
  const auto& p = ctx.opt.updp;
  if (p.rule != "cluster-head" || !p.cluster) return RunKMeans(ctx);
  ctx.Report("cluster-head", 0.0);
  // The cluster head reads the features as stored (not normalised).
  const FeatureSource raw = ctx.x.WithNormalize(false);
  std::vector<int64_t> top;
  std::vector<float> conf;
  bool stopped = false;
  raw.ForEachBlock([&](int64_t begin, const torch::Tensor& b) {
    if (ctx.Cancelled()) {
      stopped = true;
      return false;
    }
    torch::NoGradGuard g;
    const torch::Tensor prob = p.cluster(b).to(torch::kCPU, torch::kFloat32);
    if (top.empty()) {
      top.assign(prob.size(1), -1);
      conf.assign(prob.size(1), 0.0f);
    }
    auto best = prob.max(1);
    const torch::Tensor cv = std::get<0>(best).contiguous(), cl = std::get<1>(best).contiguous();
    const float* ca = cv.data_ptr<float>();
    const int64_t* la = cl.data_ptr<int64_t>();
    for (int64_t r = 0; r < b.size(0); ++r) {
      const int64_t i = begin + r;
      if (ctx.excluded[i]) continue;
      if (top[la[r]] < 0 || ca[r] > conf[la[r]]) {
        top[la[r]] = i;
        conf[la[r]] = ca[r];
      }
    }
    return true;
  });
  if (stopped) return {};
  std::vector<Pick> picks;
  for (int64_t c = 0;
       c < static_cast<int64_t>(top.size()) && static_cast<int64_t>(picks.size()) < ctx.want; ++c) {
    if (top[c] >= 0) picks.push_back({top[c], c, conf[c]});
  }
  if (static_cast<int64_t>(picks.size()) >= ctx.want) return picks;
  // Fewer used clusters than the budget: k-means picks on the same features for the rest.
  std::vector<char> excluded(ctx.excluded);
  for (const auto& pk : picks) excluded[pk.index] = 1;
  StrategyContext rest{
      ctx.x,        ctx.opt,     ctx.want - static_cast<int64_t>(picks.size()),
      excluded,     ctx.labeled, ctx.n_labeled + static_cast<int64_t>(picks.size()),
      ctx.pool,     ctx.rng,     ctx.progress,
      ctx.cancelled};
  for (const auto& pk : RunKMeans(rest)) picks.push_back({pk.index, -1, pk.score});
  return picks;
}

}  // namespace updp::select
