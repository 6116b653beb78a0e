#include "server/select/random.h"

#include "server/select/kernels.h"

namespace updp::select {

std::vector<Pick> RunRandom(const StrategyContext& ctx) {
  std::vector<Pick> picks;
  FillRandom(picks, ctx.want, ctx.excluded, ctx.rng);
  return picks;
}

}  // namespace updp::select
