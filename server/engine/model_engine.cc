// Model loading, embeddings import, prompt checks, job registration and the EMBED
// job body.
#include "server/engine/model_engine.h"

#include <chrono>
#include <filesystem>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "absl/strings/str_cat.h"
#include "server/engine/feature_io.h"
#include "server/engine/job_util.h"
#include "server/engine/model_load.h"
#include "server/model/blip2_model.h"
#include "server/model/encoder.h"
#include "server/model/feature_import.h"
#include "server/model/npy.h"
#include "server/model/safetensors.h"
#include "server/model/thumbnail.h"
#include "server/model/tokenizer.h"
#include "server/select/thread_pool.h"
#include "server/updp/prompt_learner.h"
#include "server/util/error_text.h"

#ifdef UPDP_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

namespace updp::engine {

namespace fs = std::filesystem;
using core::FailedItemRow;
using core::JobContext;
using core::Progress;
using nlohmann::json;

ModelEngine::ModelEngine(core::ServerCore* core) : core_(core) {
  const int threads = core_->options().cpu_threads;
  if (threads > 0) torch::set_num_threads(threads);
  select_pool_ = std::make_unique<select::ThreadPool>(threads);
}

ModelEngine::~ModelEngine() = default;

absl::Status ModelEngine::NeedModel() const {
  if (!Ready() || !model_) return absl::FailedPreconditionError("no BLIP-2 model is loaded");
  return absl::OkStatus();
}

namespace {

ModelSettings ModelSettingsOf(const core::ServerOptions& o) {
  ModelSettings s;
  s.model_dir = o.model_dir;
  s.device = o.device;
  s.precision = o.precision;
  s.attention = o.attention;
  s.qformer_precision = o.qformer_precision;
  s.fused_gelu = o.fused_gelu;
  s.cuda_graphs = o.cuda_graphs;
  s.decode_threads = o.decode_threads;
  return s;
}

}  // namespace

absl::Status ModelEngine::LoadModel() {
  const core::ServerOptions& o = core_->options();
  if (o.model_dir.empty() || Ready()) return absl::OkStatus();
  auto loaded = LoadModelAndEncoder(ModelSettingsOf(o));
  if (!loaded.ok()) return loaded.status();
  auto tok = model::BertTokenizer::FromVocabFile(o.model_dir + "/vocab.txt");
  if (!tok.ok()) return tok.status();
  model_ = std::move(loaded->model);
  encoder_ = std::move(loaded->encoder);
  tokenizer_ = std::make_shared<model::BertTokenizer>(std::move(*tok));
  [[maybe_unused]] const torch::Device device = loaded->device;
  if (core::Metrics* metrics = core_->metrics()) {
    metrics->SetModelInfo("blip2-itm", model_->identity(), o.device,
                          model::DtypeToString(loaded->vision_dtype));
    metrics->model_loaded->Set(1);
#ifdef UPDP_WITH_CUDA
    if (device.is_cuda()) {
      const auto index = device.index() < 0 ? 0 : device.index();
      metrics->SetDeviceRefresh([index](core::Metrics& m) {
        // Index 0 of each stat array is the aggregate over pool types in every
        // LibTorch version.
        auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(index);
        m.device_memory_allocated->Set(static_cast<double>(stats.allocated_bytes[0].current));
        m.device_memory_reserved->Set(static_cast<double>(stats.reserved_bytes[0].current));
        m.device_memory_peak_allocated->Set(static_cast<double>(stats.allocated_bytes[0].peak));
        m.device_memory_peak_reserved->Set(static_cast<double>(stats.reserved_bytes[0].peak));
      });
    }
#endif
  }
  ready_.store(true, std::memory_order_release);
  return absl::OkStatus();
}

void ModelEngine::RegisterJobs(core::JobManager& jobs) {
  jobs.RegisterKind(core::JobKind::kEmbed, core::Lane::kDevice,
                    [this](JobContext& ctx) { return RunEmbed(ctx); });
  jobs.RegisterKind(core::JobKind::kLearnPrompt, core::Lane::kDevice,
                    [this](JobContext& ctx) { return RunLearnPrompt(ctx); });
  // SELECT runs on the CPU pool, except the updp strategy, which extracts prompted
  // features with the model and so runs on the device executor.
  jobs.RegisterKind(
      core::JobKind::kSelect,
      [](const core::JobInfo& j) {
        const auto* p = std::get_if<core::SelectParams>(&j.params);
        return p && p->strategy == "updp" ? core::Lane::kDevice : core::Lane::kCpu;
      },
      [this](JobContext& ctx) { return RunSelect(ctx); });
  jobs.RegisterKind(core::JobKind::kDuplicates, core::Lane::kCpu,
                    [this](JobContext& ctx) { return RunDuplicates(ctx); });
}

absl::StatusOr<core::PromptMeta> ModelEngine::CheckPrompt(const std::string& artifact) {
  if (!Ready()) {
    return absl::UnavailableError(
        "the BLIP-2 model is still loading; retry when health reports SERVING");
  }
  // Load reads the metadata, checks the model identity and validates every tensor.
  auto loaded = prompt::PromptModule::Load(artifact, *model_);
  if (!loaded.ok()) return CleanStatus(loaded.status());
  const prompt::PromptConfig& cfg = loaded->second;
  core::PromptMeta out;
  out.model_identity = model_->identity();
  out.num_context = cfg.num_context;
  out.num_clusters = cfg.num_clusters;
  out.config_json = cfg.ToJson().dump();
  out.trained_on_dataset = cfg.trained_on_dataset;
  return out;
}

absl::StatusOr<std::string> ModelEngine::Thumbnail(const std::string& path, int max_side) {
  auto t = model::MakeThumbnail(path, max_side);
  if (!t.ok()) return t.status();
  return std::move(t->jpeg);
}

absl::StatusOr<std::vector<core::FeatureChunk>> ModelEngine::ImportEmbeddings(
    const std::string& npy, const std::string& dir, int64_t expected_rows,
    const ImportProgress& progress) {
  const auto bad_input = [](const absl::Status& s) {
    const auto code =
        s.code() == absl::StatusCode::kNotFound ? s.code() : absl::StatusCode::kInvalidArgument;
    return absl::Status(code, absl::StrCat("embeddings.path: ", CleanErrorText(s.message())));
  };
  const auto count_mismatch = [&](int64_t rows) {
    return absl::InvalidArgumentError(absl::StrCat("embeddings.ids_path: has ", expected_rows,
                                                   " ids but the array has ", rows, " rows"));
  };
  // The ids are checked against the header before gigabytes are copied.
  auto h = model::ReadNpyHeader(npy);
  if (!h.ok()) return bad_input(h.status());
  if (expected_rows >= 0 && !h->shape.empty() && h->shape[0] != expected_rows) {
    return count_mismatch(h->shape[0]);
  }
  auto imported = model::ImportNpyFeatures(
      npy, core_->options().import_chunk_rows, [&](int64_t c) { return dir + "/" + ChunkName(c); },
      size_t{8} << 20, progress);
  if (!imported.ok()) {
    // Reading and checking the input is the caller's problem; writing the chunks is ours.
    const auto code = imported.status().code();
    if (code == absl::StatusCode::kInvalidArgument || code == absl::StatusCode::kNotFound ||
        code == absl::StatusCode::kDataLoss) {
      return bad_input(imported.status());
    }
    return imported.status();
  }
  if (expected_rows >= 0 && imported->rows != expected_rows) return count_mismatch(imported->rows);
  std::vector<core::FeatureChunk> chunks;
  for (const auto& c : imported->chunks) chunks.push_back({c.chunk, c.rows, c.path});
  return chunks;
}

absl::Status ModelEngine::RunEmbed(JobContext& ctx) {
  if (auto s = NeedModel(); !s.ok()) return s;
  const core::JobInfo& job = ctx.job();
  const auto& p = std::get<core::EmbedParams>(job.params);
  if (!p.attach_dir.empty()) return RunAttach(ctx);
  core::Store& store = core_->store();
  core::Metrics* metrics = core_->metrics();
  // Items are read one chunk (page) at a time: never the whole table.
  auto dataset = store.GetDataset(job.dataset);
  if (!dataset.ok()) return dataset.status();
  auto dir = core_->FeatureDir(job.dataset, core::kImageFeatures);
  if (!dir.ok()) return dir.status();
  const int64_t n = dataset->num_items;
  const int64_t chunk_size = std::max<int64_t>(1, p.chunk_size);
  const int64_t chunks = (n + chunk_size - 1) / chunk_size;
  auto existing = store.FeatureChunks(job.dataset, core::kImageFeatures);
  if (!existing.ok()) return existing.status();
  // A chunk is done when it accounts for all its items; one that a refresh added items
  // to keeps its stored rows and embeds only the rest.
  std::set<int64_t> done;
  std::map<int64_t, core::FeatureChunk> partial;
  for (const auto& c : *existing) {
    if (core::ChunkComplete(c, n, chunk_size)) {
      done.insert(c.chunk);
    } else if (c.end > c.chunk * chunk_size) {
      partial[c.chunk] = c;
    }
  }
  const auto start = std::chrono::steady_clock::now();
  int64_t computed = 0, processed = 0, failed_total = 0, embedded = 0, reused_rows = 0;
  Progress pr;
  pr.stage = "embed";
  pr.total = n;
  pr.done = std::min<int64_t>(n, static_cast<int64_t>(done.size()) * chunk_size);
  ctx.SetProgress(pr);
  for (int64_t c = 0; c < chunks; ++c) {
    if (done.count(c)) continue;
    if (ctx.Cancelled()) return core::JobStopped();
    const int64_t begin = c * chunk_size, end = std::min(n, begin + chunk_size);
    // What the chunk already holds (items [begin, from)), if it is one a refresh grew.
    int64_t from = begin;
    ChunkRows kept;
    if (auto it = partial.find(c); it != partial.end()) {
      auto rows = ReadChunkRows(it->second, it->second.end);
      if (rows.ok()) {
        kept = std::move(*rows);
        from = it->second.end;
      } else {  // unreadable: embedded again whole
        std::cerr << "updp-server: " << rows.status() << "; embedding chunk " << c << " again\n";
      }
    }
    auto page = store.ItemsRange(job.dataset, from, end);
    if (!page.ok()) return page.status();
    const std::vector<core::ItemRow>& items = *page;  // items[i] has idx from + i
    if (static_cast<int64_t>(items.size()) != end - from) {
      return absl::DataLossError(absl::StrCat("dataset '", job.dataset, "': items ", from, "..",
                                              end - 1, " are not all stored"));
    }
    std::vector<std::string> paths;
    for (const auto& it : items) paths.push_back(it.path);
    const int64_t base_done = pr.done;
    // Counted per batch (d items done, f of them failed, so far in this chunk). A chunk
    // that is cancelled half way is dropped and embedded again on resume, and counted
    // again: the counters count work done.
    int64_t counted_ok = 0, counted_failed = 0;
    auto enc = encoder_->EncodeAll(
        paths, p.batch_size, [&] { return ctx.Cancelled(); },
        [&](int64_t d, int64_t f) {
          if (metrics) {
            metrics->images_decoded->Increment(static_cast<double>(d - f - counted_ok));
            metrics->images_embedded->Increment(static_cast<double>(d - f - counted_ok));
            metrics->images_failed->Increment(static_cast<double>(f - counted_failed));
          }
          counted_ok = d - f;
          counted_failed = f;
          pr.done = base_done + d;
          pr.rate = (processed + d) / std::max(1e-9, Seconds(start));
          if (metrics) metrics->embedding_rate->Set(pr.rate);
          ctx.SetProgress(pr);
        });
    if (enc.cancelled) return core::JobStopped();  // the partial chunk is dropped
    std::vector<int64_t> index = kept.index;
    for (int i : enc.ok) index.push_back(from + i);
    std::vector<FailedItemRow> failed;
    for (auto& [i, err] : enc.errors) {
      failed.push_back({items[i].item_id, items[i].path, err});
    }
    if (!failed.empty()) {
      if (auto s = store.AddFailedItems(job.dataset, failed); !s.ok()) return s;
    }
    torch::Tensor features = enc.features;
    if (kept.features.defined() && kept.features.size(0) > 0) {
      features = enc.features.defined() && enc.features.size(0) > 0
                     ? torch::cat({kept.features, enc.features.to(torch::kCPU, torch::kFloat16)})
                     : kept.features;
    }
    auto path = WriteChunk(*dir, c, features, index);
    if (!path.ok()) return path.status();
    // The store row is the commit point: a chunk file without a row is rewritten.
    if (auto s = store.AddFeatureChunk(job.dataset, core::kImageFeatures,
                                       {c, static_cast<int64_t>(index.size()), *path, end});
        !s.ok()) {
      return s;
    }
    ++computed;
    processed += end - from;
    reused_rows += static_cast<int64_t>(kept.index.size());
    embedded += static_cast<int64_t>(enc.ok.size());
    failed_total += static_cast<int64_t>(failed.size());
    pr.done = base_done + (end - from);
    ctx.SetProgress(pr);  // a checkpoint: this chunk is committed
  }
  if (metrics) metrics->embedding_rate->Set(0);
  pr.done = n;
  pr.message = absl::StrCat(embedded, " embedded, ", failed_total, " failed in this run");
  ctx.SetProgress(pr);
  ctx.SetResult(json{{"chunks_total", chunks},
                     {"chunks_computed", computed},
                     {"chunks_reused", chunks - computed},
                     {"embedded_this_run", embedded},
                     {"failed_this_run", failed_total},
                     {"rows_kept", reused_rows},
                     {"seconds", Seconds(start)}}
                    .dump());
  return absl::OkStatus();
}

}  // namespace updp::engine
