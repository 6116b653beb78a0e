// Metadata store: one SQLite database (WAL mode) under --data_dir holding datasets,
// items, failed items, feature chunks, jobs, selections and prompts. Versioned
// schema with forward migrations.
//
// Concurrency: one writer connection behind a mutex and a small pool of reader
// connections. In WAL mode readers never wait for the writer, so a long write (a
// million-row registration) does not stall GetJob/ListDatasets; large inserts are
// split into short transactions so that other writers wait at most one batch.
// Every reader returns StatusOr: an SQLite error is INTERNAL with its message, never
// "no rows".
#ifndef UPDP_SERVER_CORE_STORE_H_
#define UPDP_SERVER_CORE_STORE_H_

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/core/types.h"

struct sqlite3;

namespace updp::core {

// A dataset row a stopped process left REGISTERING or DELETING.
struct UnfinishedDataset {
  std::string name;
  DatasetState state = DatasetState::kRegistering;
  std::string registration_job_id;  // the REGISTER job that reserved it, if any
};

class Store {
 public:
  static constexpr int kSchemaVersion = 4;

  // Opens (creating and migrating) data_dir/updp.db.
  static absl::StatusOr<std::unique_ptr<Store>> Open(const std::string& data_dir);
  ~Store();

  absl::StatusOr<int> schema_version();
  const std::string& data_dir() const { return data_dir_; }

  // --- Datasets: reserve the name, add items (batched), then commit or abort.
  // ALREADY_EXISTS when the name is taken (also while another registration or a
  // deletion of that name is under way).
  absl::Status ReserveDataset(const DatasetInfo& d);
  // ALREADY_EXISTS naming the item id when a dataset has it already (nothing of that
  // batch of 5,000 is written).
  absl::Status AddItems(const std::string& dataset, const std::vector<ItemRow>& items);
  // Failed items (in batches), then one transaction: the feature chunks of
  // `chunk_source` (an embeddings source's), state READY.
  absl::Status CommitDataset(const std::string& dataset, const std::string& source_path,
                             int64_t num_items, const std::vector<FailedItemRow>& failed,
                             const std::string& chunk_source,
                             const std::vector<FeatureChunk>& chunks);
  // Marks a READY dataset DELETING, atomically with checking that none of its jobs is
  // queued or running (FAILED_PRECONDITION otherwise). Returns its job ids (their
  // directories are removed before FinishDeleteDataset).
  absl::StatusOr<std::vector<std::string>> BeginDeleteDataset(const std::string& name);
  // Removes every row of a dataset (items, chunks, jobs, selections, prompt
  // reservations of its jobs) in one transaction: the end of a deletion, or the
  // roll-back of a registration, which keeps its REGISTER job (`keep_job`) to show
  // how the registration ended.
  absl::Status RemoveDataset(const std::string& name, const std::string& keep_job = "");
  // Datasets left REGISTERING or DELETING by a stopped process.
  absl::StatusOr<std::vector<UnfinishedDataset>> UnfinishedDatasets();
  absl::StatusOr<std::vector<std::string>> JobIdsOf(const std::string& dataset);

  // --- Refresh (a grown or shrunk source). New items are appended with AddItems at
  // idx >= num_items, where no reader looks, then CommitRefresh makes them items.
  // Items a refresh appended but never committed (it failed, or the process died):
  // removed, in short transactions.
  absl::Status DropUncommittedItems(const std::string& dataset);
  // One transaction: checks that the dataset still has `expected_items` items and
  // generation `expected_generation` (ABORTED otherwise: it changed meanwhile), then
  // sets num_items to `num_items` (the appended items become items of generation
  // expected_generation + 1, which becomes the dataset's when any were appended),
  // marks the items at `now_missing` missing and those at `found_again` not, records
  // `failed` (entries the listing could not use) and forgets the failed rows of ids
  // that are now items (`now_items`).
  struct RefreshCommit {
    int64_t expected_items = 0;
    int64_t expected_generation = 0;
    int64_t num_items = 0;
    std::vector<int64_t> now_missing;
    std::vector<int64_t> found_again;
    std::vector<FailedItemRow> failed;
    std::vector<std::string> now_items;
  };
  absl::Status CommitRefresh(const std::string& dataset, const RefreshCommit& c);
  // The idx of items never to pick: missing ones, and with min_generation > 0 those
  // added before that generation. Ascending.
  absl::StatusOr<std::vector<int64_t>> ExcludedItems(const std::string& dataset,
                                                     int64_t min_generation);

  // READY datasets only.
  absl::StatusOr<DatasetInfo> GetDataset(const std::string& name);
  absl::StatusOr<std::vector<DatasetInfo>> ListDatasets();
  // Every item (the whole table; for tests and small datasets: jobs read pages).
  absl::StatusOr<std::vector<ItemRow>> Items(const std::string& dataset);
  // Items with begin <= idx < end, ordered by idx (one page of the item table).
  absl::StatusOr<std::vector<ItemRow>> ItemsRange(const std::string& dataset, int64_t begin,
                                                  int64_t end);
  // The items at these idx values, in the same order; NOT_FOUND naming the first idx
  // that is not an item.
  absl::StatusOr<std::vector<ItemRow>> ItemsAt(const std::string& dataset,
                                               const std::vector<int64_t>& idx);
  // For each id of `ids` that is an item of `dataset`: (id, idx), in the order of `ids`.
  // Unknown ids are left out.
  absl::StatusOr<std::vector<std::pair<std::string, int64_t>>> FindItemIds(
      const std::string& dataset, const std::vector<std::string>& ids);
  // The ids of `ids` that are not items of `dataset` (at most `max` of them).
  absl::StatusOr<std::vector<std::string>> UnknownItemIds(const std::string& dataset,
                                                          const std::vector<std::string>& ids,
                                                          size_t max);
  absl::Status AddFailedItems(const std::string& dataset, const std::vector<FailedItemRow>& rows);

  // Features: chunks of a (dataset, source) written by jobs.
  absl::Status AddFeatureChunk(const std::string& dataset, const std::string& source,
                               const FeatureChunk& chunk);
  // All chunks of a source at once, with the failed items they account for, in one
  // transaction (attaching features computed elsewhere). FAILED_PRECONDITION, and
  // nothing written, when the source already has a chunk.
  absl::Status AttachFeatureChunks(const std::string& dataset, const std::string& source,
                                   const std::vector<FeatureChunk>& chunks,
                                   const std::vector<FailedItemRow>& failed);
  absl::StatusOr<std::vector<FeatureChunk>> FeatureChunks(const std::string& dataset,
                                                          const std::string& source);

  // --- Jobs. CreateJob checks in its transaction that the dataset is READY and, for
  // LEARN_PROMPT, reserves the prompt name (ALREADY_EXISTS when it is taken). A
  // REGISTER job instead reserves its dataset's name in the same transaction (the
  // REGISTERING row, naming the job; ALREADY_EXISTS when the name is taken).
  absl::StatusOr<JobInfo> CreateJob(const std::string& dataset, const JobParams& params);
  // The one way a job's state changes: a compare-and-set `UPDATE ... WHERE state =
  // from`, also writing j's progress, times, error and result. An illegal transition
  // is INTERNAL (nothing written); a job no longer in `from` is FAILED_PRECONDITION
  // naming its state. A transition to QUEUED also requires the dataset to be READY,
  // and is refused for a REGISTER job (a stopped registration was rolled back). A
  // QUEUED -> CANCELLED REGISTER job releases its reserved name in the same
  // transaction. j.error_code is stored with a transition to FAILED.
  absl::Status Transition(const std::string& id, JobState from, JobState to, const JobInfo& j);
  // Progress and result of a RUNNING job (no state change; ignored otherwise).
  absl::Status UpdateProgress(const JobInfo& j);
  absl::StatusOr<JobInfo> GetJob(const std::string& id);
  // Newest first; state kUnspecified = any.
  absl::StatusOr<std::vector<JobInfo>> ListJobs(const std::string& dataset, JobState state,
                                                int limit);
  // Ids of the jobs in `state`, oldest first.
  absl::StatusOr<std::vector<std::string>> JobIdsInState(JobState state);
  // Count of queued and running jobs per (kind, state).
  absl::StatusOr<std::vector<std::tuple<JobKind, JobState, int>>> CountActiveJobs();
  // At start-up: RUNNING jobs (the process died under them) become INTERRUPTED.
  absl::StatusOr<int> MarkRunningInterrupted();

  // --- Selections.
  absl::Status SaveSelection(const std::string& job_id, const std::vector<SelectionRow>& rows);
  absl::StatusOr<std::vector<SelectionRow>> GetSelection(const std::string& job_id, int64_t offset,
                                                         int64_t limit);
  absl::StatusOr<int64_t> CountSelection(const std::string& job_id);

  // --- Prompts. A name is either READY (a stored artifact) or reserved by the
  // LEARN_PROMPT job learning it. A reservation whose job FAILED or was CANCELLED may
  // be taken over (by an import or a new job); that job's commit then fails.
  absl::Status CreatePrompt(const PromptInfo& p);
  absl::Status CommitLearnedPrompt(const PromptInfo& p, const std::string& job_id);
  absl::StatusOr<PromptInfo> GetPrompt(const std::string& name);
  absl::StatusOr<std::vector<PromptInfo>> ListPrompts();

  // Runs `PRAGMA integrity_check` (for tests and the operator).
  absl::StatusOr<std::string> IntegrityCheck();

 private:
  class ReadLease;
  class Tx;
  Store() = default;
  absl::Status Migrate();
  // Row writers for an open write transaction (the callers hold a Tx).
  absl::Status InsertFeatureChunks(const std::string& dataset, const std::string& source,
                                   const std::vector<FeatureChunk>& chunks);
  absl::Status InsertFailedItems(const std::string& dataset,
                                 const std::vector<FailedItemRow>& rows);
  absl::StatusOr<sqlite3*> AcquireReader();
  void ReleaseReader(sqlite3* db);

  std::mutex write_mu_;  // the writer connection
  sqlite3* db_ = nullptr;
  std::mutex pool_mu_;
  std::condition_variable pool_cv_;
  std::vector<sqlite3*> free_readers_;
  std::vector<sqlite3*> all_readers_;
  std::string data_dir_;
};

int64_t NowMs();

}  // namespace updp::core

#endif  // UPDP_SERVER_CORE_STORE_H_
