// updp-bench-select: time and peak memory of each selection strategy on synthetic
// clustered features (float16, L2-normalised), and k-means against FAISS with the
// same K, training sample and iteration count.
//
//   updp-bench-select --n 10000,100000,1000000 --d 256 --budgets 100,1000 \
//       --strategies random,kmeans,kcenter,typiclust,usl,activeft,probcover --faiss
//
// Each run happens in a forked child so its peak RSS (getrusage) is its own; the
// shared input matrix is counted in every child's figure.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_split.h"
#include "bench/bench_util.h"
#include "server/select/select.h"
#include "server/util/flags_help.h"
#include "server/util/openmp_env.h"
#ifdef UPDP_HAVE_FAISS
#include <faiss/Clustering.h>
#include <faiss/IndexFlat.h>
#endif

ABSL_FLAG(std::vector<std::string>, n, (std::vector<std::string>{"10000", "100000", "1000000"}),
          "dataset sizes");
ABSL_FLAG(int, d, 256, "feature dimension");
ABSL_FLAG(std::vector<std::string>, budgets, (std::vector<std::string>{"100", "1000"}), "budgets");
ABSL_FLAG(std::vector<std::string>, strategies,
          (std::vector<std::string>{"random", "kmeans", "kcenter", "typiclust", "usl", "activeft",
                                    "probcover"}),
          "strategies to run");
ABSL_FLAG(bool, phases, false, "print when each strategy phase starts (stderr)");
ABSL_FLAG(bool, faiss, true, "also run FAISS k-means with the same settings");
ABSL_FLAG(int, iterations, 10, "k-means iterations (updp and FAISS)");
ABSL_FLAG(int, points_per_centroid, 256, "k-means training sample per centroid");
ABSL_FLAG(int, repeat, 1, "kmeans/FAISS pairs to run (alternating) for the time ratio");
ABSL_FLAG(int, threads, 0, "selection pool and intra-op threads (0 = one per core)");

namespace {

struct Result {
  double seconds = -1;
  double peak_mb = -1;
  int picks = -1;
};

int g_threads = 1;

Result InChild(const std::function<int()>& fn) {
  int fds[2];
  if (pipe(fds) != 0) return {};
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    torch::set_num_threads(g_threads);
    auto t0 = std::chrono::steady_clock::now();
    int picks = fn();
    Result r;
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    r.peak_mb = updp::bench::PeakMb();
    r.picks = picks;
    (void)!write(fds[1], &r, sizeof(r));
    _exit(0);
  }
  close(fds[1]);
  Result r;
  if (read(fds[0], &r, sizeof(r)) != sizeof(r)) r = Result{};
  close(fds[0]);
  int st;
  waitpid(pid, &st, 0);
  return r;
}

// A mixture of 2000 Gaussian clusters on the unit sphere.
torch::Tensor MakeData(int64_t n, int64_t d) {
  torch::manual_seed(42);
  const int64_t k = 2000;
  torch::Tensor centres = torch::nn::functional::normalize(
      torch::randn({k, d}), torch::nn::functional::NormalizeFuncOptions().dim(1));
  torch::Tensor out = torch::empty({n, d}, torch::kFloat16);
  for (int64_t b = 0; b < n; b += 65536) {
    const int64_t len = std::min<int64_t>(65536, n - b);
    torch::Tensor which = torch::randint(k, {len}, torch::kLong);
    torch::Tensor x = centres.index_select(0, which) + 0.05 * torch::randn({len, d});
    out.narrow(0, b, len).copy_(
        torch::nn::functional::normalize(x, torch::nn::functional::NormalizeFuncOptions().dim(1)));
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  updp::PreferPassiveOpenMp(argv);  // before any OpenMP work; see openmp_env.h
  updp::ShowOwnFlagsInHelp();
  absl::ParseCommandLine(argc, argv);
  // GNU OpenMP is not fork-safe: a thread team made in this process hangs the forked
  // runs, so the parent stays single-threaded and each child sets its own count.
  torch::set_num_threads(1);
  const int threads = updp::bench::ThreadsOr(absl::GetFlag(FLAGS_threads));
  g_threads = std::max(threads, 1);
  const int d = absl::GetFlag(FLAGS_d);
  std::printf(
      "| N | B | strategy | seconds | peak RSS (MB) | picks |\n|---|---|---|---|---|---|\n");
  for (const auto& ns : absl::GetFlag(FLAGS_n)) {
    const int64_t n = std::stoll(ns);
    torch::Tensor x = MakeData(n, d);
    for (const auto& bs : absl::GetFlag(FLAGS_budgets)) {
      const int64_t b = std::stoll(bs);
      auto run_strategy = [&](const std::string& s) {
        return InChild([&] {
          updp::select::SelectOptions o;
          o.strategy = s;
          o.budget = b;
          o.seed = 1;
          o.kmeans.niter = absl::GetFlag(FLAGS_iterations);
          o.kmeans.max_points_per_centroid = absl::GetFlag(FLAGS_points_per_centroid);
          // The float16 matrix is read in place, block by block, as the server reads
          // its mapped chunk files.
          auto source = updp::select::FeatureSource::FromTensor(x, /*normalize=*/true);
          updp::select::ThreadPool pool(g_threads);
          const auto t0 = std::chrono::steady_clock::now();
          std::string last;
          auto phases = [&](const std::string& phase, double) {
            if (!absl::GetFlag(FLAGS_phases) || phase == last) return;
            last = phase;
            std::fprintf(
                stderr, "  %s %lld/%lld: %s at %.2f s\n", s.c_str(), static_cast<long long>(n),
                static_cast<long long>(b), phase.c_str(),
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
          };
          auto picks = updp::select::Select(*source, o, pool, phases);
          return picks.ok() ? static_cast<int>(picks->size()) : -1;
        });
      };
      auto print = [&](const std::string& name, const Result& r) {
        std::printf("| %lld | %lld | %s | %.2f | %.0f | %d |\n", static_cast<long long>(n),
                    static_cast<long long>(b), name.c_str(), r.seconds, r.peak_mb, r.picks);
        std::fflush(stdout);
      };
      const auto& names = absl::GetFlag(FLAGS_strategies);
      const bool with_kmeans = std::find(names.begin(), names.end(), "kmeans") != names.end();
#ifdef UPDP_HAVE_FAISS
      const bool paired = with_kmeans && absl::GetFlag(FLAGS_faiss);
#else
      const bool paired = false;
#endif
      for (const auto& s : names) {
        if (s == "kmeans" && paired) continue;  // run in pairs with FAISS below
        print(s, run_strategy(s));
      }
#ifdef UPDP_HAVE_FAISS
      if (paired) {
        auto run_faiss = [&] {
          return InChild([&] {
            // Same work as updp's kmeans: train on <= 256*K points, then one nearest-item
            // pass over all N (FAISS: assign every point to its centroid).
            torch::Tensor xf = x.to(torch::kFloat32).contiguous();
            faiss::ClusteringParameters cp;
            cp.niter = absl::GetFlag(FLAGS_iterations);
            cp.max_points_per_centroid = absl::GetFlag(FLAGS_points_per_centroid);
            cp.seed = 1;
            faiss::Clustering km(d, static_cast<int>(b), cp);
            faiss::IndexFlatL2 index(d);
            km.train(n, xf.data_ptr<float>(), index);
            std::vector<float> dist(n);
            std::vector<faiss::Index::idx_t> lab(n);
            index.search(n, xf.data_ptr<float>(), 1, dist.data(), lab.data());
            return static_cast<int>(b);
          });
        };
        // updp and FAISS alternate, so a change in the machine's load hits both; the
        // median of the per-pair ratios is the figure to compare with 1.0.
        std::vector<double> ratios;
        for (int rep = 0; rep < std::max(1, absl::GetFlag(FLAGS_repeat)); ++rep) {
          const Result u = run_strategy("kmeans");
          print("kmeans", u);
          const Result f = run_faiss();
          print("faiss-kmeans", f);
          if (u.seconds > 0 && f.seconds > 0) ratios.push_back(u.seconds / f.seconds);
        }
        if (!ratios.empty()) {
          std::sort(ratios.begin(), ratios.end());
          std::string all;
          for (double r : ratios) all += (all.empty() ? "" : ", ") + std::to_string(r).substr(0, 4);
          std::printf(
              "| %lld | %lld | kmeans / faiss time ratio, median of %zu pairs (%s) | %.2f | | |\n",
              static_cast<long long>(n), static_cast<long long>(b), ratios.size(), all.c_str(),
              ratios[ratios.size() / 2]);
          std::fflush(stdout);
        }
      }
#endif
    }
  }
  return 0;
}
