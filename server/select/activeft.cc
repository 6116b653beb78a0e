#include "server/select/activeft.h"

#include "server/select/kernels.h"
#include "server/select/select.h"

namespace updp::select {

std::pair<double, torch::Tensor> ActiveFtLossAndGrad(const torch::Tensor& theta,
                                                     const torch::Tensor& x, double tau) {
  torch::NoGradGuard no_grad;
  const torch::Tensor norm = theta.norm(2, 1, true).clamp_min(1e-12);
  const torch::Tensor t = theta / norm;
  // loss = -mean_r [ s_r - log(exp(s_r) + R_{c_r}) ], s_r = max_c x_r.t_c / tau,
  // R_c = sum_j exp(t_c.t_j / tau) (a constant for the gradient).
  const torch::Tensor sim = torch::mm(x, t.t());
  auto mx = sim.max(1);
  const torch::Tensor s = std::get<0>(mx) / tau;
  const torch::Tensor c_idx = std::get<1>(mx);
  const torch::Tensor rest = (torch::mm(t, t.t()) / tau).exp_().sum(1).index_select(0, c_idx);
  const torch::Tensor es = s.exp();
  const double b = static_cast<double>(x.size(0));
  const double loss = -(s - torch::log(es + rest)).mean().item<double>();
  // dL/ds_r = -(1/b) * R / (exp(s_r) + R); ds_r/dt_c = x_r / tau for c = c_r.
  const torch::Tensor coef = -(rest / (es + rest)) / (b * tau);
  const torch::Tensor gt = torch::zeros_like(t).index_add_(0, c_idx, x * coef.unsqueeze(1));
  // Through t = theta / |theta|: (g - t (t.g)) / |theta|.
  const torch::Tensor grad = (gt - t * (t * gt).sum(1, true)) / norm;
  return {loss, grad};
}

std::vector<Pick> RunActiveFt(const StrategyContext& ctx) {
  const auto& o = ctx.opt.activeft;
  const int64_t n = ctx.x.rows();
  auto init = RandomSample(n, ctx.want, ctx.rng);
  torch::Tensor theta = ctx.x.Gather(init, &ctx.pool).set_requires_grad(true);
  torch::optim::Adam adam({theta}, torch::optim::AdamOptions(o.lr));
  // All rows stay in memory when they fit one batch; else a fresh sample per step.
  torch::Tensor all;
  if (n <= o.batch) {
    std::vector<int64_t> rows(n);
    for (int64_t i = 0; i < n; ++i) rows[i] = i;
    all = ctx.x.Gather(rows, &ctx.pool);
  }
  std::uniform_int_distribution<int64_t> any(0, n - 1);
  for (int step = 0; step < o.steps; ++step) {
    if (step % 10 == 0) {
      if (ctx.Cancelled()) return {};
      ctx.Report("optimise", 0.9 * step / o.steps);
    }
    torch::Tensor batch = all;
    if (!all.defined()) {
      std::vector<int64_t> rows(o.batch);
      for (auto& r : rows) r = any(ctx.rng);
      batch = ctx.x.Gather(rows, &ctx.pool);
    }
    auto [loss, grad] = ActiveFtLossAndGrad(theta.detach(), batch, o.tau);
    theta.mutable_grad() = grad;
    adam.step();
  }
  torch::NoGradGuard no_grad;
  torch::Tensor t = theta.detach() / theta.detach().norm(2, 1, true).clamp_min(1e-12);
  ctx.Report("nearest", 0.9);
  ScanRequest req;
  req.top_per_centroid = 8;
  req.excluded = &ctx.excluded;
  ScanResult s = NearestScan(ctx.x, t, req, ctx.pool, ctx.cancelled);
  if (s.cancelled) return {};
  auto nearest = MatchDistinct(s.top);
  std::vector<Pick> picks;
  for (int64_t c = 0; c < static_cast<int64_t>(nearest.size()); ++c) {
    if (nearest[c].first >= 0) picks.push_back({nearest[c].first, c, 1.0 - nearest[c].second / 2});
  }
  return picks;
}

}  // namespace updp::select
