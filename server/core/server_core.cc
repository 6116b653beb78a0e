#include "server/core/server_core.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <unordered_set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "server/util/atomic_file.h"

namespace updp::core {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const std::set<std::string> kImageExtensions = {".jpg", ".jpeg", ".png", ".webp"};

absl::Status ValidateName(const std::string& field, const std::string& name) {
  static const std::regex kName("^[A-Za-z0-9._-]{1,64}$");
  if (!std::regex_match(name, kName)) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": '", name, "' must be 1-64 characters of [A-Za-z0-9._-]"));
  }
  return absl::OkStatus();
}

}  // namespace

std::string PromptFeatures(const std::string& prompt) { return "prompt:" + prompt; }

absl::StatusOr<std::unique_ptr<ServerCore>> ServerCore::Create(const ServerOptions& options,
                                                               Metrics* metrics) {
  std::unique_ptr<ServerCore> c(new ServerCore());
  c->options_ = options;
  c->metrics_ = metrics;
  auto store = Store::Open(options.data_dir);
  if (!store.ok()) return store.status();
  c->store_ = std::move(*store);
  int interrupted = c->store_->MarkRunningInterrupted();
  (void)interrupted;
  c->paths_ = std::make_unique<PathPolicy>(options.allowed_roots);
  JobManagerOptions jo;
  jo.queue_capacity = options.queue_capacity;
  jo.cpu_threads = options.cpu_threads;
  c->jobs_ = std::make_unique<JobManager>(c->store_.get(), metrics, jo);
  ServerCore* self = c.get();
  c->jobs_->RegisterKind(JobKind::kEmbed, Lane::kDevice,
                         [self](JobContext& ctx) { return self->RunEmbed(ctx); });
  c->jobs_->RegisterKind(JobKind::kLearnPrompt, Lane::kDevice,
                         [self](JobContext& ctx) { return self->RunLearnPrompt(ctx); });
  // SELECT runs on the CPU pool, except the updp strategy, which extracts prompted
  // features with the model and so runs on the device executor.
  c->jobs_->RegisterKind(
      JobKind::kSelect,
      [](const JobInfo& j) {
        return json::parse(j.params_json, nullptr, false).value("strategy", "") == "updp"
                   ? Lane::kDevice
                   : Lane::kCpu;
      },
      [self](JobContext& ctx) { return self->RunSelect(ctx); });
  return c;
}

ServerCore::~ServerCore() { Shutdown(0); }

void ServerCore::Start() { jobs_->Start(); }

bool ServerCore::Shutdown(int64_t grace_ms) { return jobs_ ? jobs_->Shutdown(grace_ms) : true; }

std::string ServerCore::FeatureDir(const std::string& dataset, const std::string& source) const {
  std::string s = source;
  std::replace(s.begin(), s.end(), ':', '_');
  return options_.data_dir + "/features/" + dataset + "/" + s;
}

absl::StatusOr<DatasetInfo> ServerCore::RegisterDataset(const std::string& name, SourceKind kind,
                                                        const std::string& path,
                                                        const std::string& ids_path) {
  if (auto s = ValidateName("name", name); !s.ok()) return s;
  if (store_->GetDataset(name).ok()) {
    return absl::AlreadyExistsError(absl::StrCat("name: dataset '", name, "' already exists"));
  }
  DatasetInfo d;
  d.name = name;
  d.source_kind = kind;
  d.created_ms = NowMs();
  std::vector<ItemRow> items;
  std::vector<FailedItemRow> failed;
  std::unordered_set<std::string> seen;
  auto add_item = [&](const std::string& id, const std::string& p, const std::string& field)
      -> absl::Status {
    if (id.empty()) return absl::InvalidArgumentError(absl::StrCat(field, ": empty item id"));
    if (!seen.insert(id).second) {
      return absl::InvalidArgumentError(absl::StrCat(field, ": duplicate item id '", id, "'"));
    }
    items.push_back({static_cast<int64_t>(items.size()), id, p});
    return absl::OkStatus();
  };

  if (kind == SourceKind::kImages) {
    auto root = paths_->Resolve("images.path", path);
    if (!root.ok()) return root.status();
    if (!fs::is_directory(*root)) {
      return absl::InvalidArgumentError(absl::StrCat("images.path: '", path, "' is not a directory"));
    }
    d.source_path = *root;
    std::vector<std::string> files;
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(
             *root, fs::directory_options::skip_permission_denied, ec);
         it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (ec) break;
      if (!it->is_regular_file(ec)) continue;
      std::string ext = absl::AsciiStrToLower(it->path().extension().string());
      if (kImageExtensions.count(ext)) files.push_back(it->path().string());
    }
    std::sort(files.begin(), files.end());
    if (files.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "images.path: no images (jpg, jpeg, png, webp) under '", path, "'"));
    }
    for (const auto& f : files) {
      // A symlink inside the tree may point outside the allowed roots.
      std::string canon = fs::weakly_canonical(f, ec).string();
      std::string rel = fs::relative(f, *root, ec).string();
      if (!paths_->Allowed(canon)) {
        failed.push_back({rel, f, "resolves outside the allowed roots"});
        continue;
      }
      if (auto s = add_item(rel, canon, "images.path"); !s.ok()) return s;
    }
  } else if (kind == SourceKind::kManifest) {
    auto manifest = paths_->Resolve("manifest.path", path);
    if (!manifest.ok()) return manifest.status();
    d.source_path = *manifest;
    auto text = ReadFile(*manifest);
    if (!text.ok()) return text.status();
    const fs::path base = fs::path(*manifest).parent_path();
    int line_no = 0;
    for (absl::string_view raw : absl::StrSplit(*text, '\n')) {
      ++line_no;
      std::string line(absl::StripAsciiWhitespace(raw));
      if (line.empty() || line[0] == '#') continue;
      std::string id, p;
      std::vector<std::string> parts = absl::StrSplit(line, absl::MaxSplits(',', 1));
      if (parts.size() == 2) {
        id = std::string(absl::StripAsciiWhitespace(parts[0]));
        p = std::string(absl::StripAsciiWhitespace(parts[1]));
        if (line_no == 1 && id == "id" && p == "path") continue;  // header
      } else {
        p = line;
      }
      const std::string field = absl::StrCat("manifest.path: ", *manifest, " line ", line_no);
      fs::path full = fs::path(p).is_absolute() ? fs::path(p) : base / p;
      auto resolved = paths_->Resolve(field, full.string());
      if (resolved.status().code() == absl::StatusCode::kPermissionDenied) return resolved.status();
      std::string item_path = resolved.ok() ? *resolved : fs::weakly_canonical(full).string();
      if (id.empty()) id = p;
      if (auto s = add_item(id, item_path, field); !s.ok()) return s;
      if (!resolved.ok()) failed.push_back({id, item_path, "file does not exist"});
    }
    if (items.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("manifest.path: '", path, "' lists no items"));
    }
  } else if (kind == SourceKind::kEmbeddings) {
    auto npy = paths_->Resolve("embeddings.path", path);
    if (!npy.ok()) return npy.status();
    d.source_path = *npy;
    std::vector<std::string> ids;
    if (!ids_path.empty()) {
      auto idf = paths_->Resolve("embeddings.ids_path", ids_path);
      if (!idf.ok()) return idf.status();
      auto text = ReadFile(*idf);
      if (!text.ok()) return text.status();
      for (absl::string_view raw : absl::StrSplit(*text, '\n')) {
        std::string id(absl::StripAsciiWhitespace(raw));
        if (!id.empty()) ids.push_back(id);
      }
    }
    // Import first (validates the array); the chunk is only registered with the dataset.
    auto rows = ImportEmbeddings(name, *npy);
    if (!rows.ok()) return rows.status();
    if (!ids_path.empty() && static_cast<int64_t>(ids.size()) != *rows) {
      fs::remove_all(options_.data_dir + "/features/" + name);
      return absl::InvalidArgumentError(absl::StrCat("embeddings.ids_path: has ", ids.size(),
                                                     " ids but the array has ", *rows, " rows"));
    }
    for (int64_t i = 0; i < *rows; ++i) {
      auto s = add_item(ids_path.empty() ? std::to_string(i) : ids[i], "", "embeddings.ids_path");
      if (!s.ok()) {
        fs::remove_all(options_.data_dir + "/features/" + name);
        return s;
      }
    }
  } else {
    return absl::InvalidArgumentError("source: one of images, manifest or embeddings is required");
  }
  if (auto s = store_->CreateDataset(d, items, failed); !s.ok()) {
    if (kind == SourceKind::kEmbeddings) fs::remove_all(options_.data_dir + "/features/" + name);
    return s;
  }
  if (kind == SourceKind::kEmbeddings) {
    FeatureChunk c{0, static_cast<int64_t>(items.size()),
                   FeatureDir(name, kUserEmbeddings) + "/chunk_000000.safetensors"};
    if (auto s = store_->AddFeatureChunk(name, kUserEmbeddings, c); !s.ok()) return s;
  }
  return store_->GetDataset(name);
}

absl::StatusOr<DatasetInfo> ServerCore::GetDataset(const std::string& name) {
  return store_->GetDataset(name);
}

std::vector<DatasetInfo> ServerCore::ListDatasets() { return store_->ListDatasets(); }

absl::Status ServerCore::DeleteDataset(const std::string& name) {
  if (auto d = store_->GetDataset(name); !d.ok()) return d.status();
  if (jobs_->DatasetBusy(name)) {
    return absl::FailedPreconditionError(
        absl::StrCat("name: dataset '", name, "' has queued or running jobs; cancel them first"));
  }
  if (auto s = store_->DeleteDataset(name); !s.ok()) return s;
  std::error_code ec;
  fs::remove_all(options_.data_dir + "/features/" + name, ec);
  return absl::OkStatus();
}

absl::StatusOr<JobInfo> ServerCore::StartEmbedding(const std::string& dataset, int batch_size) {
  auto d = store_->GetDataset(dataset);
  if (!d.ok()) return d.status();
  if (d->source_kind == SourceKind::kEmbeddings) {
    return absl::FailedPreconditionError(absl::StrCat(
        "dataset: '", dataset, "' brought its own embeddings; there are no images to embed"));
  }
  if (!model_) {
    return absl::FailedPreconditionError("no BLIP-2 model is loaded (start the server with --model_dir)");
  }
  if (batch_size < 0) return absl::InvalidArgumentError("batch_size: must be >= 0");
  json p = {{"batch_size", batch_size > 0 ? batch_size : options_.embed_batch_size},
            {"chunk_size", options_.chunk_size}};
  return jobs_->Submit(JobKind::kEmbed, dataset, p.dump());
}

absl::StatusOr<JobInfo> ServerCore::LearnPrompt(const LearnPromptParams& p) {
  auto d = store_->GetDataset(p.dataset);
  if (!d.ok()) return d.status();
  if (d->source_kind == SourceKind::kEmbeddings) {
    return absl::FailedPreconditionError(absl::StrCat(
        "dataset: '", p.dataset, "' brought its own embeddings; prompt learning needs images"));
  }
  if (!model_) {
    return absl::FailedPreconditionError("no BLIP-2 model is loaded (start the server with --model_dir)");
  }
  if (auto s = ValidateName("prompt_name", p.prompt_name); !s.ok()) return s;
  if (store_->GetPrompt(p.prompt_name).ok()) {
    return absl::AlreadyExistsError(absl::StrCat("prompt_name: prompt '", p.prompt_name, "' already exists"));
  }
  for (const auto& j : store_->ListJobs("", JobState::kUnspecified, 1 << 20)) {
    if (j.kind != JobKind::kLearnPrompt || j.state == JobState::kFailed ||
        j.state == JobState::kCancelled) {
      continue;
    }
    if (json::parse(j.params_json).value("prompt_name", "") == p.prompt_name) {
      return absl::AlreadyExistsError(absl::StrCat("prompt_name: '", p.prompt_name,
                                                   "' is being learned by ", j.id));
    }
  }
  if (p.num_context < 1 || p.num_context > 64) {
    return absl::InvalidArgumentError("num_context: must be in 1..64");
  }
  if (p.epochs < 1 || p.epochs > 10000) return absl::InvalidArgumentError("epochs: must be in 1..10000");
  if (p.batch_size < 2) return absl::InvalidArgumentError("batch_size: must be >= 2");
  if (p.views < 2 || p.views > 16) return absl::InvalidArgumentError("views: must be in 2..16");
  if (p.learning_rate <= 0) return absl::InvalidArgumentError("learning_rate: must be > 0");
  if (p.num_clusters < 0 || p.intended_budget < 0 || p.max_train_items < 0) {
    return absl::InvalidArgumentError("num_clusters, intended_budget and max_train_items must be >= 0");
  }
  int k = p.num_clusters > 0 ? p.num_clusters : (p.intended_budget > 0 ? p.intended_budget : 100);
  if (k < 2) return absl::InvalidArgumentError("num_clusters: must be >= 2");
  json j = {{"prompt_name", p.prompt_name}, {"num_context", p.num_context},
            {"num_clusters", k},             {"epochs", p.epochs},
            {"batch_size", p.batch_size},    {"learning_rate", p.learning_rate},
            {"views", p.views},              {"seed", p.seed},
            {"init_phrase", p.init_phrase},  {"max_train_items", p.max_train_items}};
  return jobs_->Submit(JobKind::kLearnPrompt, p.dataset, j.dump());
}

absl::StatusOr<JobInfo> ServerCore::Select(const SelectParams& p) {
  auto d = store_->GetDataset(p.dataset);
  if (!d.ok()) return d.status();
  static const std::set<std::string> kStrategies = {"random", "kmeans",   "kcenter", "typiclust",
                                                    "usl",    "activeft", "probcover", "updp"};
  if (!kStrategies.count(p.strategy)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "strategy: unknown strategy '", p.strategy,
        "' (expected random, kmeans, kcenter, typiclust, usl, activeft, probcover or updp)"));
  }
  if (p.budget <= 0) return absl::InvalidArgumentError("budget: must be > 0");
  std::string rule = p.rule.empty() ? "kmeans" : p.rule;
  if (rule != "kmeans" && rule != "cluster-head") {
    return absl::InvalidArgumentError(
        absl::StrCat("rule: '", p.rule, "' is not one of kmeans, cluster-head"));
  }
  if (rule == "cluster-head" && p.strategy != "updp") {
    return absl::InvalidArgumentError("rule: cluster-head applies to the updp strategy only");
  }
  std::string features = p.features;
  if (p.strategy == "updp") {
    if (p.prompt.empty()) return absl::InvalidArgumentError("prompt: the updp strategy needs a prompt");
    if (auto pr = store_->GetPrompt(p.prompt); !pr.ok()) return pr.status();
    if (!model_) {
      return absl::FailedPreconditionError("no BLIP-2 model is loaded (start the server with --model_dir)");
    }
    if (d->source_kind == SourceKind::kEmbeddings) {
      return absl::FailedPreconditionError(absl::StrCat(
          "dataset: '", p.dataset, "' brought its own embeddings; the updp strategy needs images"));
    }
    features = PromptFeatures(p.prompt);
  } else {
    if (features.empty()) {
      features = d->source_kind == SourceKind::kEmbeddings ? kUserEmbeddings : kImageFeatures;
    }
    const bool known = std::find(d->feature_sources.begin(), d->feature_sources.end(), features) !=
                       d->feature_sources.end();
    if (!known) {
      if (features == kImageFeatures) {
        return absl::FailedPreconditionError(absl::StrCat(
            "features: dataset '", p.dataset, "' has no image features yet; run StartEmbedding first"));
      }
      return absl::FailedPreconditionError(absl::StrCat(
          "features: dataset '", p.dataset, "' has no feature source '", features, "'"));
    }
    if (features == kImageFeatures) {
      // Image features must be complete: an EMBED job may still be filling chunks.
      auto chunks = store_->FeatureChunks(p.dataset, features);
      int64_t expected = (d->num_items + options_.chunk_size - 1) / options_.chunk_size;
      if (static_cast<int64_t>(chunks.size()) < expected) {
        return absl::FailedPreconditionError(absl::StrCat(
            "features: image features of '", p.dataset, "' are incomplete (", chunks.size(), " of ",
            expected, " chunks); finish or resume the EMBED job"));
      }
    }
  }
  if (!p.labeled_ids.empty()) {
    std::unordered_set<std::string> ids;
    for (const auto& it : store_->Items(p.dataset)) ids.insert(it.item_id);
    for (const auto& l : p.labeled_ids) {
      if (!ids.count(l)) {
        return absl::InvalidArgumentError(absl::StrCat("labeled_ids: unknown item id '", l, "'"));
      }
    }
  }
  json j = {{"strategy", p.strategy}, {"budget", p.budget},   {"seed", p.seed},
            {"features", features},   {"prompt", p.prompt},   {"labeled_ids", p.labeled_ids},
            {"rule", rule}};
  return jobs_->Submit(JobKind::kSelect, p.dataset, j.dump());
}

std::vector<JobInfo> ServerCore::ListJobs(const std::string& dataset, JobState state, int limit) {
  return store_->ListJobs(dataset, state, limit <= 0 ? 100 : std::min(limit, 10000));
}

absl::StatusOr<SelectionPage> ServerCore::GetSelection(const std::string& job_id, int page_size,
                                                       const std::string& page_token) {
  auto job = jobs_->Get(job_id);
  if (!job.ok()) return job.status();
  if (job->kind != JobKind::kSelect) {
    return absl::InvalidArgumentError(absl::StrCat("job_id: '", job_id, "' is not a SELECT job"));
  }
  if (job->state != JobState::kSucceeded) {
    return absl::FailedPreconditionError(absl::StrCat("job_id: '", job_id, "' is ",
                                                      JobStateName(job->state),
                                                      "; the selection exists once it SUCCEEDED"));
  }
  if (page_size < 0) return absl::InvalidArgumentError("page_size: must be >= 0");
  if (page_size == 0) page_size = 100;
  page_size = std::min(page_size, 10000);
  int64_t offset = 0;
  if (!page_token.empty() && (!absl::SimpleAtoi(page_token, &offset) || offset < 0)) {
    return absl::InvalidArgumentError("page_token: invalid");
  }
  SelectionPage page;
  page.total = store_->CountSelection(job_id);
  page.items = store_->GetSelection(job_id, offset, page_size);
  if (offset + static_cast<int64_t>(page.items.size()) < page.total) {
    page.next_page_token = std::to_string(offset + page.items.size());
  }
  page.dataset = job->dataset;
  page.strategy = json::parse(job->params_json).value("strategy", "");
  return page;
}

std::vector<PromptInfo> ServerCore::ListPrompts() { return store_->ListPrompts(); }

absl::StatusOr<std::pair<PromptInfo, std::string>> ServerCore::ExportPrompt(const std::string& name) {
  auto p = store_->GetPrompt(name);
  if (!p.ok()) return p.status();
  auto bytes = ReadFile(p->path);
  if (!bytes.ok()) return absl::DataLossError(absl::StrCat("prompt '", name, "': artifact missing"));
  return std::make_pair(*p, *bytes);
}

absl::StatusOr<PromptInfo> ServerCore::ImportPrompt(const std::string& name,
                                                    const std::string& bytes) {
  if (auto s = ValidateName("name", name); !s.ok()) return s;
  if (store_->GetPrompt(name).ok()) {
    return absl::AlreadyExistsError(absl::StrCat("name: prompt '", name, "' already exists"));
  }
  PromptInfo p;
  p.name = name;
  if (auto s = CheckPromptCompatible(bytes, &p.model_identity, &p.num_context, &p.num_clusters,
                                     &p.config_json);
      !s.ok()) {
    return s;
  }
  auto cfg = json::parse(p.config_json, nullptr, false);
  p.dataset = cfg.is_object() ? cfg.value("trained_on_dataset", "") : "";
  fs::create_directories(options_.data_dir + "/prompts");
  p.path = options_.data_dir + "/prompts/" + name + ".safetensors";
  p.created_ms = NowMs();
  if (auto s = WriteFileAtomically(p.path, bytes); !s.ok()) return s;
  if (auto s = store_->CreatePrompt(p); !s.ok()) return s;
  return p;
}

}  // namespace updp::core
