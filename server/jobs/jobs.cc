// Job bodies and model loading of ServerCore: the LibTorch side of the core.
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <set>
#include <unordered_map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "server/core/server_core.h"
#include "server/util/atomic_file.h"
#include "server/model/blip2_model.h"
#include "server/model/encoder.h"
#include "server/model/image_preprocess.h"
#include "server/model/npy.h"
#include "server/model/safetensors.h"
#include "server/model/tokenizer.h"
#include "server/select/strategies.h"
#include "server/updp/augment.h"
#include "server/updp/prompt_learner.h"

#ifdef UPDP_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <cuda_runtime_api.h>
#endif

namespace updp::core {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

std::string ChunkName(int64_t c) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "chunk_%06lld.safetensors", static_cast<long long>(c));
  return buf;
}

// All chunks of a feature source as one matrix plus the item index of each row.
absl::StatusOr<std::pair<torch::Tensor, std::vector<int64_t>>> LoadFeatures(
    const std::vector<FeatureChunk>& chunks) {
  int64_t rows = 0, dim = -1;
  std::vector<std::unique_ptr<model::SafetensorsFile>> files;
  for (const auto& c : chunks) {
    auto f = model::SafetensorsFile::Open(c.path);
    if (!f.ok()) return absl::DataLossError(absl::StrCat("feature chunk: ", f.status().message()));
    const auto& info = (*f)->tensors();
    if (!info.count("features") || !info.count("index")) {
      return absl::DataLossError(absl::StrCat(c.path, ": not a feature chunk"));
    }
    const auto& shape = info.at("features").shape;
    if (shape.size() != 2 || (dim >= 0 && shape[1] != dim)) {
      return absl::DataLossError(absl::StrCat(c.path, ": inconsistent feature shape"));
    }
    dim = shape[1];
    rows += shape[0];
    files.push_back(std::move(*f));
  }
  // One copy out of the mapped chunk files, in the stored dtype (float16 for image
  // and prompt features); selection converts to float32 once.
  torch::ScalarType dtype = torch::kFloat32;
  if (!files.empty()) {
    auto t = model::DtypeFromString(files[0]->tensors().at("features").dtype);
    if (t.ok()) dtype = *t;
  }
  torch::Tensor x = torch::empty({rows, std::max<int64_t>(dim, 0)}, dtype);
  std::vector<int64_t> index;
  index.reserve(rows);
  int64_t at = 0;
  for (auto& f : files) {
    torch::Tensor part = *f->Get("features", dtype);
    torch::Tensor idx = *f->Get("index", torch::kLong);
    x.narrow(0, at, part.size(0)).copy_(part);
    at += part.size(0);
    auto a = idx.accessor<int64_t, 1>();
    for (int64_t i = 0; i < idx.size(0); ++i) index.push_back(a[i]);
  }
  return std::make_pair(x, index);
}

absl::Status WriteChunk(const std::string& dir, int64_t chunk, const torch::Tensor& features,
                        const std::vector<int64_t>& index, std::string* path) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  *path = dir + "/" + ChunkName(chunk);
  return model::WriteSafetensors(
      *path, {{"features", features.to(torch::kCPU, torch::kFloat16)},
              {"index", torch::tensor(index, torch::kLong)}});
}

}  // namespace

namespace {

// A stored prompt, loaded against (and checked for compatibility with) the model.
absl::StatusOr<prompt::PromptModule> LoadStoredPrompt(ServerCore& core, const model::Blip2Model& m,
                                                      const std::string& name) {
  auto artifact = core.ExportPrompt(name);
  if (!artifact.ok()) return artifact.status();
  auto loaded = prompt::PromptModule::Load(artifact->second, m);
  if (!loaded.ok()) return loaded.status();
  return std::move(loaded->first);
}

}  // namespace

absl::Status ServerCore::LoadModel() {
  if (options_.model_dir.empty()) return absl::OkStatus();
  auto device = model::ParseDevice(options_.device);
  if (!device.ok()) return device.status();
  auto dtype = model::ParseVisionDtype(options_.precision, *device);
  if (!dtype.ok()) return dtype.status();
  auto attention = model::ParseAttention(options_.attention);
  if (!attention.ok()) return attention.status();
  model::ModelOptions mo;
  mo.device = *device;
  mo.vision_dtype = *dtype;
  mo.attention = *attention;
  auto qdtype = model::ParseQFormerDtype(options_.qformer_precision, *device, *dtype);
  if (!qdtype.ok()) return qdtype.status();
  mo.qformer_image_dtype = *qdtype;
  mo.fused_gelu = options_.fused_gelu;
  auto m = model::Blip2Model::Load(options_.model_dir, mo);
  if (!m.ok()) return m.status();
  auto tok = model::BertTokenizer::FromVocabFile(options_.model_dir + "/vocab.txt");
  if (!tok.ok()) return tok.status();
  model_ = std::move(*m);
  tokenizer_ = std::make_shared<model::BertTokenizer>(std::move(*tok));
  model::EncoderOptions eo;
  eo.decode_threads = options_.decode_threads;
  eo.cuda_graphs = options_.cuda_graphs;
  encoder_ = std::make_shared<model::ImageEncoder>(model_, eo);
  if (metrics_) {
    metrics_->SetModelInfo("blip2-itm", model_->identity(), options_.device,
                           model::DtypeToString(*dtype));
    metrics_->model_loaded->Set(1);
#ifdef UPDP_WITH_CUDA
    if (device->is_cuda()) {
      const auto index = device->index() < 0 ? 0 : device->index();
      metrics_->refresh_device = [index](Metrics& m) {
        // Index 0 of each stat array is the aggregate over pool types in every
        // LibTorch version.
        auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(index);
        m.device_memory_allocated->Set(static_cast<double>(stats.allocated_bytes[0].current));
        m.device_memory_reserved->Set(static_cast<double>(stats.reserved_bytes[0].current));
        m.device_memory_peak_allocated->Set(static_cast<double>(stats.allocated_bytes[0].peak));
        m.device_memory_peak_reserved->Set(static_cast<double>(stats.reserved_bytes[0].peak));
      };
    }
#endif
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> ServerCore::ImportEmbeddings(const std::string& dataset,
                                                     const std::string& npy) {
  auto h = model::ReadNpyHeader(npy);
  if (!h.ok()) return absl::InvalidArgumentError(absl::StrCat("embeddings.path: ", h.status().message()));
  if (h->descr != "<f4" && h->descr != "<f2") {
    return absl::InvalidArgumentError(absl::StrCat("embeddings.path: ", npy, ": dtype '", h->descr,
                                                   "' is not float32 or float16"));
  }
  if (h->shape.size() != 2 || h->shape[0] == 0 || h->shape[1] == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("embeddings.path: ", npy, ": expected a non-empty [N, D] array"));
  }
  auto x = model::MapNpy(npy);
  if (!x.ok()) return absl::InvalidArgumentError(absl::StrCat("embeddings.path: ", x.status().message()));
  torch::Tensor bad = torch::logical_not(torch::isfinite(x->to(torch::kFloat32))).any(1);
  if (bad.any().item<bool>()) {
    return absl::InvalidArgumentError(absl::StrCat("embeddings.path: ", npy, ": row ",
                                                   bad.nonzero()[0][0].item<int64_t>(),
                                                   " contains NaN or Inf"));
  }
  const int64_t n = h->shape[0];
  std::vector<int64_t> index(n);
  std::iota(index.begin(), index.end(), 0);
  std::error_code ec;
  const std::string dir = FeatureDir(dataset, kUserEmbeddings);
  fs::create_directories(dir, ec);
  // User embeddings keep their dtype (no float16 rounding of float32 inputs).
  auto s = model::WriteSafetensors(dir + "/" + ChunkName(0),
                                   {{"features", *x}, {"index", torch::tensor(index, torch::kLong)}});
  if (!s.ok()) return s;
  return n;
}

absl::Status ServerCore::RunEmbed(JobContext& ctx) {
  if (!encoder_) return absl::FailedPreconditionError("no BLIP-2 model is loaded");
  const JobInfo& job = ctx.job();
  json p = json::parse(job.params_json);
  const int batch = p.value("batch_size", options_.embed_batch_size);
  const int64_t chunk_size = p.value("chunk_size", options_.chunk_size);
  auto items = store_->Items(job.dataset);
  const int64_t n = static_cast<int64_t>(items.size());
  const int64_t chunks = (n + chunk_size - 1) / chunk_size;
  std::set<int64_t> done;
  for (const auto& c : store_->FeatureChunks(job.dataset, kImageFeatures)) done.insert(c.chunk);
  const auto start = std::chrono::steady_clock::now();
  int64_t computed = 0, processed = 0, failed_total = 0, embedded = 0;
  Progress pr;
  pr.stage = "embed";
  pr.total = n;
  pr.done = std::min<int64_t>(n, static_cast<int64_t>(done.size()) * chunk_size);
  ctx.SetProgress(pr);
  for (int64_t c = 0; c < chunks; ++c) {
    if (done.count(c)) continue;
    if (ctx.Cancelled()) return absl::OkStatus();
    const int64_t begin = c * chunk_size, end = std::min(n, begin + chunk_size);
    std::vector<std::string> paths;
    for (int64_t i = begin; i < end; ++i) paths.push_back(items[i].path);
    const int64_t base_done = pr.done;
    auto enc = encoder_->EncodeAll(paths, batch, [&] { return ctx.Cancelled(); },
                                   [&](int64_t d, int64_t) {
                                     pr.done = base_done + d;
                                     pr.rate = (processed + d) / std::max(1e-9, Seconds(start));
                                     if (metrics_) metrics_->embedding_rate->Set(pr.rate);
                                     ctx.SetProgress(pr);
                                   });
    if (enc.cancelled) return absl::OkStatus();  // the partial chunk is dropped
    std::vector<int64_t> index;
    for (int i : enc.ok) index.push_back(begin + i);
    std::vector<FailedItemRow> failed;
    for (auto& [i, err] : enc.errors) {
      failed.push_back({items[begin + i].item_id, items[begin + i].path, err});
    }
    if (!failed.empty()) {
      if (auto s = store_->AddFailedItems(job.dataset, failed); !s.ok()) return s;
    }
    std::string path;
    if (auto s = WriteChunk(FeatureDir(job.dataset, kImageFeatures), c, enc.features, index, &path);
        !s.ok()) {
      return s;
    }
    // The store row is the commit point: a chunk file without a row is rewritten.
    if (auto s = store_->AddFeatureChunk(job.dataset, kImageFeatures,
                                         {c, static_cast<int64_t>(index.size()), path});
        !s.ok()) {
      return s;
    }
    ++computed;
    processed += end - begin;
    embedded += static_cast<int64_t>(index.size());
    failed_total += static_cast<int64_t>(failed.size());
    if (metrics_) {
      metrics_->images_decoded->Increment(static_cast<double>(index.size()));
      metrics_->images_embedded->Increment(static_cast<double>(index.size()));
      metrics_->images_failed->Increment(static_cast<double>(failed.size()));
    }
  }
  if (metrics_) metrics_->embedding_rate->Set(0);
  pr.done = n;
  pr.message = absl::StrCat(embedded, " embedded, ", failed_total, " failed in this run");
  ctx.SetProgress(pr);
  ctx.SetResult(json{{"chunks_total", chunks},
                     {"chunks_computed", computed},
                     {"chunks_reused", chunks - computed},
                     {"embedded_this_run", embedded},
                     {"failed_this_run", failed_total},
                     {"seconds", Seconds(start)}}
                    .dump());
  return absl::OkStatus();
}

absl::Status ServerCore::ExtractPromptFeatures(JobContext& ctx, const std::string& dataset,
                                               const std::string& prompt) {
  auto loaded = LoadStoredPrompt(*this, *model_, prompt);
  if (!loaded.ok()) return loaded.status();
  const prompt::PromptModule& mod = *loaded;
  const std::string source = PromptFeatures(prompt);
  auto items = store_->Items(dataset);
  const int64_t n = static_cast<int64_t>(items.size()), cs = options_.chunk_size;
  const int64_t chunks = (n + cs - 1) / cs;
  std::set<int64_t> have_prompt, have_image;
  for (const auto& c : store_->FeatureChunks(dataset, source)) have_prompt.insert(c.chunk);
  for (const auto& c : store_->FeatureChunks(dataset, kImageFeatures)) have_image.insert(c.chunk);
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
    std::vector<torch::Tensor> joint, image;
    std::vector<int64_t> index;
    std::vector<FailedItemRow> failed;
    const int bs = options_.embed_batch_size;
    for (int64_t b = begin; b < end; b += bs) {
      if (ctx.Cancelled()) return absl::CancelledError("cancelled");
      std::vector<std::string> paths;
      for (int64_t i = b; i < std::min(end, b + bs); ++i) paths.push_back(items[i].path);
      // One decode and one ViT pass feed both the image and the prompted features.
      model::PreparedBatch pb = encoder_->Prepare(paths);
      for (auto& [i, err] : pb.errors) failed.push_back({items[b + i].item_id, items[b + i].path, err});
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
      if (auto s = store_->AddFailedItems(dataset, failed); !s.ok()) return s;
    }
    auto cat = [](std::vector<torch::Tensor>& v, int64_t d) {
      return v.empty() ? torch::empty({0, d}) : torch::cat(v, 0);
    };
    std::string path;
    if (!have_image.count(c)) {
      if (auto s = WriteChunk(FeatureDir(dataset, kImageFeatures), c,
                              cat(image, model_->config().image_text_hidden_size), index, &path);
          !s.ok()) {
        return s;
      }
      if (auto s = store_->AddFeatureChunk(dataset, kImageFeatures,
                                           {c, static_cast<int64_t>(index.size()), path});
          !s.ok()) {
        return s;
      }
    }
    if (auto s = WriteChunk(FeatureDir(dataset, source), c, cat(joint, 0), index, &path); !s.ok()) {
      return s;
    }
    if (auto s = store_->AddFeatureChunk(dataset, source, {c, static_cast<int64_t>(index.size()), path});
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

absl::Status ServerCore::RunSelect(JobContext& ctx) {
  const JobInfo& job = ctx.job();
  json p = json::parse(job.params_json);
  const std::string strategy = p["strategy"], features = p["features"], rule = p.value("rule", "kmeans");
  const std::string prompt_name = p.value("prompt", "");
  if (strategy == "updp") {
    if (!model_) return absl::FailedPreconditionError("no BLIP-2 model is loaded");
    auto s = ExtractPromptFeatures(ctx, job.dataset, prompt_name);
    if (ctx.Cancelled()) return absl::OkStatus();
    if (!s.ok()) return s;
  }
  Progress pr;
  pr.stage = "load-features";
  ctx.SetProgress(pr);
  auto loaded = LoadFeatures(store_->FeatureChunks(job.dataset, features));
  if (!loaded.ok()) return loaded.status();
  auto& [x, index] = *loaded;
  auto items = store_->Items(job.dataset);
  std::unordered_map<std::string, int64_t> row_of_id;
  for (size_t r = 0; r < index.size(); ++r) row_of_id[items[index[r]].item_id] = static_cast<int64_t>(r);
  select::SelectOptions o;
  o.strategy = strategy == "updp" ? "kmeans" : strategy;
  o.budget = p["budget"];
  o.seed = p["seed"];
  for (const auto& id : p["labeled_ids"]) {
    auto it = row_of_id.find(id.get<std::string>());
    if (it != row_of_id.end()) o.labeled.push_back(it->second);  // failed items have no row
  }
  const auto start = std::chrono::steady_clock::now();
  std::vector<select::Pick> picks;
  if (strategy == "updp" && rule == "cluster-head") {
    auto mod = LoadStoredPrompt(*this, *model_, prompt_name);
    if (!mod.ok()) return mod.status();
    torch::NoGradGuard g;
    torch::Tensor prob =
        mod->Cluster(x.to(model_->options().device, torch::kFloat32)).to(torch::kCPU);
    auto best = prob.max(1);
    torch::Tensor conf = std::get<0>(best), cl = std::get<1>(best);
    std::vector<char> excluded(x.size(0), 0);
    for (int64_t l : o.labeled) excluded[l] = 1;
    const int64_t k = prob.size(1);
    std::vector<int64_t> top(k, -1);
    auto ca = conf.accessor<float, 1>();
    auto la = cl.accessor<int64_t, 1>();
    for (int64_t i = 0; i < x.size(0); ++i) {
      if (excluded[i]) continue;
      if (top[la[i]] < 0 || ca[i] > ca[top[la[i]]]) top[la[i]] = i;
    }
    for (int64_t c = 0; c < k && static_cast<int64_t>(picks.size()) < o.budget; ++c) {
      if (top[c] >= 0) picks.push_back({top[c], c, ca[top[c]]});
    }
    // Fewer used clusters than the budget: complete with k-means picks on the same features.
    if (static_cast<int64_t>(picks.size()) < std::min<int64_t>(o.budget, x.size(0) - static_cast<int64_t>(o.labeled.size()))) {
      select::SelectOptions rest = o;
      for (auto& pk : picks) rest.labeled.push_back(pk.index);
      rest.budget = o.budget - static_cast<int64_t>(picks.size());
      auto more = select::Select(x, rest, nullptr, [&] { return ctx.Cancelled(); });
      if (!more.ok()) return more.status();
      for (auto& pk : *more) picks.push_back({pk.index, -1, pk.score});
    }
  } else {
    auto r = select::Select(
        x, o,
        [&](const std::string& phase, double f) {
          Progress q;
          q.stage = phase;
          q.done = static_cast<int64_t>(f * 1000);
          q.total = 1000;
          ctx.SetProgress(q);
        },
        [&] { return ctx.Cancelled(); });
    if (ctx.Cancelled()) return absl::OkStatus();
    if (!r.ok()) return r.status();
    picks = std::move(*r);
  }
  const double secs = Seconds(start);
  if (metrics_) metrics_->SelectionFinished(strategy, secs);
  std::vector<SelectionRow> rows;
  for (size_t i = 0; i < picks.size(); ++i) {
    const ItemRow& it = items[index[picks[i].index]];
    rows.push_back({static_cast<int64_t>(i + 1), it.idx, it.item_id, it.path, picks[i].cluster,
                    picks[i].score});
  }
  if (auto s = store_->SaveSelection(job.id, rows); !s.ok()) return s;
  Progress done;
  done.stage = "done";
  done.done = done.total = static_cast<int64_t>(rows.size());
  ctx.SetProgress(done);
  ctx.SetResult(json{{"picks", rows.size()}, {"features", features}, {"rows", x.size(0)},
                     {"dim", x.size(1)}, {"seconds", secs}}.dump());
  return absl::OkStatus();
}

absl::Status ServerCore::CheckPromptCompatible(const std::string& bytes, std::string* identity,
                                               int* num_context, int* num_clusters,
                                               std::string* config) {
  auto meta = prompt::PromptModule::ReadMetadata(bytes);
  if (!meta.ok()) return meta.status();
  if (!model_) {
    return absl::FailedPreconditionError(
        "no BLIP-2 model is loaded to check the prompt's compatibility against");
  }
  auto loaded = prompt::PromptModule::Load(bytes, *model_);
  if (!loaded.ok()) return loaded.status();
  *identity = meta->second;
  *num_context = meta->first.num_context;
  *num_clusters = meta->first.num_clusters;
  *config = meta->first.ToJson().dump();
  return absl::OkStatus();
}

absl::Status ServerCore::RunLearnPrompt(JobContext& ctx) {
  if (!model_) return absl::FailedPreconditionError("no BLIP-2 model is loaded");
  const JobInfo& job = ctx.job();
  json p = json::parse(job.params_json);
  auto cfg_or = prompt::PromptConfig::FromJson(p);
  if (!cfg_or.ok()) return cfg_or.status();
  prompt::PromptConfig cfg = *cfg_or;
  cfg.trained_on_dataset = job.dataset;
  const std::string name = p["prompt_name"];
  const std::string dir = options_.data_dir + "/jobs/" + job.id;
  std::error_code ec;
  fs::create_directories(dir, ec);

  // Training subset: a seeded sample capped by the view-cache memory budget.
  const auto& vc = model_->config().vision;
  const int64_t per_view = int64_t{vc.num_positions()} * vc.hidden_size * 2;  // bf16 bytes
  const int64_t cap_mem = std::max<int64_t>(2, options_.prompt_cache_bytes / (per_view * cfg.views));
  auto items = store_->Items(job.dataset);
  int64_t cap = std::min<int64_t>(static_cast<int64_t>(items.size()), cap_mem);
  const int64_t max_items = p.value("max_train_items", int64_t{0});
  if (max_items > 0) cap = std::min(cap, max_items);
  std::vector<int64_t> order(items.size());
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
    if (!fs::exists(path)) {
      std::vector<torch::Tensor> views;
      std::vector<FailedItemRow> failed;
      for (int64_t j = c * cs; j < std::min(cap, (c + 1) * cs); ++j) {
        if (ctx.Cancelled()) return absl::OkStatus();
        const ItemRow& it = items[order[j]];
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
      if (!failed.empty()) store_->AddFailedItems(job.dataset, failed).IgnoreError();
      torch::Tensor part = views.empty()
                               ? torch::empty({0, cfg.views, vc.num_positions(), vc.hidden_size},
                                              torch::kBFloat16)
                               : torch::cat(views, 0);
      if (auto s = model::WriteSafetensors(path, {{"views", part}}); !s.ok()) return s;
    }
    auto f = model::SafetensorsFile::Open(path);
    if (!f.ok()) return f.status();
    // The chunk files stay on disk, memory-mapped: training reads them without a copy.
    auto v = model::SafetensorsFile::MapTensor(std::shared_ptr<const model::SafetensorsFile>(std::move(*f)),
                                               "views");
    if (!v.ok()) return v.status();
    cache_parts.push_back(*v);
  }
  int64_t cached = 0;
  for (const auto& p : cache_parts) cached += p.size(0);
  if (cached < 2) {
    return absl::FailedPreconditionError("dataset: fewer than 2 decodable images to learn a prompt from");
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
  prompt::ViewCache cache = on_device
                                ? prompt::ViewCache(torch::cat(cache_parts, 0).to(model_->options().device))
                                : prompt::ViewCache(cache_parts);

  prompt::PromptTrainer trainer(*model_, prompt::PromptModule::Create(*model_, *tokenizer_, cfg), cfg);
  if (fs::exists(dir + "/checkpoint.safetensors")) {
    if (auto s = trainer.LoadCheckpoint(dir); !s.ok()) return s;
  }
  pr.stage = "train";
  pr.total = cfg.epochs;
  const auto start = std::chrono::steady_clock::now();
  while (trainer.epochs_done() < cfg.epochs) {
    auto st = trainer.RunEpoch(cache, [&] { return ctx.Cancelled(); }, nullptr);
    if (!st.has_value()) return absl::OkStatus();  // resumes from the last checkpoint
    if (auto s = trainer.SaveCheckpoint(dir); !s.ok()) return s;
    pr.done = st->epoch;
    pr.loss = st->loss;
    pr.rate = st->epoch / std::max(1e-9, Seconds(start));
    pr.message = absl::StrFormat(
        "instance %.4f cluster %.4f entropy-term %.4f usage-entropy %.3f/%.3f", st->instance_loss,
        st->cluster_loss, st->entropy_term, st->usage_entropy, std::log(cfg.num_clusters));
    if (metrics_) {
      metrics_->prompt_loss->Set(st->loss);
      metrics_->prompt_epoch->Set(st->epoch);
    }
    ctx.SetProgress(pr);
  }
  auto bytes = trainer.module().Serialize(cfg, model_->identity());
  if (!bytes.ok()) return bytes.status();
  PromptInfo info;
  info.name = name;
  info.dataset = job.dataset;
  info.model_identity = model_->identity();
  info.num_context = cfg.num_context;
  info.num_clusters = cfg.num_clusters;
  info.config_json = cfg.ToJson().dump();
  fs::create_directories(options_.data_dir + "/prompts", ec);
  info.path = options_.data_dir + "/prompts/" + name + ".safetensors";
  info.created_ms = NowMs();
  if (auto s = WriteFileAtomically(info.path, *bytes); !s.ok()) return s;
  if (auto s = store_->CreatePrompt(info); !s.ok() && s.code() != absl::StatusCode::kAlreadyExists) {
    return s;
  }
  json hist = json::array();
  for (const auto& h : trainer.history()) {
    hist.push_back({{"epoch", h.epoch}, {"loss", h.loss}, {"instance", h.instance_loss},
                    {"cluster", h.cluster_loss}, {"entropy_term", h.entropy_term},
                    {"usage_entropy", h.usage_entropy}});
  }
  ctx.SetResult(json{{"prompt", name}, {"train_items", cache.size()}, {"history", hist}}.dump());
  return absl::OkStatus();
}

}  // namespace updp::core
