// The REGISTER job: ServerCore's registration entry point and job body. The name is
// reserved with the job (Store::CreateJob); the body lists or imports the source
// outside any lock, writes the items in batches and commits, publishing progress
// ("list"/"check" entries, "import" rows, "items" written) and stopping at each batch
// when asked. Anything short of the commit is rolled back before the job ends, so a
// registration is never resumed: it is registered again.
#include <algorithm>
#include <chrono>
#include <exception>
#include <filesystem>
#include <iostream>
#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/core/names.h"
#include "server/core/registration.h"
#include "server/core/registration_progress.h"
#include "server/core/server_core.h"

namespace updp::core {

namespace fs = std::filesystem;

namespace {

// Items per AddItems call (one store transaction each), and between progress reports.
constexpr size_t kItemBatch = 5000;

constexpr char kRolledBack[] = "the registration was rolled back; register the dataset again";

const char* PathField(SourceKind kind) {
  switch (kind) {
    case SourceKind::kImages:
      return "images.path";
    case SourceKind::kManifest:
      return "manifest.path";
    default:
      return "embeddings.path";
  }
}

// True when `path` names something inside `dir` (literally; resolved later).
bool InDir(const std::string& dir, const std::string& path) {
  return absl::StartsWith(path, dir + "/");
}

}  // namespace

absl::StatusOr<Registration> ServerCore::StartRegistration(const std::string& name, SourceKind kind,
                                                           const std::string& path,
                                                           const std::string& ids_path) {
  if (auto s = ValidateName("name", name); !s.ok()) return s;
  if (kind != SourceKind::kImages && kind != SourceKind::kManifest &&
      kind != SourceKind::kEmbeddings) {
    return absl::InvalidArgumentError("source: one of images, manifest or embeddings is required");
  }
  if (kind == SourceKind::kEmbeddings && !engine_) {
    return absl::FailedPreconditionError("embeddings: no engine to import them");
  }
  // The paths must exist inside the allowed roots before a job exists; the job
  // resolves them again when it runs (they may change meanwhile).
  if (auto r = paths_->Resolve(PathField(kind), path); !r.ok()) return r.status();
  if (kind == SourceKind::kEmbeddings && !ids_path.empty()) {
    if (auto r = paths_->Resolve("embeddings.ids_path", ids_path); !r.ok()) return r.status();
  }
  return QueueRegistration(name, kind, path, kind == SourceKind::kEmbeddings ? ids_path : "", path);
}

absl::StatusOr<Registration> ServerCore::StartUploadRegistration(const std::string& name,
                                                                 const std::string& npy_path,
                                                                 const std::string& ids_path) {
  if (auto s = ValidateName("name", name); !s.ok()) return s;
  if (!engine_) return absl::FailedPreconditionError("embeddings: no engine to import them");
  for (const std::string* p : {&npy_path, &ids_path}) {
    if (!p->empty() && !InDir(UploadDir(), *p)) {
      return absl::InternalError(absl::StrCat("upload file ", *p, " is not in ", UploadDir()));
    }
  }
  return QueueRegistration(name, SourceKind::kEmbeddings, npy_path, ids_path, kUploadedSource);
}

absl::StatusOr<Registration> ServerCore::QueueRegistration(const std::string& name, SourceKind kind,
                                                           const std::string& path,
                                                           const std::string& ids_path,
                                                           const std::string& shown_path) {
  RegisterParams p;
  p.source_kind = kind;
  p.path = path;
  p.ids_path = ids_path;
  p.chunk_size = std::max(1, options_.chunk_size);
  auto job = jobs_->Submit(name, p);  // reserves the name (ALREADY_EXISTS when taken)
  if (!job.ok()) return job.status();
  Registration r;
  r.job = *job;
  r.dataset.name = name;
  r.dataset.state = DatasetState::kRegistering;
  r.dataset.source_kind = kind;
  r.dataset.source_path = shown_path;
  r.dataset.chunk_size = p.chunk_size;
  r.dataset.created_ms = job->created_ms;
  r.dataset.registration_job_id = job->id;
  return r;
}

absl::Status ServerCore::RunRegistration(JobContext& ctx) {
  const JobInfo& job = ctx.job();
  RegistrationProgress progress(ctx);
  absl::Status status;
  try {
    status = Register(ctx, progress);
  } catch (const std::exception& e) {  // e.g. an allocation failure: still roll back
    status = absl::InternalError(absl::StrCat("registration failed: ", e.what()));
  }
  if (status.ok()) return status;
  // The reserved name is ours until the commit: nobody else created anything under it.
  const absl::Status rolled_back = RollBackRegistration(job.dataset, job.id);
  if (!rolled_back.ok()) {
    std::cerr << "updp-server: rolling back registration of '" << job.dataset
              << "': " << rolled_back << " (finished at the next start)\n";
  }
  if (ctx.Cancelled()) {
    return absl::CancelledError(rolled_back.ok() ? kRolledBack
                                                 : "the registration is rolled back at the next "
                                                   "start; register the dataset again");
  }
  return status;
}

absl::Status ServerCore::RollBackRegistration(const std::string& name, const std::string& job_id) {
  if (auto s = RemoveDatasetFiles(name, {}); !s.ok()) return s;
  return store_->RemoveDataset(name, job_id);
}

absl::Status ServerCore::Register(JobContext& ctx, RegistrationProgress& progress) {
  const JobInfo& job = ctx.job();
  const auto& p = std::get<RegisterParams>(job.params);
  std::function<void(const std::string&)> hook;
  {
    std::lock_guard<std::mutex> l(hook_mu_);
    hook = registration_hook_;
  }
  if (hook) hook(job.dataset);
  if (!progress.Report("list", 0, 0)) return JobStopped();
  if (p.source_kind == SourceKind::kEmbeddings) return RegisterEmbeddings(ctx, progress);
  auto list = p.source_kind == SourceKind::kImages
                  ? ScanImageDirectory(*paths_, p.path, progress.AsListProgress())
                  : ReadManifest(*paths_, p.path, progress.AsListProgress());
  if (!list.ok()) return list.status();
  return RegisterList(ctx, progress, *list);
}

absl::Status ServerCore::RegisterList(JobContext& ctx, RegistrationProgress& progress,
                                      const ItemList& list) {
  const std::string& name = ctx.job().dataset;
  const auto n = static_cast<int64_t>(list.items.size());
  for (int64_t begin = 0; begin < n; begin += kItemBatch) {
    if (!progress.Report("items", begin, n)) return JobStopped();
    const int64_t end = std::min<int64_t>(n, begin + kItemBatch);
    const std::vector<ItemRow> batch(list.items.begin() + begin, list.items.begin() + end);
    if (auto s = store_->AddItems(name, batch); !s.ok()) return s;
  }
  if (!progress.Report("items", n, n)) return JobStopped();
  if (auto s = store_->CommitDataset(name, list.source_path, n, list.failed, kUserEmbeddings, {});
      !s.ok()) {
    return s;
  }
  ctx.SetResult(absl::StrCat("{\"num_items\":", n, ",\"num_failed\":", list.failed.size(), "}"));
  return absl::OkStatus();
}

absl::Status ServerCore::RegisterEmbeddings(JobContext& ctx, RegistrationProgress& progress) {
  const std::string& name = ctx.job().dataset;
  const auto& p = std::get<RegisterParams>(ctx.job().params);
  // An upload's files are the server's own, under UploadDir(): resolved inside it, not
  // inside --allowed_roots; its problems name the upload's fields.
  const bool upload = InDir(UploadDir(), p.path);
  const PathPolicy upload_dir({UploadDir()});
  const PathPolicy& paths = upload ? upload_dir : *paths_;
  auto npy = paths.Resolve("embeddings.path", p.path);
  if (upload && absl::IsNotFound(npy.status())) {
    return absl::FailedPreconditionError(
        "the uploaded embeddings were removed when the server stopped; upload them again");
  }
  if (!npy.ok()) return npy.status();
  std::optional<IdsFile> ids;
  if (!p.ids_path.empty()) {
    auto read = IdsFile::Read(paths, p.ids_path);
    if (!read.ok()) return read.status();
    ids.emplace(std::move(*read));
  }
  auto dir = FeatureDir(name, kUserEmbeddings);
  if (!dir.ok()) return dir.status();
  std::error_code ec;
  fs::create_directories(*dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create '", *dir, "': ", ec.message()));
  // The rows stream into chunk files; nothing of the array is held in memory.
  auto chunks = engine_->ImportEmbeddings(
      *npy, *dir, ids ? ids->size() : -1,
      [&](int64_t done, int64_t total) { return progress.Report("import", done, total); });
  if (!chunks.ok()) return ctx.Cancelled() ? JobStopped() : chunks.status();
  int64_t rows = 0;
  for (const auto& c : *chunks) rows += c.count;
  // Items go in batches of one store transaction each: the ids are never all strings
  // at once. A duplicate id is refused by the store's unique index.
  std::vector<ItemRow> batch;
  absl::string_view id;
  for (int64_t i = 0; i < rows; ++i) {
    if (ids && !ids->Next(&id)) return absl::InternalError("embeddings.ids_path: ids ran out");
    batch.push_back({i, ids ? std::string(id) : std::to_string(i), ""});
    if (batch.size() == kItemBatch || i + 1 == rows) {
      if (auto s = store_->AddItems(name, batch); !s.ok()) {
        if (s.code() == absl::StatusCode::kAlreadyExists) {
          if (upload) return absl::AlreadyExistsError(absl::StrCat("chunk.ids: ", s.message()));
          return absl::InvalidArgumentError(absl::StrCat("embeddings.ids_path: ", s.message()));
        }
        return s;
      }
      batch.clear();
      if (!progress.Report("items", i + 1, rows)) return JobStopped();
    }
  }
  if (auto s = store_->CommitDataset(name, upload ? kUploadedSource : *npy, rows, {},
                                     kUserEmbeddings, *chunks);
      !s.ok()) {
    return s;
  }
  ctx.SetResult(absl::StrCat("{\"num_items\":", rows, ",\"num_failed\":0}"));
  return absl::OkStatus();
}

}  // namespace updp::core
