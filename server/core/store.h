// Metadata store: one SQLite database (WAL mode) under --data_dir holding datasets,
// items, failed items, feature chunks, jobs, selections and prompts. Versioned
// schema with forward migrations. Thread-safe (one connection behind a mutex).
#ifndef UPDP_SERVER_CORE_STORE_H_
#define UPDP_SERVER_CORE_STORE_H_

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/core/types.h"

struct sqlite3;

namespace updp::core {

class Store {
 public:
  static constexpr int kSchemaVersion = 1;

  // Opens (creating and migrating) data_dir/updp.db.
  static absl::StatusOr<std::unique_ptr<Store>> Open(const std::string& data_dir);
  ~Store();

  int schema_version();
  const std::string& data_dir() const { return data_dir_; }

  // Datasets. CreateDataset is one transaction; ALREADY_EXISTS on a taken name.
  absl::Status CreateDataset(const DatasetInfo& d, const std::vector<ItemRow>& items,
                             const std::vector<FailedItemRow>& failed);
  absl::StatusOr<DatasetInfo> GetDataset(const std::string& name);
  std::vector<DatasetInfo> ListDatasets();
  absl::Status DeleteDataset(const std::string& name);
  std::vector<ItemRow> Items(const std::string& dataset);
  absl::Status AddFailedItems(const std::string& dataset, const std::vector<FailedItemRow>& rows);

  // Features: chunks of a (dataset, source) written by jobs.
  absl::Status AddFeatureChunk(const std::string& dataset, const std::string& source,
                               const FeatureChunk& chunk);
  std::vector<FeatureChunk> FeatureChunks(const std::string& dataset, const std::string& source);
  absl::Status DeleteFeatures(const std::string& dataset, const std::string& source);

  // Jobs.
  absl::StatusOr<JobInfo> CreateJob(JobKind kind, const std::string& dataset,
                                    const std::string& params_json);
  absl::Status UpdateJob(const JobInfo& job);
  absl::StatusOr<JobInfo> GetJob(const std::string& id);
  std::vector<JobInfo> ListJobs(const std::string& dataset, JobState state, int limit);
  // At start-up: RUNNING jobs (the process died under them) become INTERRUPTED.
  int MarkRunningInterrupted();

  // Selections.
  absl::Status SaveSelection(const std::string& job_id, const std::vector<SelectionRow>& rows);
  std::vector<SelectionRow> GetSelection(const std::string& job_id, int64_t offset, int64_t limit);
  int64_t CountSelection(const std::string& job_id);

  // Prompts.
  absl::Status CreatePrompt(const PromptInfo& p);
  absl::StatusOr<PromptInfo> GetPrompt(const std::string& name);
  std::vector<PromptInfo> ListPrompts();

 private:
  Store() = default;
  absl::Status Exec(const std::string& sql);
  absl::Status Migrate();

  std::mutex mu_;
  sqlite3* db_ = nullptr;
  std::string data_dir_;
};

int64_t NowMs();

}  // namespace updp::core

#endif  // UPDP_SERVER_CORE_STORE_H_
