// ServerCore: the service without gRPC and without LibTorch (cf. TF Serving's
// ServerCore). Datasets, jobs, results and prompts; the RPC layer only converts to
// and from protos, and the model-backed engine (server/engine/) runs the job bodies.
#ifndef UPDP_SERVER_CORE_SERVER_CORE_H_
#define UPDP_SERVER_CORE_SERVER_CORE_H_

#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/core/data_dir_lock.h"
#include "server/core/engine.h"
#include "server/core/job_manager.h"
#include "server/core/metrics.h"
#include "server/core/paths.h"
#include "server/core/registration.h"
#include "server/core/selection_report.h"
#include "server/core/store.h"
#include "server/core/types.h"

namespace updp::core {

// Rows per feature chunk of imported embeddings (the import streams, so its memory does
// not depend on this). 2^18 keeps one chunk at 128 MiB for 256-d float16 and 1 GiB for
// 1024-d float32, which bounds what a reader that copies one chunk at a time holds,
// while 10,000,000 rows are still only 39 files and store rows.
inline constexpr int64_t kImportChunkRows = int64_t{1} << 18;

struct ServerOptions {
  std::string data_dir = "./data";
  std::string model_dir;  // empty: no model (only bring-your-own-embeddings datasets)
  std::string device = "cpu";
  std::string precision = "auto";
  std::string attention = "auto";          // auto | math | sdpa
  bool cuda_graphs = true;                 // replay the image path as CUDA graphs on CUDA
  std::string qformer_precision = "auto";  // Q-Former dtype on the image path
  bool fused_gelu = true;                  // tanh-GELU GEMM epilogue (CUDA, bf16 ViT)
  std::vector<std::string> allowed_roots;
  int queue_capacity = 64;
  int cpu_jobs = 1;       // selections running at once (the CPU lane)
  int cpu_threads = 0;    // threads of the selection pool (0 = one per core)
  int register_jobs = 2;  // registrations running at once (the I/O lane)
  int embed_batch_size = 32;
  int chunk_size = 1024;                         // items per feature chunk (the unit of resume)
  int64_t import_chunk_rows = kImportChunkRows;  // rows per chunk of imported embeddings
  int decode_threads = 2;
  int64_t prompt_cache_bytes = int64_t{8} << 30;  // cached ViT views for prompt learning
  int64_t max_upload_bytes = int64_t{64} << 30;   // one UploadEmbeddings call, as sent
};

// A registration as queued: its dataset (REGISTERING) and its REGISTER job (QUEUED).
struct Registration {
  DatasetInfo dataset;
  JobInfo job;
};

class RegistrationProgress;  // registration_progress.h

struct SelectionPage {
  std::vector<SelectionRow> items;
  std::string next_page_token;
  int64_t total = 0;
  std::string strategy;
  std::string dataset;
};

// One page of a DUPLICATES job's groups: rows in rank order, `cluster` the group and
// `score` the similarity to the group's representative (its first row).
struct DuplicateRow {
  SelectionRow row;
  bool representative = false;
};
struct DuplicatesPage {
  std::vector<DuplicateRow> items;
  std::string next_page_token;
  int64_t total_items = 0;
  int64_t total_groups = 0;
  double threshold = 0;
  std::string dataset;
};

// One page of a dataset's items, in index order.
struct ItemsPage {
  std::vector<ItemRow> items;
  std::string next_page_token;
  int64_t total = 0;
  int64_t chunk_size = 0;
};

class ServerCore {
 public:
  // Locks data_dir (FAILED_PRECONDITION if another server holds it), opens the store,
  // finishes registrations/deletions a stopped process left half done, marks jobs
  // it left RUNNING as INTERRUPTED, and removes unreferenced prompt files.
  static absl::StatusOr<std::unique_ptr<ServerCore>> Create(const ServerOptions& options,
                                                            Metrics* metrics);
  ~ServerCore();

  // The engine that imports embeddings and checks prompts; set before serving.
  void SetEngine(Engine* engine) { engine_ = engine; }
  // Starts the registration executors (they need no model).
  void StartRegistrations();
  // Starts the other job executors.
  void Start();
  // Graceful stop; see JobManager::Shutdown.
  bool Shutdown(int64_t grace_ms);

  // Checks what is cheap at once (name, source, the paths exist inside the allowed
  // roots), then reserves the name and queues its REGISTER job in one store
  // transaction. The job lists or imports the source, writes the items in batches and
  // commits (server/core/registration_job.cc); a failure, a cancel or a stop rolls back
  // everything it created, and the job is not resumable.
  absl::StatusOr<Registration> StartRegistration(const std::string& name, SourceKind kind,
                                                 const std::string& path,
                                                 const std::string& ids_path);
  // The same for an upload's temporary files (server/core/embeddings_upload.h): they
  // must lie in UploadDir(), which --allowed_roots need not contain (it is for paths
  // clients name). The dataset's source_path is kUploadedSource.
  absl::StatusOr<Registration> StartUploadRegistration(const std::string& name,
                                                       const std::string& npy_path,
                                                       const std::string& ids_path);
  // Where uploads write their temporary files (emptied at start-up).
  std::string UploadDir() const { return options_.data_dir + "/uploads"; }
  // Queues a REFRESH job (server/core/refresh_job.cc) that rescans an images or
  // manifest dataset's source: new files become new items, gone ones missing.
  absl::StatusOr<JobInfo> StartRefresh(const std::string& dataset);
  absl::StatusOr<DatasetInfo> GetDataset(const std::string& name);
  absl::StatusOr<std::vector<DatasetInfo>> ListDatasets();
  // Removes the dataset's rows, features, jobs, selections and job folders.
  absl::Status DeleteDataset(const std::string& name);

  absl::StatusOr<JobInfo> StartEmbedding(const std::string& dataset, int batch_size);
  // An EMBED job that attaches the feature chunks updp-embed-shard workers wrote into
  // `dir` (inside --allowed_roots) instead of computing them; validated when it runs.
  absl::StatusOr<JobInfo> AttachFeatures(const std::string& dataset, const std::string& dir);
  // Items in index order, page_size (default 1000, at most 10000) per page; the
  // token is the next index.
  absl::StatusOr<ItemsPage> ListItems(const std::string& dataset, int page_size,
                                      const std::string& page_token);
  absl::StatusOr<JobInfo> LearnPrompt(const std::string& dataset, LearnPromptParams p);
  absl::StatusOr<JobInfo> Select(const std::string& dataset, SelectParams p);
  JobManager& jobs() { return *jobs_; }
  absl::StatusOr<std::vector<JobInfo>> ListJobs(const std::string& dataset, JobState state,
                                                int limit);

  absl::StatusOr<SelectionPage> GetSelection(const std::string& job_id, int page_size,
                                             const std::string& page_token);

  // A page of a SUCCEEDED SELECT job's report (selection_report.cc): the summary on
  // the first page, thumbnails made by the engine (a picture that cannot be decoded
  // gets an error text, never fails the call). Slow (decodes images): call it off the
  // RPC threads.
  absl::StatusOr<SelectionReport> GetSelectionReport(const SelectionReportRequest& req);

  // A DUPLICATES job on the dataset's features (default as for Select).
  absl::StatusOr<JobInfo> FindDuplicates(const std::string& dataset, DuplicatesParams p);
  absl::StatusOr<DuplicatesPage> GetDuplicates(const std::string& job_id, int page_size,
                                               const std::string& page_token);

  absl::StatusOr<std::vector<PromptInfo>> ListPrompts();
  absl::StatusOr<std::pair<PromptInfo, std::string>> ExportPrompt(const std::string& name);
  absl::StatusOr<PromptInfo> ImportPrompt(const std::string& name, const std::string& bytes);

  // For job bodies: where a dataset's feature source and a job's working files live
  // (checked to stay under data_dir), a stored prompt's artifact, and the commit of
  // a learned prompt (ALREADY_EXISTS if its name was taken meanwhile).
  absl::StatusOr<std::string> FeatureDir(const std::string& dataset,
                                         const std::string& source) const;
  absl::StatusOr<std::string> JobDir(const std::string& job_id) const;
  absl::StatusOr<std::string> PromptArtifact(const std::string& name);
  absl::Status StoreLearnedPrompt(PromptInfo info, const std::string& bytes,
                                  const std::string& job_id);

  Store& store() { return *store_; }
  Metrics* metrics() { return metrics_; }
  const ServerOptions& options() const { return options_; }
  const PathPolicy& paths() const { return *paths_; }

  // Tests: called on the REGISTER job's thread after the name is reserved and before
  // the source is read (it may block there).
  void SetRegistrationHookForTest(std::function<void(const std::string&)> hook) {
    std::lock_guard<std::mutex> l(hook_mu_);
    registration_hook_ = std::move(hook);
  }

 private:
  ServerCore() = default;
  absl::Status Recover();
  // Start-up: settles REGISTER jobs a stopped process left RUNNING (SUCCEEDED if their
  // dataset committed, else INTERRUPTED: rolled back below, not resumable).
  absl::Status SettleInterruptedRegistrations();
  // Removes a dataset's feature folder and its jobs' folders.
  absl::Status RemoveDatasetFiles(const std::string& name, const std::vector<std::string>& job_ids);
  // The REGISTER job body, and its parts (registration_job.cc).
  absl::Status RunRegistration(JobContext& ctx);
  absl::Status Register(JobContext& ctx, RegistrationProgress& progress);
  // A listed source (directory or manifest): items written in batches, then commit.
  absl::Status RegisterList(JobContext& ctx, RegistrationProgress& progress, const ItemList& list);
  // A .npy streamed into feature chunks, its items written in batches.
  absl::Status RegisterEmbeddings(JobContext& ctx, RegistrationProgress& progress);
  // The REFRESH job body (one per dataset at a time), and its work.
  absl::Status RunRefresh(JobContext& ctx);
  absl::Status Refresh(JobContext& ctx);
  // Queues the REGISTER job; the caller checked the name and the paths.
  absl::StatusOr<Registration> QueueRegistration(const std::string& name, SourceKind kind,
                                                 const std::string& path,
                                                 const std::string& ids_path,
                                                 const std::string& shown_path);
  // Removes the files and rows of a registration that did not commit; the REGISTER job
  // `job_id` stays, to show how it ended.
  absl::Status RollBackRegistration(const std::string& name, const std::string& job_id);
  // Defaults `features` (the dataset's embeddings if it brought them, else "image")
  // and checks that the dataset has that source, complete (FAILED_PRECONDITION).
  absl::Status ResolveFeatures(const DatasetInfo& d, std::string* features);
  // OK when the engine can run model-backed work now.
  absl::Status ModelAvailable() const;

  ServerOptions options_;
  Metrics* metrics_ = nullptr;
  std::unique_ptr<DataDirLock> lock_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<PathPolicy> paths_;
  std::unique_ptr<JobManager> jobs_;
  Engine* engine_ = nullptr;
  // Guarded: a test sets it while REGISTER jobs of earlier calls may still read it.
  std::mutex hook_mu_;
  std::function<void(const std::string&)> registration_hook_;
  std::mutex refresh_mu_;
  std::set<std::string> refreshing_;  // datasets a REFRESH job is working on
};

// Feature source names.
inline constexpr char kImageFeatures[] = "image";
inline constexpr char kUserEmbeddings[] = "embeddings";
// The source_path of a dataset registered by UploadEmbeddings.
inline constexpr char kUploadedSource[] = "(uploaded)";
std::string PromptFeatures(const std::string& prompt);

}  // namespace updp::core

#endif  // UPDP_SERVER_CORE_SERVER_CORE_H_
