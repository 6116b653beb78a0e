// k-center greedy (core-set): repeatedly pick the row farthest from every picked or
// labeled row. Exact.
#ifndef UPDP_SERVER_SELECT_KCENTER_H_
#define UPDP_SERVER_SELECT_KCENTER_H_

#include <vector>

#include "server/select/strategy.h"

namespace updp::select {

struct KCenterParameters {
  // Lazy evaluation: every row keeps an upper bound of its distance to the nearest
  // centre (exact when it was last refreshed); only rows whose bound reaches the top
  // of a max-heap are refreshed against the centres added since. The pick is the
  // same as a full pass per pick, usually at a small fraction of its cost.
  bool lazy = true;
  // When one pick refreshes more than this fraction of the rows, all rows are
  // brought up to date in one parallel pass instead (bounds the worst case by the
  // cost of the plain algorithm).
  double max_refresh_fraction = 0.25;
};

struct KCenterStats {
  int64_t refreshed_rows = 0;  // row refreshes done lazily (each against its pending centres)
  int64_t full_passes = 0;
  int64_t row_centre_products = 0;  // distances computed in all (N * picks without laziness)
};

// Memory: O(N) scalars (bound, refresh mark, heap) + the picked centres.
std::vector<Pick> RunKCenter(const StrategyContext& ctx);
// Same, returning the work counters (for tests and the benchmark).
std::vector<Pick> RunKCenterWithStats(const StrategyContext& ctx, KCenterStats* stats);

}  // namespace updp::select

#endif  // UPDP_SERVER_SELECT_KCENTER_H_
