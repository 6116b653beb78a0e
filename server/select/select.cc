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
  const Grouping g = GroupDuplicates(n, pairs, &skip, /*keep_groups=*/false);
  int64_t left_out = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (!excluded[i] && (skip[i] || g.duplicate[i])) {
      excluded[i] = 1;
      ++left_out;
    }
  }
  return left_out;
}

// The picks (by rank) that are within `threshold` of a labeled row, then, among the
// others, the later of each pair of picks within it; computed exactly, block by block
// (memory O(block^2) whatever the budget). CANCELLED when `cancelled` fires.
absl::StatusOr<std::vector<size_t>> Violations(const FeatureSource& x,
                                               const std::vector<Pick>& picks,
                                               const std::vector<int64_t>& labeled_rows,
                                               double threshold, ThreadPool& pool,
                                               const CancelledFn& cancelled) {
  constexpr int64_t kRows = FeatureSource::kBlockRows;
  const FeatureSource xn = x.WithNormalize(true);
  const float t = static_cast<float>(threshold) - 1e-5f;  // as FindSimilarPairs
  const int64_t m = static_cast<int64_t>(picks.size());
  std::vector<int64_t> rows;
  for (const Pick& p : picks) rows.push_back(p.index);
  const auto block_of = [&](const std::vector<int64_t>& v, int64_t b) {
    return xn.Gather(
        std::vector<int64_t>(v.begin() + b, v.begin() + std::min<int64_t>(v.size(), b + kRows)),
        &pool);
  };
  std::vector<char> is_bad(m, 0);
  for (int64_t b = 0; b < m; b += kRows) {
    const torch::Tensor pb = block_of(rows, b);
    // Near a labeled row.
    for (int64_t l = 0; l < static_cast<int64_t>(labeled_rows.size()); l += kRows) {
      if (cancelled && cancelled()) return absl::CancelledError("selection cancelled");
      const torch::Tensor near = (pb.mm(block_of(labeled_rows, l).t()) >= t).any(1).contiguous();
      const bool* np = near.data_ptr<bool>();
      for (int64_t i = 0; i < pb.size(0); ++i) is_bad[b + i] |= np[i];
    }
    // Near an earlier pick that is not bad itself: earlier blocks are settled, so
    // theirs is one masked test; inside the block, row by row in rank order.
    for (int64_t e = 0; e <= b; e += kRows) {
      if (cancelled && cancelled()) return absl::CancelledError("selection cancelled");
      const torch::Tensor pe = e == b ? pb : block_of(rows, e);
      const torch::Tensor s = pb.mm(pe.t()).contiguous();
      if (e < b) {
        std::vector<char> ok(pe.size(0));
        for (int64_t j = 0; j < pe.size(0); ++j) ok[j] = !is_bad[e + j];
        const torch::Tensor mask =
            torch::from_blob(ok.data(), {1, pe.size(0)}, torch::kBool).clone();
        const torch::Tensor near = ((s >= t) & mask).any(1).contiguous();
        const bool* np = near.data_ptr<bool>();
        for (int64_t i = 0; i < pb.size(0); ++i) is_bad[b + i] |= np[i];
        continue;
      }
      const float* sp = s.data_ptr<float>();
      const int64_t n = pb.size(0);
      for (int64_t i = 0; i < n; ++i) {
        for (int64_t j = 0; j < i && !is_bad[b + i]; ++j) {
          if (!is_bad[b + j] && sp[i * n + j] >= t) is_bad[b + i] = 1;
        }
      }
    }
  }
  std::vector<size_t> bad;
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
  for (int64_t e : opt.excluded) {
    if (e < 0 || e >= n) {
      return absl::InvalidArgumentError(absl::StrCat("excluded: index ", e, " out of range"));
    }
  }
  if (std::min(opt.budget, n - n_labeled) <= 0) return std::vector<Pick>{};
  torch::NoGradGuard no_grad;
  const FeatureSource x = features.WithNormalize(opt.normalize);
  if (auto s = CheckFinite(x, &pool); !s.ok()) return s;
  SelectReport rep;
  std::vector<char> excluded(labeled);
  for (int64_t e : opt.excluded) excluded[e] = 1;
  std::vector<int64_t> labeled_rows;
  if (dedup) {
    DuplicateParameters dp = opt.dedup;
    dp.seed = opt.seed;
    dp.field = "dedup";
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
    auto checked = Violations(x, picks, labeled_rows, opt.dedup.threshold, pool, cancelled);
    if (!checked.ok()) return checked.status();
    const std::vector<size_t>& bad = *checked;
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
