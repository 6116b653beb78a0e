// The LEARN_PROMPT job body: cache augmented ViT views in resumable chunks, train the
// prompt epoch by epoch with a checkpoint after each, store the artifact.
#include <chrono>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "server/engine/job_util.h"
#include "server/engine/model_engine.h"
#include "server/model/blip2_model.h"
#include "server/model/image_codec.h"
#include "server/model/image_preprocess.h"
#include "server/model/safetensors.h"
#include "server/model/tokenizer.h"
#include "server/updp/augment.h"
#include "server/updp/prompt_learner.h"
#include "server/util/remove_tree.h"

#ifdef UPDP_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace updp::engine {

namespace fs = std::filesystem;
using core::FailedItemRow;
using core::JobContext;
using core::Progress;
using nlohmann::json;

absl::Status ModelEngine::RunLearnPrompt(JobContext& ctx) {
  if (auto s = NeedModel(); !s.ok()) return s;
  const core::JobInfo& job = ctx.job();
  const auto& p = std::get<core::LearnPromptParams>(job.params);
  core::Store& store = core_->store();
  core::Metrics* metrics = core_->metrics();
  prompt::PromptConfig cfg;
  cfg.num_context = p.num_context;
  cfg.num_clusters = p.num_clusters;
  cfg.epochs = p.epochs;
  cfg.batch_size = p.batch_size;
  cfg.learning_rate = p.learning_rate;
  cfg.views = p.views;
  cfg.seed = p.seed;
  cfg.init_phrase = p.init_phrase;
  cfg.trained_on_dataset = job.dataset;
  const std::string& name = p.prompt_name;
  auto dir_or = core_->JobDir(job.id);
  if (!dir_or.ok()) return dir_or.status();
  // The view cache and the per-epoch checkpoints: kept while the job is resumable,
  // removed once the prompt is stored.
  const std::string dir = *dir_or;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create '", dir, "': ", ec.message()));

  // Training subset: a seeded sample capped by the view-cache memory budget.
  const auto& vc = model_->config().vision;
  const int64_t per_view = int64_t{vc.num_positions()} * vc.hidden_size * 2;  // bf16 bytes
  const int64_t cap_mem =
      std::max<int64_t>(2, core_->options().prompt_cache_bytes / (per_view * cfg.views));
  auto dataset = store.GetDataset(job.dataset);
  if (!dataset.ok()) return dataset.status();
  int64_t cap = std::min<int64_t>(dataset->num_items, cap_mem);
  const int64_t max_items = p.max_train_items;
  if (max_items > 0) cap = std::min(cap, max_items);
  // Item indices (idx) of the sample; their rows are read one view chunk at a time.
  std::vector<int64_t> order(dataset->num_items);
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(cfg.seed);
  std::shuffle(order.begin(), order.end(), rng);
  order.resize(cap);
  std::sort(order.begin(), order.end());

  // Cache V augmented ViT outputs per image, in resumable chunks.
  Progress pr;
  pr.stage = "cache-views";
  pr.total = cap;
  const int64_t cs = 256;
  const int size = vc.image_size;
  std::vector<torch::Tensor> cache_parts;
  for (int64_t c = 0; c * cs < cap; ++c) {
    const std::string path = absl::StrCat(dir, "/views_", c, ".safetensors");
    if (!fs::exists(path, ec)) {
      const int64_t first = c * cs;
      auto items = store.ItemsAt(
          job.dataset,
          std::vector<int64_t>(order.begin() + first, order.begin() + std::min(cap, first + cs)));
      if (!items.ok()) return items.status();
      std::vector<torch::Tensor> views;
      std::vector<FailedItemRow> failed;
      for (int64_t j = first; j < std::min(cap, first + cs); ++j) {
        if (ctx.Cancelled()) return core::JobStopped();
        const core::ItemRow& it = (*items)[j - first];
        auto img = model::DecodeImageFile(it.path);
        if (!img.ok()) {
          failed.push_back({it.item_id, it.path, std::string(img.status().message())});
          continue;
        }
        std::mt19937_64 arng(cfg.seed * 7919ull + static_cast<uint64_t>(it.idx));
        torch::Tensor px = torch::empty({cfg.views, 3, size, size});
        for (int v = 0; v < cfg.views; ++v) {
          auto aug = prompt::Augment(*img, size, prompt::AugmentOptions(), arng);
          auto f = model::PreprocessForBlip2(aug, size);
          px[v].copy_(torch::from_blob(f.data(), {3, size, size}));
        }
        torch::InferenceMode guard;
        views.push_back(model_->EncodeImage(px).to(torch::kCPU, torch::kBFloat16).unsqueeze(0));
        pr.done = j + 1;
        ctx.SetProgress(pr);
      }
      if (!failed.empty()) {
        if (auto s = store.AddFailedItems(job.dataset, failed); !s.ok()) return s;
      }
      torch::Tensor part =
          views.empty()
              ? torch::empty({0, cfg.views, vc.num_positions(), vc.hidden_size}, torch::kBFloat16)
              : torch::cat(views, 0);
      if (auto s = model::WriteSafetensors(path, {{"views", part}}); !s.ok()) return s;
    }
    auto f = model::SafetensorsFile::Open(path);
    if (!f.ok()) return f.status();
    // The chunk files stay on disk, memory-mapped: training reads them without a copy.
    auto v = model::SafetensorsFile::MapTensor(
        std::shared_ptr<const model::SafetensorsFile>(std::move(*f)), "views");
    if (!v.ok()) return v.status();
    cache_parts.push_back(*v);
  }
  int64_t cached = 0;
  for (const auto& part : cache_parts) cached += part.size(0);
  if (cached < 2) {
    return absl::FailedPreconditionError(
        "dataset: fewer than 2 decodable images to learn a prompt from");
  }
  // On CUDA the cache goes to the device in one piece when it fits in 80 % of the free
  // device memory; otherwise (and on the CPU) batches are read from the memory-mapped
  // chunk files.
  bool on_device = false;
#ifdef UPDP_WITH_CUDA
  if (model_->options().device.is_cuda()) {
    size_t free_bytes = 0, total_bytes = 0;
    if (cudaMemGetInfo(&free_bytes, &total_bytes) == cudaSuccess) {
      on_device = static_cast<double>(cached) * per_view * cfg.views < 0.8 * free_bytes;
    }
  }
#endif
  prompt::ViewCache cache =
      on_device ? prompt::ViewCache(torch::cat(cache_parts, 0).to(model_->options().device))
                : prompt::ViewCache(cache_parts);

  prompt::PromptTrainer trainer(*model_, prompt::PromptModule::Create(*model_, *tokenizer_, cfg),
                                cfg);
  if (fs::exists(dir + "/checkpoint.safetensors", ec)) {
    if (auto s = trainer.LoadCheckpoint(dir); !s.ok()) return s;
  }
  pr.stage = "train";
  pr.total = cfg.epochs;
  const auto start = std::chrono::steady_clock::now();
  while (trainer.epochs_done() < cfg.epochs) {
    auto st = trainer.RunEpoch(
        cache, [&] { return ctx.Cancelled(); }, nullptr);
    if (!st.has_value()) return core::JobStopped();  // resumes from the last checkpoint
    if (auto s = trainer.SaveCheckpoint(dir); !s.ok()) return s;
    pr.done = st->epoch;
    pr.loss = st->loss;
    pr.rate = st->epoch / std::max(1e-9, Seconds(start));
    pr.message = absl::StrFormat(
        "instance %.4f cluster %.4f entropy-term %.4f usage-entropy %.3f/%.3f", st->instance_loss,
        st->cluster_loss, st->entropy_term, st->usage_entropy, std::log(cfg.num_clusters));
    if (metrics) {
      metrics->prompt_loss->Set(st->loss);
      metrics->prompt_epoch->Set(st->epoch);
    }
    ctx.SetProgress(pr);
  }
  auto bytes = trainer.module().Serialize(cfg, model_->identity());
  if (!bytes.ok()) return bytes.status();
  core::PromptInfo info;
  info.name = name;
  info.dataset = job.dataset;
  info.model_identity = model_->identity();
  info.num_context = cfg.num_context;
  info.num_clusters = cfg.num_clusters;
  info.config_json = cfg.ToJson().dump();
  info.created_ms = core::NowMs();
  // ALREADY_EXISTS when an import took the name while this job was not running.
  if (auto s = core_->StoreLearnedPrompt(info, *bytes, job.id); !s.ok()) return s;
  json hist = json::array();
  for (const auto& h : trainer.history()) {
    hist.push_back({{"epoch", h.epoch},
                    {"loss", h.loss},
                    {"instance", h.instance_loss},
                    {"cluster", h.cluster_loss},
                    {"entropy_term", h.entropy_term},
                    {"usage_entropy", h.usage_entropy}});
  }
  ctx.SetResult(json{{"prompt", name}, {"train_items", cache.size()}, {"history", hist}}.dump());
  // Nothing to resume any more: drop the view cache and checkpoints.
  if (auto s = RemoveTree(dir); !s.ok()) {
    std::cerr << "updp-server: " << job.id << ": " << s.message() << "\n";
  }
  return absl::OkStatus();
}

}  // namespace updp::engine
