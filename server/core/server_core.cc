#include "server/core/server_core.h"

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <iostream>
#include <optional>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "server/core/embeddings_upload.h"
#include "server/core/names.h"
#include "server/core/registration.h"
#include "server/select/names.h"
#include "server/util/atomic_file.h"
#include "server/util/error_text.h"
#include "server/util/remove_tree.h"

namespace updp::core {

namespace fs = std::filesystem;

namespace {

// Paged listings: a page size (0: the default, at most 10,000) and a token that is the
// next offset.
absl::Status ParsePage(const std::string& token, int default_size, int* size, int64_t* offset) {
  if (*size < 0) return absl::InvalidArgumentError("page_size: must be >= 0");
  if (*size == 0) *size = default_size;
  *size = std::min(*size, 10000);
  *offset = 0;
  if (!token.empty() && (!absl::SimpleAtoi(token, offset) || *offset < 0)) {
    return absl::InvalidArgumentError("page_token: invalid");
  }
  return absl::OkStatus();
}

constexpr char kModelLoading[] =
    "the BLIP-2 model is still loading; retry when health reports SERVING";
constexpr size_t kMaxLabeledIds = 1000000;
// A ViT-g prompt (M = 64, K = 100,000 clusters) is ~330 MB in float32; a realistic one
// (K <= 10,000) is under 40 MB.
constexpr size_t kMaxPromptBytes = size_t{64} << 20;

}  // namespace

std::string PromptFeatures(const std::string& prompt) { return "prompt:" + prompt; }

absl::StatusOr<std::unique_ptr<ServerCore>> ServerCore::Create(const ServerOptions& options,
                                                               Metrics* metrics) {
  std::unique_ptr<ServerCore> c(new ServerCore());
  c->options_ = options;
  c->metrics_ = metrics;
  auto lock = DataDirLock::Acquire(options.data_dir);
  if (!lock.ok()) return lock.status();
  c->lock_ = std::move(*lock);
  auto store = Store::Open(options.data_dir);
  if (!store.ok()) return store.status();
  c->store_ = std::move(*store);
  if (auto s = c->Recover(); !s.ok()) return s;
  if (auto s = ClearUploadDir(c->UploadDir()); !s.ok()) return s;
  c->paths_ = std::make_unique<PathPolicy>(options.allowed_roots);
  JobManagerOptions jo;
  jo.queue_capacity = options.queue_capacity;
  jo.cpu_jobs = options.cpu_jobs;
  jo.register_jobs = options.register_jobs;
  c->jobs_ = std::make_unique<JobManager>(c->store_.get(), metrics, jo);
  // Registrations read files and write the store: their own lane, so that they never
  // wait behind a selection or an embedding (nor hold one up).
  ServerCore* core = c.get();
  c->jobs_->RegisterKind(JobKind::kRegister, Lane::kIo,
                         [core](JobContext& ctx) { return core->RunRegistration(ctx); });
  // A refresh lists files like a registration: the same lane.
  c->jobs_->RegisterKind(JobKind::kRefresh, Lane::kIo,
                         [core](JobContext& ctx) { return core->RunRefresh(ctx); });
  return c;
}

ServerCore::~ServerCore() {
  // The job manager waits for its workers before the store goes away.
  jobs_.reset();
}

absl::Status ServerCore::SettleInterruptedRegistrations() {
  auto running = store_->JobIdsInState(JobState::kRunning);
  if (!running.ok()) return running.status();
  for (const auto& id : *running) {
    auto job = store_->GetJob(id);
    if (!job.ok() || job->kind != JobKind::kRegister) continue;  // marked INTERRUPTED below
    JobInfo next = *job;
    next.finished_ms = NowMs();
    auto committed = store_->GetDataset(job->dataset);
    if (committed.ok() && committed->registration_job_id == id) {
      next.state = JobState::kSucceeded;  // stopped between its commit and its last write
      next.progress.message = "committed before the server stopped";
    } else {
      next.state = JobState::kInterrupted;  // its dataset is rolled back in Recover
      next.progress.message =
          "server stopped during the registration; it was rolled back; register the dataset "
          "again";
    }
    if (auto s = store_->Transition(id, JobState::kRunning, next.state, next); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status ServerCore::Recover() {
  if (auto s = SettleInterruptedRegistrations(); !s.ok()) return s;
  auto interrupted = store_->MarkRunningInterrupted();
  if (!interrupted.ok()) return interrupted.status();
  auto unfinished = store_->UnfinishedDatasets();
  if (!unfinished.ok()) return unfinished.status();
  for (const auto& [name, state, registration_job] : *unfinished) {
    const bool registering = state == DatasetState::kRegistering;
    if (registering && !registration_job.empty()) {
      // A REGISTER job still QUEUED never ran: nothing to roll back, it runs after start.
      auto job = store_->GetJob(registration_job);
      if (job.ok() && job->state == JobState::kQueued) continue;
    }
    auto ids = store_->JobIdsOf(name);
    if (!ids.ok()) return ids.status();
    // A file that cannot be removed now (permissions) must not keep the server down:
    // the dataset stays DELETING/REGISTERING and invisible, and DeleteDataset or the
    // next start continues.
    if (auto s = RemoveDatasetFiles(name, *ids); !s.ok()) {
      std::cerr << "updp-server: dataset '" << name << "': cleanup left for later: " << s << "\n";
      continue;
    }
    // A rolled-back registration keeps its REGISTER job, to show how it ended.
    if (auto s = store_->RemoveDataset(name, registering ? registration_job : ""); !s.ok()) {
      return s;
    }
    std::cerr << "updp-server: dataset '" << name
              << "': " << (registering ? "registration" : "deletion")
              << " left unfinished by a stopped server was "
              << (registering ? "rolled back" : "completed") << "\n";
  }
  // Items a refresh appended but did not commit before the process stopped.
  auto ready = store_->ListDatasets();
  if (!ready.ok()) return ready.status();
  for (const auto& d : *ready) {
    if (auto s = store_->DropUncommittedItems(d.name); !s.ok()) return s;
  }
  // Prompt files written by a job or import that stopped before its commit.
  auto prompts = store_->ListPrompts();
  if (!prompts.ok()) return prompts.status();
  std::set<std::string> referenced;
  for (const auto& p : *prompts) referenced.insert(fs::path(p.path).filename().string());
  std::error_code ec;
  const std::string dir = options_.data_dir + "/prompts";
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (!referenced.count(name) && absl::StrContains(name, ".safetensors")) {
      std::error_code rec;
      fs::remove(it->path(), rec);
    }
  }
  return absl::OkStatus();
}

void ServerCore::StartRegistrations() { jobs_->Start({Lane::kIo}); }

void ServerCore::Start() { jobs_->Start(); }

bool ServerCore::Shutdown(int64_t grace_ms) { return jobs_ ? jobs_->Shutdown(grace_ms) : true; }

absl::StatusOr<std::string> ServerCore::FeatureDir(const std::string& dataset,
                                                   const std::string& source) const {
  std::string s = source;
  std::replace(s.begin(), s.end(), ':', '_');
  auto base = ChildPath(options_.data_dir + "/features", dataset);
  if (!base.ok()) return base.status();
  return ChildPath(*base, s);
}

absl::StatusOr<std::string> ServerCore::JobDir(const std::string& job_id) const {
  return ChildPath(options_.data_dir + "/jobs", job_id);
}

absl::Status ServerCore::RemoveDatasetFiles(const std::string& name,
                                            const std::vector<std::string>& job_ids) {
  for (const auto& id : job_ids) {
    auto dir = JobDir(id);
    if (!dir.ok()) return dir.status();
    if (auto s = RemoveTree(*dir); !s.ok()) return s;
  }
  auto dir = ChildPath(options_.data_dir + "/features", name);
  if (!dir.ok()) return dir.status();
  return RemoveTree(*dir);
}

absl::Status ServerCore::ModelAvailable() const {
  if (!engine_ || !engine_->HasModel()) {
    return absl::FailedPreconditionError(
        "no BLIP-2 model is loaded (start the server with --model_dir)");
  }
  if (!engine_->Ready()) return absl::UnavailableError(kModelLoading);
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Datasets

absl::StatusOr<DatasetInfo> ServerCore::GetDataset(const std::string& name) {
  if (auto s = ValidateName("name", name); !s.ok()) return s;
  return store_->GetDataset(name);
}

absl::StatusOr<std::vector<DatasetInfo>> ServerCore::ListDatasets() {
  return store_->ListDatasets();
}

absl::Status ServerCore::DeleteDataset(const std::string& name) {
  if (auto s = ValidateName("name", name); !s.ok()) return s;
  auto job_ids = store_->BeginDeleteDataset(name);
  if (!job_ids.ok()) return job_ids.status();
  // The name stays reserved (DELETING) until the rows go: a registration of the same
  // name cannot start while these files are removed.
  if (auto s = RemoveDatasetFiles(name, *job_ids); !s.ok()) return s;
  return store_->RemoveDataset(name);
}

// ---------------------------------------------------------------------------
// Jobs

absl::StatusOr<JobInfo> ServerCore::StartEmbedding(const std::string& dataset, int batch_size) {
  if (auto s = ValidateName("dataset", dataset); !s.ok()) return s;
  auto d = store_->GetDataset(dataset);
  if (!d.ok()) return d.status();
  if (d->source_kind == SourceKind::kEmbeddings) {
    return absl::FailedPreconditionError(absl::StrCat(
        "dataset: '", dataset, "' brought its own embeddings; there are no images to embed"));
  }
  if (auto s = ModelAvailable(); !s.ok()) return s;
  if (batch_size < 0) return absl::InvalidArgumentError("batch_size: must be >= 0");
  EmbedParams p;
  p.batch_size = batch_size > 0 ? batch_size : options_.embed_batch_size;
  p.chunk_size = d->chunk_size;
  return jobs_->Submit(dataset, p);
}

absl::StatusOr<JobInfo> ServerCore::AttachFeatures(const std::string& dataset,
                                                   const std::string& dir) {
  if (auto s = ValidateName("dataset", dataset); !s.ok()) return s;
  auto d = store_->GetDataset(dataset);
  if (!d.ok()) return d.status();
  if (d->source_kind == SourceKind::kEmbeddings) {
    return absl::FailedPreconditionError(
        absl::StrCat("dataset: '", dataset,
                     "' brought its own embeddings; there are no image features to "
                     "attach"));
  }
  // The model's identity is what the shards' features are checked against.
  if (auto s = ModelAvailable(); !s.ok()) return s;
  if (dir.empty()) return absl::InvalidArgumentError("dir: a feature directory is required");
  auto resolved = paths_->Resolve("dir", dir);
  if (!resolved.ok()) return resolved.status();
  std::error_code ec;
  if (!fs::is_directory(*resolved, ec)) {
    return absl::InvalidArgumentError(absl::StrCat("dir: '", dir, "' is not a directory"));
  }
  auto chunks = store_->FeatureChunks(dataset, kImageFeatures);
  if (!chunks.ok()) return chunks.status();
  if (!chunks->empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("dataset: '", dataset, "' already has ", chunks->size(),
                     " image feature chunks (an EMBED ran); attach to a dataset without them"));
  }
  EmbedParams p;
  p.batch_size = options_.embed_batch_size;
  p.chunk_size = d->chunk_size;
  p.attach_dir = *resolved;
  return jobs_->Submit(dataset, p);
}

absl::StatusOr<ItemsPage> ServerCore::ListItems(const std::string& dataset, int page_size,
                                                const std::string& page_token) {
  if (auto s = ValidateName("dataset", dataset); !s.ok()) return s;
  auto d = store_->GetDataset(dataset);
  if (!d.ok()) return d.status();
  int64_t offset = 0;
  if (auto s = ParsePage(page_token, /*default_size=*/1000, &page_size, &offset); !s.ok()) return s;
  ItemsPage page;
  page.total = d->num_items;
  page.chunk_size = d->chunk_size;
  const int64_t end = std::min<int64_t>(d->num_items, offset + page_size);
  if (offset < end) {
    auto items = store_->ItemsRange(dataset, offset, end);
    if (!items.ok()) return items.status();
    page.items = std::move(*items);
  }
  if (end < page.total) page.next_page_token = std::to_string(end);
  return page;
}

absl::StatusOr<JobInfo> ServerCore::LearnPrompt(const std::string& dataset, LearnPromptParams p) {
  if (auto s = ValidateName("dataset", dataset); !s.ok()) return s;
  auto d = store_->GetDataset(dataset);
  if (!d.ok()) return d.status();
  if (d->source_kind == SourceKind::kEmbeddings) {
    return absl::FailedPreconditionError(absl::StrCat(
        "dataset: '", dataset, "' brought its own embeddings; prompt learning needs images"));
  }
  if (auto s = ModelAvailable(); !s.ok()) return s;
  if (auto s = ValidateName("prompt_name", p.prompt_name); !s.ok()) return s;
  if (p.num_context < 1 || p.num_context > 64) {
    return absl::InvalidArgumentError("num_context: must be in 1..64");
  }
  if (p.epochs < 1 || p.epochs > 10000)
    return absl::InvalidArgumentError("epochs: must be in 1..10000");
  if (p.batch_size < 2) return absl::InvalidArgumentError("batch_size: must be >= 2");
  if (p.views < 2 || p.views > 16) return absl::InvalidArgumentError("views: must be in 2..16");
  if (!(p.learning_rate > 0)) return absl::InvalidArgumentError("learning_rate: must be > 0");
  if (p.num_clusters < 0 || p.intended_budget < 0 || p.max_train_items < 0) {
    return absl::InvalidArgumentError(
        "num_clusters, intended_budget and max_train_items must be >= 0");
  }
  if (p.init_phrase.size() > 1000)
    return absl::InvalidArgumentError("init_phrase: longer than 1000 bytes");
  p.num_clusters =
      p.num_clusters > 0 ? p.num_clusters : (p.intended_budget > 0 ? p.intended_budget : 100);
  if (p.num_clusters < 2) return absl::InvalidArgumentError("num_clusters: must be >= 2");
  // The store reserves the prompt name with the job (ALREADY_EXISTS when taken).
  return jobs_->Submit(dataset, p);
}

absl::Status ServerCore::ResolveFeatures(const DatasetInfo& d, std::string* features) {
  if (features->empty()) {
    *features = d.source_kind == SourceKind::kEmbeddings ? kUserEmbeddings : kImageFeatures;
  }
  const bool known = std::find(d.feature_sources.begin(), d.feature_sources.end(), *features) !=
                     d.feature_sources.end();
  if (!known) {
    if (*features == kImageFeatures) {
      return absl::FailedPreconditionError(absl::StrCat(
          "features: dataset '", d.name, "' has no image features yet; run StartEmbedding first"));
    }
    return absl::FailedPreconditionError(
        absl::StrCat("features: dataset '", d.name, "' has no feature source ", Quote(*features)));
  }
  if (*features != kUserEmbeddings) {
    // Model features must be complete: an EMBED job may still be filling chunks, or a
    // refresh may have added items that have none yet.
    auto chunks = store_->FeatureChunks(d.name, *features);
    if (!chunks.ok()) return chunks.status();
    const int64_t cs = std::max<int64_t>(1, d.chunk_size);
    const int64_t expected = (d.num_items + cs - 1) / cs;
    int64_t complete = 0;
    for (const auto& c : *chunks)
      complete += c.chunk < expected && ChunkComplete(c, d.num_items, cs);
    if (complete < expected) {
      if (*features == kImageFeatures) {
        return absl::FailedPreconditionError(
            absl::StrCat("features: image features of '", d.name, "' are incomplete (", complete,
                         " of ", expected,
                         " chunks); run or resume StartEmbedding (after a refresh it embeds only "
                         "the new items)"));
      }
      return absl::FailedPreconditionError(absl::StrCat(
          "features: ", Quote(*features), " of '", d.name, "' do not cover every item (", complete,
          " of ", expected, " chunks); a updp selection with the prompt extracts them"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<JobInfo> ServerCore::Select(const std::string& dataset, SelectParams p) {
  if (auto s = ValidateName("dataset", dataset); !s.ok()) return s;
  auto d = store_->GetDataset(dataset);
  if (!d.ok()) return d.status();
  if (!select::IsStrategy(p.strategy)) {
    return absl::InvalidArgumentError(absl::StrCat("strategy: unknown strategy ", Quote(p.strategy),
                                                   " (expected ", select::StrategyNamesText(),
                                                   ")"));
  }
  if (p.budget <= 0) return absl::InvalidArgumentError("budget: must be > 0");
  if (p.rule.empty()) p.rule = "kmeans";
  if (p.rule != "kmeans" && p.rule != "cluster-head") {
    return absl::InvalidArgumentError(
        absl::StrCat("rule: ", Quote(p.rule), " is not one of kmeans, cluster-head"));
  }
  if (p.rule == "cluster-head" && p.strategy != "updp") {
    return absl::InvalidArgumentError("rule: cluster-head applies to the updp strategy only");
  }
  if (d->num_items > 0 && d->num_failed >= d->num_items) {
    return absl::FailedPreconditionError(
        absl::StrCat("dataset: every one of the ", d->num_items, " items of '", dataset,
                     "' is missing or failed to decode; there is nothing to select from"));
  }
  if (p.strategy == "updp") {
    if (p.prompt.empty())
      return absl::InvalidArgumentError("prompt: the updp strategy needs a prompt");
    if (auto s = ValidateName("prompt", p.prompt); !s.ok()) return s;
    if (auto pr = store_->GetPrompt(p.prompt); !pr.ok()) return pr.status();
    if (d->source_kind == SourceKind::kEmbeddings) {
      return absl::FailedPreconditionError(absl::StrCat(
          "dataset: '", dataset, "' brought its own embeddings; the updp strategy needs images"));
    }
    if (auto s = ModelAvailable(); !s.ok()) return s;
    p.features = PromptFeatures(p.prompt);
  } else if (auto s = ResolveFeatures(*d, &p.features); !s.ok()) {
    return s;
  }
  if (!(p.dedup >= 0 && p.dedup <= 1)) {  // NaN too
    return absl::InvalidArgumentError(
        absl::StrCat("dedup: ", p.dedup, " is not a cosine similarity in (0, 1] (0 = off)"));
  }
  if (p.only_new) {
    // The items the newest refresh added; stored resolved, so that the job means the
    // same whenever it runs.
    if (d->generation == 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("only_new: no refresh has added items to '", dataset,
                       "' since it was registered; add files and run RefreshDataset first"));
    }
    p.min_generation = d->generation;
  }
  if (p.min_generation < 0 || p.min_generation > d->generation) {
    return absl::InvalidArgumentError(absl::StrCat("min_generation: ", p.min_generation,
                                                   " is not a generation of '", dataset, "' (0..",
                                                   d->generation, ")"));
  }
  if (p.labeled_ids.size() > kMaxLabeledIds) {
    return absl::InvalidArgumentError(
        absl::StrCat("labeled_ids: more than ", kMaxLabeledIds, " ids"));
  }
  if (!p.labeled_ids.empty()) {
    auto unknown =
        store_->UnknownItemIds(dataset, p.labeled_ids, p.strict_labeled ? 1 : p.labeled_ids.size());
    if (!unknown.ok()) return unknown.status();
    if (!unknown->empty() && p.strict_labeled) {
      return absl::InvalidArgumentError(
          absl::StrCat("labeled_ids: unknown item id ", Quote(unknown->front())));
    }
    // Lenient: the job keeps the known ids (the ones its picks exclude) and a count of
    // the rest, which the client reports.
    if (!unknown->empty()) {
      const std::set<std::string> drop(unknown->begin(), unknown->end());
      std::vector<std::string> known;
      for (auto& id : p.labeled_ids) {
        if (drop.count(id)) {
          ++p.labeled_unknown;
          if (p.labeled_unknown_first.size() < 10) p.labeled_unknown_first.push_back(id);
        } else {
          known.push_back(std::move(id));
        }
      }
      p.labeled_ids = std::move(known);
    }
  }
  return jobs_->Submit(dataset, p);
}

absl::StatusOr<JobInfo> ServerCore::FindDuplicates(const std::string& dataset, DuplicatesParams p) {
  if (auto s = ValidateName("dataset", dataset); !s.ok()) return s;
  if (!(p.threshold > 0 && p.threshold <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("threshold: ", p.threshold, " is not a cosine similarity in (0, 1]"));
  }
  auto d = store_->GetDataset(dataset);
  if (!d.ok()) return d.status();
  if (auto s = ResolveFeatures(*d, &p.features); !s.ok()) return s;
  return jobs_->Submit(dataset, p);
}

absl::StatusOr<std::vector<JobInfo>> ServerCore::ListJobs(const std::string& dataset,
                                                          JobState state, int limit) {
  return store_->ListJobs(dataset, state, limit <= 0 ? 100 : std::min(limit, 10000));
}

absl::StatusOr<SelectionPage> ServerCore::GetSelection(const std::string& job_id, int page_size,
                                                       const std::string& page_token) {
  auto job = jobs_->Get(job_id);
  if (!job.ok()) return job.status();
  const auto* params = std::get_if<SelectParams>(&job->params);
  if (!params) {
    return absl::InvalidArgumentError(absl::StrCat("job_id: '", job_id, "' is not a SELECT job"));
  }
  if (job->state != JobState::kSucceeded) {
    return absl::FailedPreconditionError(absl::StrCat("job_id: '", job_id, "' is ",
                                                      JobStateName(job->state),
                                                      "; the selection exists once it SUCCEEDED"));
  }
  int64_t offset = 0;
  if (auto s = ParsePage(page_token, /*default_size=*/100, &page_size, &offset); !s.ok()) return s;
  SelectionPage page;
  auto total = store_->CountSelection(job_id);
  if (!total.ok()) return total.status();
  page.total = *total;
  auto items = store_->GetSelection(job_id, offset, page_size);
  if (!items.ok()) return items.status();
  page.items = std::move(*items);
  if (offset + static_cast<int64_t>(page.items.size()) < page.total) {
    page.next_page_token = std::to_string(offset + page.items.size());
  }
  page.dataset = job->dataset;
  page.strategy = params->strategy;
  return page;
}

absl::StatusOr<DuplicatesPage> ServerCore::GetDuplicates(const std::string& job_id, int page_size,
                                                         const std::string& page_token) {
  auto job = jobs_->Get(job_id);
  if (!job.ok()) return job.status();
  const auto* params = std::get_if<DuplicatesParams>(&job->params);
  if (!params) {
    return absl::InvalidArgumentError(
        absl::StrCat("job_id: '", job_id, "' is not a DUPLICATES job"));
  }
  if (job->state != JobState::kSucceeded) {
    return absl::FailedPreconditionError(absl::StrCat("job_id: '", job_id, "' is ",
                                                      JobStateName(job->state),
                                                      "; its groups exist once it SUCCEEDED"));
  }
  int64_t offset = 0;
  if (auto s = ParsePage(page_token, /*default_size=*/100, &page_size, &offset); !s.ok()) return s;
  DuplicatesPage page;
  page.dataset = job->dataset;
  page.threshold = params->threshold;
  auto total = store_->CountSelection(job_id);
  if (!total.ok()) return total.status();
  page.total_items = *total;
  // Rows are stored like picks: rank order, the group in `cluster` and the similarity
  // to the representative in `score`. The row before the page tells whether the
  // page's first row starts a group.
  const int64_t from = std::max<int64_t>(0, offset - 1);
  auto rows = store_->GetSelection(job_id, from, page_size + (offset - from));
  if (!rows.ok()) return rows.status();
  int64_t prev_group = -1;
  for (size_t i = 0; i < rows->size(); ++i) {
    const SelectionRow& r = (*rows)[i];
    const bool first = r.cluster != prev_group;
    prev_group = r.cluster;
    if (from + static_cast<int64_t>(i) < offset) continue;
    page.items.push_back({r, first});
  }
  if (offset + static_cast<int64_t>(page.items.size()) < page.total_items) {
    page.next_page_token = std::to_string(offset + page.items.size());
  }
  if (page.total_items > 0) {  // groups are numbered 0.. in rank order
    auto last = store_->GetSelection(job_id, page.total_items - 1, 1);
    if (!last.ok()) return last.status();
    if (!last->empty()) page.total_groups = last->front().cluster + 1;
  }
  return page;
}

// ---------------------------------------------------------------------------
// Prompts

absl::StatusOr<std::vector<PromptInfo>> ServerCore::ListPrompts() { return store_->ListPrompts(); }

absl::StatusOr<std::string> ServerCore::PromptArtifact(const std::string& name) {
  auto p = store_->GetPrompt(name);
  if (!p.ok()) return p.status();
  auto bytes = ReadFile(p->path);
  if (!bytes.ok())
    return absl::DataLossError(absl::StrCat("prompt '", name, "': artifact missing"));
  return bytes;
}

absl::StatusOr<std::pair<PromptInfo, std::string>> ServerCore::ExportPrompt(
    const std::string& name) {
  if (auto s = ValidateName("name", name); !s.ok()) return s;
  auto p = store_->GetPrompt(name);
  if (!p.ok()) return p.status();
  auto bytes = PromptArtifact(name);
  if (!bytes.ok()) return bytes.status();
  return std::make_pair(*p, std::move(*bytes));
}

namespace {

// A file name no other writer uses: prompts/<name>.<owner>.safetensors.
absl::StatusOr<std::string> PromptPath(const std::string& data_dir, const std::string& name,
                                       const std::string& owner) {
  std::error_code ec;
  fs::create_directories(data_dir + "/prompts", ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create prompts folder: ", ec.message()));
  return ChildPath(data_dir + "/prompts", absl::StrCat(name, ".", owner, ".safetensors"));
}

}  // namespace

absl::StatusOr<PromptInfo> ServerCore::ImportPrompt(const std::string& name,
                                                    const std::string& bytes) {
  if (auto s = ValidateName("name", name); !s.ok()) return s;
  if (!engine_ || !engine_->HasModel()) {
    return absl::FailedPreconditionError(
        "no BLIP-2 model is loaded to check the prompt's compatibility against");
  }
  if (!engine_->Ready()) return absl::UnavailableError(kModelLoading);
  if (bytes.size() > kMaxPromptBytes) {
    return absl::InvalidArgumentError(absl::StrCat("artifact: ", bytes.size(),
                                                   " bytes; a prompt artifact is at most ",
                                                   kMaxPromptBytes >> 20, " MiB"));
  }
  if (auto existing = store_->GetPrompt(name); existing.ok()) {
    return absl::AlreadyExistsError(absl::StrCat("name: prompt ", Quote(name), " already exists"));
  }
  auto meta = engine_->CheckPrompt(bytes);
  if (!meta.ok()) return meta.status();
  PromptInfo p;
  p.name = name;
  p.dataset = meta->trained_on_dataset;
  p.model_identity = meta->model_identity;
  p.num_context = meta->num_context;
  p.num_clusters = meta->num_clusters;
  p.config_json = meta->config_json;
  p.created_ms = NowMs();
  static std::atomic<uint64_t> counter{0};
  auto path =
      PromptPath(options_.data_dir, name, absl::StrCat("import-", p.created_ms, "-", counter++));
  if (!path.ok()) return path.status();
  p.path = *path;
  if (auto s = WriteFileAtomically(p.path, bytes); !s.ok()) return s;
  if (auto s = store_->CreatePrompt(p); !s.ok()) {
    std::error_code ec;
    fs::remove(p.path, ec);  // ours alone: the name was not committed
    if (s.code() == absl::StatusCode::kAlreadyExists) {
      return absl::AlreadyExistsError(absl::StrCat("name: ", s.message()));
    }
    return s;
  }
  return p;
}

absl::Status ServerCore::StoreLearnedPrompt(PromptInfo info, const std::string& bytes,
                                            const std::string& job_id) {
  auto path = PromptPath(options_.data_dir, info.name, job_id);
  if (!path.ok()) return path.status();
  info.path = *path;
  if (auto s = WriteFileAtomically(info.path, bytes); !s.ok()) return s;
  if (auto s = store_->CommitLearnedPrompt(info, job_id); !s.ok()) {
    std::error_code ec;
    fs::remove(info.path, ec);
    return s;
  }
  return absl::OkStatus();
}

}  // namespace updp::core
