#include "server/select/registry.h"

#include <cstring>
#include <iterator>

#include "server/select/activeft.h"
#include "server/select/kcenter.h"
#include "server/select/kmeans.h"
#include "server/select/probcover.h"
#include "server/select/random.h"
#include "server/select/typiclust.h"
#include "server/select/updp_rule.h"
#include "server/select/usl.h"

namespace updp::select {
namespace {

// Position i implements StrategyNameList()[i] (checked by the registry test, which
// runs every name and compares with the strategy's own entry point).
constexpr StrategyFn kImplementations[] = {RunRandom, RunKMeans,   RunKCenter,   RunTypiClust,
                                           RunUsl,    RunActiveFt, RunProbCover, RunUpdp};

}  // namespace

const std::vector<StrategyEntry>& Registry() {
  static const std::vector<StrategyEntry> kRegistry = [] {
    const auto& names = StrategyNameList();
    if (names.size() != std::size(kImplementations)) std::abort();  // a programming error
    std::vector<StrategyEntry> r;
    for (size_t i = 0; i < names.size(); ++i) r.push_back({&names[i], kImplementations[i]});
    return r;
  }();
  return kRegistry;
}

StrategyFn FindStrategy(const std::string& name) {
  for (const auto& e : Registry()) {
    if (name == e.name->name) return e.run;
  }
  return nullptr;
}

}  // namespace updp::select
