// Budgeted selection: the entry point. Validates the request, reads the features
// through a FeatureSource (streamed, never concatenated), runs the named strategy
// (registry.h) on a thread pool and returns exactly min(B, N - |labeled|) distinct
// rows, topped up at random when a strategy finds fewer.
#ifndef UPDP_SERVER_SELECT_SELECT_H_
#define UPDP_SERVER_SELECT_SELECT_H_

#include <torch/torch.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/select/activeft.h"
#include "server/select/feature_source.h"
#include "server/select/kcenter.h"
#include "server/select/kmeans.h"
#include "server/select/probcover.h"
#include "server/select/strategy.h"
#include "server/select/thread_pool.h"
#include "server/select/typiclust.h"
#include "server/select/updp_rule.h"
#include "server/select/usl.h"

namespace updp::select {

struct SelectOptions {
  std::string strategy = "kmeans";  // a name of names.h
  int64_t budget = 0;
  uint64_t seed = 0;
  std::vector<int64_t> labeled;  // rows already labeled: never picked
  bool normalize = true;         // cosine geometry on L2-normalised features
  KMeansParameters kmeans;       // also the clustering inside typiclust, usl, probcover
  KCenterParameters kcenter;
  TypiClustParameters typiclust;
  UslParameters usl;
  ActiveFtParameters activeft;
  ProbCoverParameters probcover;
  UpdpParameters updp;
};

// INVALID_ARGUMENT for an unknown strategy, budget <= 0, a labeled row out of range or
// a row holding NaN/Inf (named). CANCELLED when `cancelled` fires. The source's own
// normalisation setting is replaced by opt.normalize.
absl::StatusOr<std::vector<Pick>> Select(const FeatureSource& features, const SelectOptions& opt,
                                         ThreadPool& pool, const ProgressFn& progress = nullptr,
                                         const CancelledFn& cancelled = nullptr);
// The same on one in-memory [N, D] matrix, with a pool of all hardware threads
// (tools, tests).
absl::StatusOr<std::vector<Pick>> Select(const torch::Tensor& features, const SelectOptions& opt,
                                         const ProgressFn& progress = nullptr,
                                         const CancelledFn& cancelled = nullptr);

}  // namespace updp::select

#endif  // UPDP_SERVER_SELECT_SELECT_H_
