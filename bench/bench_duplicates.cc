// updp-bench-duplicates: the near-duplicate search (FindSimilarPairs) and a dedup
// selection on synthetic features: N rows from 2,000 Gaussian clusters on the unit
// sphere (float16, as the server stores features), the last `dup_fraction` of them
// near copies of random earlier rows. Prints time, peak RSS, dot products against the
// N^2/2 of all pairs, and the recall against brute force for a sample of rows.
//
//   updp-bench-duplicates --n 1000000 --d 256 --threshold 0.95
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "bench/bench_util.h"
#include "server/select/duplicates.h"
#include "server/select/kernels.h"
#include "server/select/select.h"
#include "server/util/flags_help.h"
#include "server/util/openmp_env.h"

ABSL_FLAG(int64_t, n, 1000000, "rows");
ABSL_FLAG(int, d, 256, "feature dimension");
ABSL_FLAG(double, dup_fraction, 0.05, "share of rows that are near copies of earlier rows");
ABSL_FLAG(double, noise, 0.003, "per-dimension noise of a copy (before normalisation)");
ABSL_FLAG(double, threshold, 0.95, "cosine similarity threshold");
ABSL_FLAG(int, probes, 4, "cells probed per row");
ABSL_FLAG(int64_t, cells, 0, "cells (0 = sqrt(probes * N))");
ABSL_FLAG(int, recall_queries, 2000, "rows whose pairs are checked by brute force");
ABSL_FLAG(int64_t, budget, 1000, "budget of the dedup selection (0: skip it)");
ABSL_FLAG(std::string, strategy, "kmeans", "strategy of the dedup selection");
ABSL_FLAG(int, threads, 0, "selection pool and intra-op threads (0 = one per core)");

namespace {

using updp::select::SimilarPair;

torch::Tensor Unit(const torch::Tensor& x) {
  return torch::nn::functional::normalize(x, torch::nn::functional::NormalizeFuncOptions().dim(1));
}

torch::Tensor MakeData(int64_t n, int64_t d, int64_t dups, double noise) {
  torch::manual_seed(42);
  const int64_t k = 2000;
  torch::Tensor centres = Unit(torch::randn({k, d}));
  torch::Tensor out = torch::empty({n, d}, torch::kFloat16);
  const int64_t base = n - dups;
  for (int64_t b = 0; b < base; b += 65536) {
    const int64_t len = std::min<int64_t>(65536, base - b);
    torch::Tensor which = torch::randint(k, {len}, torch::kLong);
    out.narrow(0, b, len).copy_(
        Unit(centres.index_select(0, which) + 0.05 * torch::randn({len, d})));
  }
  for (int64_t b = base; b < n; b += 65536) {
    const int64_t len = std::min<int64_t>(65536, n - b);
    torch::Tensor src = torch::randint(base, {len}, torch::kLong);
    torch::Tensor x = out.index_select(0, src).to(torch::kFloat32);
    out.narrow(0, b, len).copy_(Unit(x + noise * torch::randn({len, d})));
  }
  return out;
}

bool Found(const std::vector<SimilarPair>& pairs, int64_t a, int64_t b) {
  const auto it = std::lower_bound(pairs.begin(), pairs.end(), std::make_pair(a, b),
                                   [](const SimilarPair& p, const std::pair<int64_t, int64_t>& k) {
                                     return p.a != k.first ? p.a < k.first : p.b < k.second;
                                   });
  return it != pairs.end() && it->a == a && it->b == b;
}

}  // namespace

int main(int argc, char** argv) {
  updp::PreferPassiveOpenMp(argv);
  updp::ShowOwnFlagsInHelp();
  absl::ParseCommandLine(argc, argv);
  const int threads = updp::bench::ThreadsOr(absl::GetFlag(FLAGS_threads));
  torch::set_num_threads(threads);
  torch::NoGradGuard no_grad;
  const int64_t n = absl::GetFlag(FLAGS_n);
  const int64_t d = absl::GetFlag(FLAGS_d);
  const int64_t dups = static_cast<int64_t>(absl::GetFlag(FLAGS_dup_fraction) * n);
  const double t = absl::GetFlag(FLAGS_threshold);
  auto t0 = std::chrono::steady_clock::now();
  const torch::Tensor x = MakeData(n, d, dups, absl::GetFlag(FLAGS_noise));
  std::printf("data: %lld x %lld float16, %lld planted copies, made in %.1f s, RSS %.0f MB\n",
              static_cast<long long>(n), static_cast<long long>(d), static_cast<long long>(dups),
              updp::bench::Since(t0), updp::bench::PeakMb());
  auto src = *updp::select::FeatureSource::FromTensor(x, /*normalize=*/true);
  updp::select::ThreadPool pool(threads);
  updp::select::DuplicateParameters p;
  p.threshold = t;
  p.probes = absl::GetFlag(FLAGS_probes);
  p.cells = absl::GetFlag(FLAGS_cells);
  updp::select::PairSearchStats st;
  t0 = std::chrono::steady_clock::now();
  auto pairs = updp::select::FindSimilarPairs(src, p, pool, nullptr, nullptr, &st);
  if (!pairs.ok()) {
    std::fprintf(stderr, "%s\n", std::string(pairs.status().message()).c_str());
    return 1;
  }
  const double search_s = updp::bench::Since(t0);
  const auto g = updp::select::GroupDuplicates(n, *pairs);
  std::printf(
      "search: %s, %lld cells, %d probes: %.1f s, %lld pairs >= %.3f, %zu groups; "
      "%.3g dot products = %.4f of all N^2/2; peak RSS %.0f MB\n",
      st.exact ? "exact" : "cells", static_cast<long long>(st.cells), st.probes, search_s,
      static_cast<long long>(pairs->size()), t, g.groups.size(), static_cast<double>(st.products),
      st.products / (0.5 * static_cast<double>(n) * n), updp::bench::PeakMb());
  // Recall: every pair of a sample of rows, by brute force over all rows.
  const int q = static_cast<int>(std::min<int64_t>(absl::GetFlag(FLAGS_recall_queries), n));
  std::mt19937_64 rng(9);
  std::vector<int64_t> qrows = updp::select::RandomSample(n, q, rng);
  // Half of the sample among the planted copies, where the pairs are.
  for (int i = 0; i < q / 2 && dups > 0; ++i) qrows[i] = n - 1 - static_cast<int64_t>(rng() % dups);
  std::sort(qrows.begin(), qrows.end());
  qrows.erase(std::unique(qrows.begin(), qrows.end()), qrows.end());
  t0 = std::chrono::steady_clock::now();
  const torch::Tensor qx = src.Gather(qrows, &pool);
  int64_t truth = 0, found = 0;
  for (const auto& [begin, len] : src.BlockRanges()) {
    const torch::Tensor hit = (qx.mm(src.Block(begin, len).t()) >= t - 1e-5).nonzero();
    const auto h = hit.accessor<int64_t, 2>();
    for (int64_t i = 0; i < hit.size(0); ++i) {
      const int64_t a = qrows[h[i][0]], b = begin + h[i][1];
      if (a == b) continue;
      ++truth;
      found += Found(*pairs, std::min(a, b), std::max(a, b));
    }
  }
  std::printf(
      "recall: %lld of %lld true pairs of %zu sampled rows found (%.4f); brute force %.1f s\n",
      static_cast<long long>(found), static_cast<long long>(truth), qrows.size(),
      truth ? static_cast<double>(found) / truth : 1.0, updp::bench::Since(t0));
  const int64_t budget = absl::GetFlag(FLAGS_budget);
  if (budget > 0) {
    for (double dedup : {0.0, t}) {
      updp::select::SelectOptions o;
      o.strategy = absl::GetFlag(FLAGS_strategy);
      o.budget = budget;
      o.seed = 1;
      o.dedup = p;
      o.dedup.threshold = dedup;
      updp::select::SelectReport rep;
      t0 = std::chrono::steady_clock::now();
      auto r = updp::select::Select(src, o, pool, nullptr, nullptr, &rep);
      if (!r.ok()) {
        std::fprintf(stderr, "%s\n", std::string(r.status().message()).c_str());
        return 1;
      }
      std::printf(
          "select %s B=%lld dedup=%.3f: %.1f s, %zu picks, %lld rows left out, %d round(s), "
          "%lld dropped; peak RSS %.0f MB\n",
          o.strategy.c_str(), static_cast<long long>(budget), dedup, updp::bench::Since(t0),
          r->size(), static_cast<long long>(rep.dedup_left_out), rep.dedup_rounds,
          static_cast<long long>(rep.dedup_dropped), updp::bench::PeakMb());
    }
  }
  return 0;
}
