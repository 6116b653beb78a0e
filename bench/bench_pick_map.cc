// updp-bench-pick-map: what the selection report adds to a SELECT job (the nearest-
// pick clusters and the 2-D PCA map, ComputePickMap), next to the selection itself, on
// synthetic float16 features (N rows around 1,000 Gaussian clusters on the sphere).
//
//   updp-bench-pick-map --n 100000 --d 256 --budget 1000 --strategy kmeans
#include <chrono>
#include <cstdio>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "bench/bench_util.h"
#include "server/select/pick_map.h"
#include "server/select/select.h"
#include "server/util/flags_help.h"
#include "server/util/openmp_env.h"

ABSL_FLAG(int64_t, n, 100000, "rows");
ABSL_FLAG(int, d, 256, "feature dimension");
ABSL_FLAG(int64_t, budget, 1000, "picks");
ABSL_FLAG(std::string, strategy, "kmeans", "strategy whose picks are mapped");
ABSL_FLAG(int, threads, 0, "selection pool and intra-op threads (0 = one per core)");

int main(int argc, char** argv) {
  updp::PreferPassiveOpenMp(argv);
  updp::ShowOwnFlagsInHelp();
  absl::ParseCommandLine(argc, argv);
  const int threads = updp::bench::ThreadsOr(absl::GetFlag(FLAGS_threads));
  torch::set_num_threads(threads);
  torch::NoGradGuard no_grad;
  const int64_t n = absl::GetFlag(FLAGS_n), d = absl::GetFlag(FLAGS_d);
  torch::manual_seed(42);
  const torch::Tensor centres = torch::randn({1000, d});
  const torch::Tensor x = (centres.index_select(0, torch::randint(1000, {n}, torch::kLong)) +
                           0.7 * torch::randn({n, d}))
                              .to(torch::kFloat16);
  auto src = *updp::select::FeatureSource::FromTensor(x, /*normalize=*/true);
  updp::select::ThreadPool pool(threads);
  updp::select::SelectOptions so;
  so.strategy = absl::GetFlag(FLAGS_strategy);
  so.budget = absl::GetFlag(FLAGS_budget);
  auto t0 = std::chrono::steady_clock::now();
  auto picks = updp::select::Select(src, so, pool);
  if (!picks.ok()) {
    std::fprintf(stderr, "select: %s\n", std::string(picks.status().message()).c_str());
    return 1;
  }
  const double select_s = updp::bench::Since(t0);
  const double rss_select = updp::bench::PeakMb();
  t0 = std::chrono::steady_clock::now();
  auto map = updp::select::ComputePickMap(src, *picks, {}, pool);
  if (!map.ok()) {
    std::fprintf(stderr, "map: %s\n", std::string(map.status().message()).c_str());
    return 1;
  }
  const double map_s = updp::bench::Since(t0);
  std::printf(
      "N=%lld D=%lld B=%lld %s, %d threads: select %.2f s (peak RSS %.0f MB); report map "
      "%.2f s (+%.1f%%), peak RSS %.0f MB; %zu clusters, %zu map points, PCA on %lld rows "
      "(explained %.3f, %.3f)\n",
      static_cast<long long>(n), static_cast<long long>(d), static_cast<long long>(so.budget),
      so.strategy.c_str(), threads, select_s, rss_select, map_s, 100.0 * map_s / select_s,
      updp::bench::PeakMb(), map->clusters.size(), map->points.size(),
      static_cast<long long>(map->sample_rows), map->explained[0], map->explained[1]);
  return 0;
}
