#include "server/select/select.h"

#include "absl/strings/str_cat.h"
#include "server/select/kernels.h"
#include "server/select/registry.h"
#include "server/util/error_text.h"

namespace updp::select {
namespace {

// Rows dedup leaves out: those near a labeled row, then every duplicate of a kept
// representative. Adds them to `excluded`; returns how many.
int64_t LeaveOutDuplicates(const std::vector<SimilarPair>& pairs, const std::vector<char>& labeled,
                           std::vector<char>& excluded) {
  const int64_t n = static_cast<int64_t>(excluded.size());
  std::vector<char> skip(labeled);
  for (const SimilarPair& p : pairs) {
    if (labeled[p.a]) skip[p.b] = 1;
    if (labeled[p.b]) skip[p.a] = 1;
  }
  const Grouping g = GroupDuplicates(n, pairs, &skip);
  int64_t left_out = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (!excluded[i] && (skip[i] || g.duplicate[i])) {
      excluded[i] = 1;
      ++left_out;
    }
  }
  return left_out;
}

// The picks (by rank) that are within `threshold` of an earlier pick or of a labeled
// row, computed exactly on the picks' rows.
std::vector<size_t> Violations(const FeatureSource& x, const std::vector<Pick>& picks,
                               const std::vector<int64_t>& labeled_rows, double threshold,
                               ThreadPool& pool) {
  std::vector<size_t> bad;
  if (picks.empty()) return bad;
  std::vector<int64_t> rows;
  for (const Pick& p : picks) rows.push_back(p.index);
  const FeatureSource xn = x.WithNormalize(true);
  const torch::Tensor pr = xn.Gather(rows, &pool);
  const float t = static_cast<float>(threshold) - 1e-5f;  // as FindSimilarPairs
  const int64_t m = static_cast<int64_t>(picks.size());
  std::vector<char> is_bad(m, 0);
  constexpr int64_t kRows = FeatureSource::kBlockRows;
  for (size_t l0 = 0; l0 < labeled_rows.size(); l0 += kRows) {
    const std::vector<int64_t> lr(labeled_rows.begin() + l0,
                                  labeled_rows.begin() + std::min(labeled_rows.size(), l0 + kRows));
    const torch::Tensor near = (pr.mm(xn.Gather(lr, &pool).t()) >= t).any(1).contiguous();
    const bool* np = near.data_ptr<bool>();
    for (int64_t i = 0; i < m; ++i) is_bad[i] |= np[i];
  }
  // Then among the picks left: the later of each close pair, so that the picks that
  // are not bad are pairwise apart.
  const torch::Tensor pp = pr.mm(pr.t()).contiguous();
  const float* s = pp.data_ptr<float>();
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < i && !is_bad[i]; ++j) {
      if (!is_bad[j] && s[i * m + j] >= t) is_bad[i] = 1;
    }
  }
  for (int64_t i = 0; i < m; ++i) {
    if (is_bad[i]) bad.push_back(static_cast<size_t>(i));
  }
  return bad;
}

}  // namespace

absl::StatusOr<std::vector<Pick>> Select(const FeatureSource& features, const SelectOptions& opt,
                                         ThreadPool& pool, const ProgressFn& progress,
                                         const CancelledFn& cancelled, SelectReport* report) {
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
  const bool dedup = opt.dedup.threshold != 0;
  if (dedup && !(opt.dedup.threshold > 0 && opt.dedup.threshold <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("dedup: ", opt.dedup.threshold, " is not a cosine similarity in (0, 1]"));
  }
  const int64_t n = features.rows();
  std::vector<char> labeled(n, 0);
  int64_t n_labeled = 0;
  for (int64_t l : opt.labeled) {
    if (l < 0 || l >= n) {
      return absl::InvalidArgumentError(absl::StrCat("labeled: index ", l, " out of range"));
    }
    if (!labeled[l]) ++n_labeled;
    labeled[l] = 1;
  }
  if (std::min(opt.budget, n - n_labeled) <= 0) return std::vector<Pick>{};
  torch::NoGradGuard no_grad;
  const FeatureSource x = features.WithNormalize(opt.normalize);
  if (auto s = CheckFinite(x, &pool); !s.ok()) return s;
  SelectReport rep;
  std::vector<char> excluded(labeled);
  std::vector<int64_t> labeled_rows;
  if (dedup) {
    DuplicateParameters dp = opt.dedup;
    dp.seed = opt.seed;
    auto pairs = FindSimilarPairs(
        x, dp, pool, cancelled,
        [&](const std::string& phase, double f) {
          if (progress) progress("dedup-" + phase, f);
        },
        &rep.dedup_search);
    if (!pairs.ok()) return pairs.status();
    rep.dedup_pairs = static_cast<int64_t>(pairs->size());
    rep.dedup_left_out = LeaveOutDuplicates(*pairs, labeled, excluded);
    for (int64_t i = 0; i < n; ++i) {
      if (labeled[i]) labeled_rows.push_back(i);
    }
  }
  const int rounds = dedup ? std::max(1, opt.dedup_rounds) : 1;
  std::vector<Pick> picks;
  for (int round = 1; round <= rounds; ++round) {
    int64_t candidates = 0;
    for (char e : excluded) candidates += !e;
    const int64_t want = std::min(opt.budget, candidates);
    std::mt19937_64 rng(opt.seed);
    StrategyContext ctx{x, opt, want, excluded, labeled, n_labeled, pool, rng, progress, cancelled};
    picks = want > 0 ? run(ctx) : std::vector<Pick>{};
    if (ctx.Cancelled()) return absl::CancelledError("selection cancelled");
    FillRandom(picks, want, excluded, rng);
    rep.dedup_rounds = dedup ? round : 0;
    if (!dedup) break;
    const std::vector<size_t> bad = Violations(x, picks, labeled_rows, opt.dedup.threshold, pool);
    if (bad.empty()) break;
    if (round == rounds) {  // give up re-running: drop the offenders
      std::vector<Pick> kept;
      size_t b = 0;
      for (size_t i = 0; i < picks.size(); ++i) {
        if (b < bad.size() && bad[b] == i) {
          ++b;
          continue;
        }
        kept.push_back(picks[i]);
      }
      rep.dedup_dropped = static_cast<int64_t>(picks.size() - kept.size());
      picks = std::move(kept);
      break;
    }
    for (size_t i : bad) {
      excluded[picks[i].index] = 1;
      ++rep.dedup_left_out;
    }
  }
  if (progress) progress("done", 1.0);
  if (report) *report = rep;
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
