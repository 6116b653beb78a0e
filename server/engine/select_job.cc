// The SELECT job body (and the prompted-feature extraction the updp strategy needs).
#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "absl/strings/str_cat.h"
#include "server/core/selection_report.h"
#include "server/engine/feature_io.h"
#include "server/engine/job_util.h"
#include "server/engine/model_engine.h"
#include "server/model/blip2_model.h"
#include "server/model/encoder.h"
#include "server/select/pick_map.h"
#include "server/select/select.h"
#include "server/select/thread_pool.h"
#include "server/updp/prompt_learner.h"
#include "server/util/atomic_file.h"

namespace updp::engine {

using core::FailedItemRow;
using core::JobContext;
using core::Progress;
using nlohmann::json;

namespace {

// A stored prompt, loaded against (and checked for compatibility with) the model.
absl::StatusOr<prompt::PromptModule> LoadStoredPrompt(core::ServerCore& core,
                                                      const model::Blip2Model& m,
                                                      const std::string& name) {
  auto artifact = core.PromptArtifact(name);
  if (!artifact.ok()) return artifact.status();
  auto loaded = prompt::PromptModule::Load(*artifact, m);
  if (!loaded.ok()) return loaded.status();
  return std::move(loaded->first);
}

// The report's clusters and 2-D map (pick_map.h) as the job's report.json, rows
// turned into item indexes: what GetSelectionReport serves.
json MapJson(const select::PickMap& m, const std::vector<int64_t>& item_of_row) {
  json clusters = json::array();
  for (const auto& c : m.clusters) clusters.push_back({c.id, c.size, c.picks});
  std::vector<float> xs, ys;
  std::vector<int64_t> items, ranks, cl;
  for (const auto& p : m.points) {
    xs.push_back(p.x);
    ys.push_back(p.y);
    items.push_back(item_of_row[p.row]);
    ranks.push_back(p.pick + 1);  // 0: not a pick
    cl.push_back(p.cluster);
  }
  return json{
      {"version", 1},
      {"rule", "nearest-pick"},
      {"sample_rows", m.sample_rows},
      {"explained", {m.explained[0], m.explained[1]}},
      {"clusters", clusters},
      {"pick_cluster", m.pick_cluster},
      {"points", {{"x", xs}, {"y", ys}, {"item", items}, {"rank", ranks}, {"cluster", cl}}}};
}

// The feature rows of the items at `idx` (failed items have no row), ascending.
std::vector<int64_t> RowsOfItems(const std::vector<int64_t>& idx, int64_t num_items,
                                 const std::vector<int64_t>& item_of_row) {
  std::vector<int64_t> rows;
  if (idx.empty()) return rows;
  std::vector<char> wanted(num_items, 0);
  for (int64_t i : idx) {
    if (i >= 0 && i < num_items) wanted[i] = 1;
  }
  for (size_t r = 0; r < item_of_row.size(); ++r) {
    if (wanted[item_of_row[r]]) rows.push_back(static_cast<int64_t>(r));
  }
  return rows;
}

}  // namespace

absl::Status ModelEngine::ExtractPromptFeatures(JobContext& ctx, const std::string& dataset,
                                                const std::string& prompt,
                                                const prompt::PromptModule& mod) {
  core::Store& store = core_->store();
  const std::string source = core::PromptFeatures(prompt);
  auto prompt_dir = core_->FeatureDir(dataset, source);
  if (!prompt_dir.ok()) return prompt_dir.status();
  auto image_dir = core_->FeatureDir(dataset, core::kImageFeatures);
  if (!image_dir.ok()) return image_dir.status();
  auto info = store.GetDataset(dataset);
  if (!info.ok()) return info.status();
  const int64_t n = info->num_items, cs = std::max<int64_t>(1, info->chunk_size);
  const int64_t chunks = (n + cs - 1) / cs;
  // Complete chunks only: one a refresh added items to is extracted again, whole.
  std::set<int64_t> have_prompt, have_image;
  auto pc = store.FeatureChunks(dataset, source);
  if (!pc.ok()) return pc.status();
  for (const auto& c : *pc) {
    if (core::ChunkComplete(c, n, cs)) have_prompt.insert(c.chunk);
  }
  auto ic = store.FeatureChunks(dataset, core::kImageFeatures);
  if (!ic.ok()) return ic.status();
  for (const auto& c : *ic) {
    if (core::ChunkComplete(c, n, cs)) have_image.insert(c.chunk);
  }
  Progress pr;
  pr.stage = "prompt-features";
  pr.total = n;
  const auto start = std::chrono::steady_clock::now();
  int64_t processed = 0;
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t begin = c * cs, end = std::min(n, begin + cs);
    if (have_prompt.count(c)) {
      pr.done = end;
      continue;
    }
    // The item rows of this chunk only (one page of the item table).
    auto page = store.ItemsRange(dataset, begin, end);
    if (!page.ok()) return page.status();
    const auto& chunk_items = *page;
    std::vector<torch::Tensor> joint, image;
    std::vector<int64_t> index;
    std::vector<FailedItemRow> failed;
    const int bs = core_->options().embed_batch_size;
    for (int64_t b = begin; b < end; b += bs) {
      if (ctx.Cancelled()) return core::JobStopped();
      std::vector<std::string> paths;
      for (int64_t i = b; i < std::min(end, b + bs); ++i)
        paths.push_back(chunk_items[i - begin].path);
      // One decode and one ViT pass feed both the image and the prompted features.
      model::PreparedBatch pb = encoder_->Prepare(paths);
      for (auto& [i, err] : pb.errors)
        failed.push_back(
            {chunk_items[b - begin + i].item_id, chunk_items[b - begin + i].path, err});
      for (int i : pb.ok) index.push_back(b + i);
      if (pb.ok.empty()) continue;
      torch::InferenceMode guard;
      torch::Tensor vit = model_->EncodeImage(pb.pixels);
      joint.push_back(mod.JointFeatures(*model_, vit).to(torch::kCPU));
      if (!have_image.count(c)) image.push_back(model_->ImageFeature(vit).to(torch::kCPU));
      processed += static_cast<int64_t>(paths.size());
      pr.done = b + static_cast<int64_t>(paths.size());
      pr.rate = processed / std::max(1e-9, Seconds(start));
      ctx.SetProgress(pr);
    }
    if (!failed.empty()) {
      if (auto s = store.AddFailedItems(dataset, failed); !s.ok()) return s;
    }
    auto cat = [](std::vector<torch::Tensor>& v, int64_t d) {
      return v.empty() ? torch::empty({0, d}) : torch::cat(v, 0);
    };
    if (!have_image.count(c)) {
      auto path =
          WriteChunk(*image_dir, c, cat(image, model_->config().image_text_hidden_size), index);
      if (!path.ok()) return path.status();
      if (auto s = store.AddFeatureChunk(dataset, core::kImageFeatures,
                                         {c, static_cast<int64_t>(index.size()), *path, end});
          !s.ok()) {
        return s;
      }
    }
    auto path = WriteChunk(*prompt_dir, c, cat(joint, 0), index);
    if (!path.ok()) return path.status();
    if (auto s = store.AddFeatureChunk(dataset, source,
                                       {c, static_cast<int64_t>(index.size()), *path, end});
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<OpenedFeatures> ModelEngine::LoadFeatures(JobContext& ctx, const std::string& source,
                                                         int64_t* num_items) {
  Progress pr;
  pr.stage = "load-features";
  ctx.SetProgress(pr);
  core::Store& store = core_->store();
  auto info = store.GetDataset(ctx.job().dataset);
  if (!info.ok()) return info.status();
  auto chunks = store.FeatureChunks(ctx.job().dataset, source);
  if (!chunks.ok()) return chunks.status();
  *num_items = info->num_items;
  // The chunk files are mapped and read in place, block by block.
  return OpenFeatures(*chunks, info->num_items);
}

absl::Status ModelEngine::RunSelect(JobContext& ctx) {
  const core::JobInfo& job = ctx.job();
  const auto& p = std::get<core::SelectParams>(job.params);
  core::Store& store = core_->store();
  // The updp strategy's prompt, read and checked once for both the feature pass and
  // the cluster-head rule.
  std::optional<prompt::PromptModule> mod;
  if (p.strategy == "updp") {
    if (auto s = NeedModel(); !s.ok()) return s;
    auto loaded = LoadStoredPrompt(*core_, *model_, p.prompt);
    if (!loaded.ok()) return loaded.status();
    mod.emplace(std::move(*loaded));
    auto s = ExtractPromptFeatures(ctx, job.dataset, p.prompt, *mod);
    if (!s.ok()) return ctx.Cancelled() ? core::JobStopped() : s;
  }
  int64_t num_items = 0;
  auto opened = LoadFeatures(ctx, p.features, &num_items);
  if (!opened.ok()) return opened.status();
  const select::FeatureSource& x = opened->source;
  const std::vector<int64_t>& item_of_row = opened->item_of_row;
  if (x.rows() == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("dataset: no item of '", job.dataset, "' has features (all ", num_items,
                     " are missing or failed to decode); there is nothing to select from"));
  }
  select::SelectOptions o;
  o.strategy = p.strategy;
  o.budget = p.budget;
  o.seed = p.seed;
  if (!p.labeled_ids.empty()) {
    auto found = store.FindItemIds(job.dataset, p.labeled_ids);
    if (!found.ok()) return found.status();
    std::vector<int64_t> idx;
    for (const auto& [id, i] : *found) idx.push_back(i);
    o.labeled = RowsOfItems(idx, num_items, item_of_row);
  }
  // Items never to pick: those whose files a refresh found gone, and with only_new those
  // added before the newest refresh. Not labeled: they cover nothing.
  auto excluded = store.ExcludedItems(job.dataset, p.min_generation);
  if (!excluded.ok()) return excluded.status();
  o.excluded = RowsOfItems(*excluded, num_items, item_of_row);
  o.dedup.threshold = p.dedup;
  if (p.strategy == "updp") {
    o.updp.rule = p.rule;
    if (p.rule == "cluster-head") {
      o.updp.cluster = [&](const torch::Tensor& rows) {
        return mod->Cluster(rows.to(model_->options().device, torch::kFloat32)).to(torch::kCPU);
      };
    }
  }
  const auto start = std::chrono::steady_clock::now();
  select::SelectReport report;
  auto r = select::Select(
      x, o, *select_pool_,
      [&](const std::string& phase, double f) { ReportFraction(ctx, phase, f); },
      [&] { return ctx.Cancelled(); }, &report);
  if (ctx.Cancelled()) return core::JobStopped();
  if (!r.ok()) return r.status();
  const std::vector<select::Pick>& picks = *r;
  const double secs = Seconds(start);
  if (core_->metrics()) core_->metrics()->SelectionFinished(p.strategy, secs);
  // The report's clusters and map, stored before the picks commit so that every
  // SUCCEEDED selection has them.
  ReportFraction(ctx, "report-map", 0);
  const auto map_start = std::chrono::steady_clock::now();
  select::PickMapOptions mo;
  mo.seed = p.seed;
  mo.normalize = o.normalize;
  auto map = select::ComputePickMap(x, picks, mo, *select_pool_, [&] { return ctx.Cancelled(); });
  if (ctx.Cancelled()) return core::JobStopped();
  if (!map.ok()) return map.status();
  auto job_dir = core_->JobDir(job.id);
  if (!job_dir.ok()) return job_dir.status();
  std::error_code ec;
  std::filesystem::create_directories(*job_dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", *job_dir, ": ", ec.message()));
  if (auto s = WriteFileAtomically(*job_dir + "/" + core::kSelectionMapFile,
                                   MapJson(*map, item_of_row).dump());
      !s.ok()) {
    return s;
  }
  const double map_secs = Seconds(map_start);
  // Item rows of the picks only (never the whole item table).
  std::vector<int64_t> pick_items;
  pick_items.reserve(picks.size());
  for (const auto& pk : picks) pick_items.push_back(item_of_row[pk.index]);
  auto items = store.ItemsAt(job.dataset, pick_items);
  if (!items.ok()) return items.status();
  std::vector<core::SelectionRow> rows;
  for (size_t i = 0; i < picks.size(); ++i) {
    const core::ItemRow& it = (*items)[i];
    rows.push_back({static_cast<int64_t>(i + 1), it.idx, it.item_id, it.path, picks[i].cluster,
                    picks[i].score});
  }
  if (auto s = store.SaveSelection(job.id, rows); !s.ok()) return s;
  Progress done;
  done.stage = "done";
  done.done = done.total = static_cast<int64_t>(rows.size());
  ctx.SetProgress(done);
  json result{{"picks", rows.size()},
              // Labeled items kept out of the picks (those with features), and the given ids
              // that were not items (ignored).
              {"labeled_excluded", o.labeled.size()},
              {"labeled_unknown", p.labeled_unknown},
              // Items (with features) that were no candidates: files gone at the last
              // refresh, and with only_new (min_generation > 0) older items.
              {"not_candidates", o.excluded.size()},
              {"min_generation", p.min_generation},
              {"features", p.features},
              {"rows", x.rows()},
              {"dim", x.dim()},
              {"seconds", secs},
              {"report_map_seconds", map_secs}};
  if (p.dedup > 0) {
    // Items dedup kept out of the picks (near a labeled item or a duplicate of an
    // item that could be picked), and the near-duplicate pairs it found.
    result["dedup"] = {{"threshold", p.dedup},
                       {"pairs", report.dedup_pairs},
                       {"left_out", report.dedup_left_out},
                       {"rounds", report.dedup_rounds},
                       {"dropped", report.dedup_dropped},
                       {"search", report.dedup_search.exact ? "exact" : "cells"}};
  }
  ctx.SetResult(result.dump());
  return absl::OkStatus();
}

}  // namespace updp::engine
