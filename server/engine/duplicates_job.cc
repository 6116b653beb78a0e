// The DUPLICATES job body: near-duplicate pairs of a feature source, grouped under
// representatives, stored like picks (rank order; group in `cluster`, similarity to
// the representative in `score`).
#include <chrono>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "server/engine/feature_io.h"
#include "server/engine/job_util.h"
#include "server/engine/model_engine.h"
#include "server/select/duplicates.h"
#include "server/select/kernels.h"
#include "server/select/thread_pool.h"

namespace updp::engine {

using core::JobContext;
using core::Progress;
using nlohmann::json;

absl::Status ModelEngine::RunDuplicates(JobContext& ctx) {
  const core::JobInfo& job = ctx.job();
  const auto& p = std::get<core::DuplicatesParams>(job.params);
  core::Store& store = core_->store();
  int64_t num_items = 0;
  auto opened = LoadFeatures(ctx, p.features, &num_items);
  if (!opened.ok()) return opened.status();
  const select::FeatureSource& x = opened->source;
  const std::vector<int64_t>& item_of_row = opened->item_of_row;
  if (auto s = select::CheckFinite(x, select_pool_.get()); !s.ok()) return s;
  const auto start = std::chrono::steady_clock::now();
  select::DuplicateParameters dp;
  dp.threshold = p.threshold;
  select::PairSearchStats st;
  auto pairs = select::FindSimilarPairs(
      x, dp, *select_pool_, [&] { return ctx.Cancelled(); },
      [&](const std::string& phase, double f) { ReportFraction(ctx, phase, f); }, &st);
  if (ctx.Cancelled()) return core::JobStopped();
  if (!pairs.ok()) return pairs.status();
  const select::Grouping g = select::GroupDuplicates(x.rows(), *pairs);
  // Item rows of the grouped items only, a page at a time.
  std::vector<core::SelectionRow> rows;
  constexpr size_t kPage = 10000;
  std::vector<int64_t> idx;
  std::vector<std::pair<int64_t, float>> meta;  // (group, similarity) per idx
  auto flush = [&]() -> absl::Status {
    auto items = store.ItemsAt(job.dataset, idx);
    if (!items.ok()) return items.status();
    for (size_t i = 0; i < idx.size(); ++i) {
      const core::ItemRow& it = (*items)[i];
      rows.push_back({static_cast<int64_t>(rows.size() + 1), it.idx, it.item_id, it.path,
                      meta[i].first, meta[i].second});
    }
    idx.clear();
    meta.clear();
    return absl::OkStatus();
  };
  for (size_t gi = 0; gi < g.groups.size(); ++gi) {
    const auto& grp = g.groups[gi];
    for (size_t k = 0; k < grp.rows.size(); ++k) {
      idx.push_back(item_of_row[grp.rows[k]]);
      meta.push_back({static_cast<int64_t>(gi), grp.similarities[k]});
    }
    if (idx.size() >= kPage) {
      if (auto s = flush(); !s.ok()) return s;
    }
  }
  if (auto s = flush(); !s.ok()) return s;
  if (auto s = store.SaveSelection(job.id, rows); !s.ok()) return s;
  int64_t duplicates = 0;
  for (char d : g.duplicate) duplicates += d;
  Progress done;
  done.stage = "done";
  done.done = done.total = static_cast<int64_t>(rows.size());
  ctx.SetProgress(done);
  ctx.SetResult(json{{"groups", g.groups.size()},
                     {"items", rows.size()},
                     // Items a deduplicated selection leaves out (all but representatives).
                     {"duplicates", duplicates},
                     {"pairs", pairs->size()},
                     {"threshold", p.threshold},
                     {"features", p.features},
                     {"rows", x.rows()},
                     {"search", st.exact ? "exact" : "cells"},
                     {"cells", st.cells},
                     {"probes", st.probes},
                     {"products", st.products},
                     {"seconds", Seconds(start)}}
                    .dump());
  return absl::OkStatus();
}

}  // namespace updp::engine
