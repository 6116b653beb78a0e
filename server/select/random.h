// Random: B rows drawn uniformly among the unlabeled ones (the baseline).
#ifndef UPDP_SERVER_SELECT_RANDOM_H_
#define UPDP_SERVER_SELECT_RANDOM_H_

#include <vector>

#include "server/select/strategy.h"

namespace updp::select {

// Memory: O(N) flags; reads no features.
std::vector<Pick> RunRandom(const StrategyContext& ctx);

}  // namespace updp::select

#endif  // UPDP_SERVER_SELECT_RANDOM_H_
