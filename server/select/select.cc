#include "server/select/select.h"

#include "absl/strings/str_cat.h"
#include "server/select/kernels.h"
#include "server/select/registry.h"
#include "server/util/error_text.h"

namespace updp::select {

absl::StatusOr<std::vector<Pick>> Select(const FeatureSource& features, const SelectOptions& opt,
                                         ThreadPool& pool, const ProgressFn& progress,
                                         const CancelledFn& cancelled) {
  const StrategyFn run = FindStrategy(opt.strategy);
  if (!run) {
    return absl::InvalidArgumentError(absl::StrCat("strategy: unknown strategy ",
                                                   Quote(opt.strategy), " (expected ",
                                                   StrategyNamesText(), ")"));
  }
  if (opt.budget <= 0) return absl::InvalidArgumentError("budget: must be > 0");
  if (opt.strategy == "updp" && opt.updp.rule == "cluster-head" && !opt.updp.cluster) {
    return absl::InvalidArgumentError("rule: cluster-head needs the prompt's cluster head");
  }
  const int64_t n = features.rows();
  std::vector<char> excluded(n, 0);
  int64_t n_labeled = 0;
  for (int64_t l : opt.labeled) {
    if (l < 0 || l >= n) {
      return absl::InvalidArgumentError(absl::StrCat("labeled: index ", l, " out of range"));
    }
    if (!excluded[l]) ++n_labeled;
    excluded[l] = 1;
  }
  const int64_t want = std::min(opt.budget, n - n_labeled);
  if (want <= 0) return std::vector<Pick>{};
  torch::NoGradGuard no_grad;
  const FeatureSource x = features.WithNormalize(opt.normalize);
  if (auto s = CheckFinite(x, &pool); !s.ok()) return s;
  std::mt19937_64 rng(opt.seed);
  StrategyContext ctx{x, opt, want, excluded, n_labeled, pool, rng, progress, cancelled};
  std::vector<Pick> picks = run(ctx);
  if (ctx.Cancelled()) return absl::CancelledError("selection cancelled");
  FillRandom(picks, want, excluded, rng);
  ctx.Report("done", 1.0);
  return picks;
}

absl::StatusOr<std::vector<Pick>> Select(const torch::Tensor& features, const SelectOptions& opt,
                                         const ProgressFn& progress, const CancelledFn& cancelled) {
  if (features.dim() != 2) return absl::InvalidArgumentError("features: expected a [N, D] matrix");
  auto source = FeatureSource::FromTensor(features, opt.normalize);
  if (!source.ok()) return source.status();
  ThreadPool pool(0);
  return Select(*source, opt, pool, progress, cancelled);
}

}  // namespace updp::select
