// What every selection strategy receives and returns (server/select/registry.h
// lists the strategies; each lives in its own file with its own parameter struct).
#ifndef UPDP_SERVER_SELECT_STRATEGY_H_
#define UPDP_SERVER_SELECT_STRATEGY_H_

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "server/select/feature_source.h"
#include "server/select/thread_pool.h"

namespace updp::select {

struct Pick {
  int64_t index = 0;     // row of the feature source
  int64_t cluster = -1;  // cluster id where the strategy has clusters
  double score = 0.0;    // strategy-specific (higher = more representative/typical)
};

using ProgressFn = std::function<void(const std::string& phase, double fraction)>;
using CancelledFn = std::function<bool()>;
// Cluster probabilities [n, K] of a block of raw (unnormalised) feature rows: the
// learned prompt's cluster head for the updp strategy's cluster-head rule.
using ClusterFn = std::function<torch::Tensor(const torch::Tensor& rows)>;

struct SelectOptions;

// One selection run: the features (L2-normalised when the options ask), the rows
// never to pick, and the shared machinery. Strategies return at most `want`
// distinct, non-excluded rows; Select() tops the rest up at random.
struct StrategyContext {
  const FeatureSource& x;
  const SelectOptions& opt;
  int64_t want = 0;
  const std::vector<char>& excluded;  // [N], 1 = never to pick (labeled, or dedup's)
  const std::vector<char>& labeled;   // [N], 1 = already labeled (covered)
  int64_t n_labeled = 0;
  ThreadPool& pool;
  std::mt19937_64& rng;
  const ProgressFn& progress;
  const CancelledFn& cancelled;

  void Report(const std::string& phase, double f) const {
    if (progress) progress(phase, f);
  }
  bool Cancelled() const { return cancelled && cancelled(); }
};

}  // namespace updp::select

#endif  // UPDP_SERVER_SELECT_STRATEGY_H_
