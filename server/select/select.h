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
#include "server/select/duplicates.h"
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
  // Rows never picked that are not labeled either (they cover nothing): items whose
  // files are gone, or items outside the candidates asked for (only the new ones).
  std::vector<int64_t> excluded;
  bool normalize = true;         // cosine geometry on L2-normalised features
  KMeansParameters kmeans;       // also the clustering inside typiclust, usl, probcover
  KCenterParameters kcenter;
  TypiClustParameters typiclust;
  UslParameters usl;
  ActiveFtParameters activeft;
  ProbCoverParameters probcover;
  UpdpParameters updp;
  // dedup.threshold > 0: no two picks, nor a pick and a labeled row, have cosine
  // similarity >= the threshold. Rows near a labeled row are left out, then each group
  // of near-duplicates is represented by its first row (GroupDuplicates); the picks
  // are then checked exactly, and should a pair have escaped the cell search, the
  // later pick is left out and the strategy runs again (at most dedup_rounds times;
  // after that, the offending picks are dropped).
  DuplicateParameters dedup;
  int dedup_rounds = 4;
};

// What a selection did besides picking (for the job's result).
struct SelectReport {
  int64_t dedup_pairs = 0;     // near-duplicate pairs found
  int64_t dedup_left_out = 0;  // rows never picked because of them
  int dedup_rounds = 0;        // strategy runs (1 = the pairs were complete)
  int64_t dedup_dropped = 0;   // picks dropped after the last round
  PairSearchStats dedup_search;
};

// INVALID_ARGUMENT for an unknown strategy, budget <= 0, a labeled row out of range or
// a row holding NaN/Inf (named). CANCELLED when `cancelled` fires. The source's own
// normalisation setting is replaced by opt.normalize.
absl::StatusOr<std::vector<Pick>> Select(const FeatureSource& features, const SelectOptions& opt,
                                         ThreadPool& pool, const ProgressFn& progress = nullptr,
                                         const CancelledFn& cancelled = nullptr,
                                         SelectReport* report = nullptr);
// The same on one in-memory [N, D] matrix, with a pool of all hardware threads
// (tools, tests).
absl::StatusOr<std::vector<Pick>> Select(const torch::Tensor& features, const SelectOptions& opt,
                                         const ProgressFn& progress = nullptr,
                                         const CancelledFn& cancelled = nullptr);

}  // namespace updp::select

#endif  // UPDP_SERVER_SELECT_SELECT_H_
