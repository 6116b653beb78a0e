// Plain data types of the service core (no gRPC, no LibTorch).
#ifndef UPDP_SERVER_CORE_TYPES_H_
#define UPDP_SERVER_CORE_TYPES_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "server/core/job_params.h"

namespace updp::core {

// Explicit job states (cf. TF Serving's LoaderHarness). The only allowed transitions
// (IsLegalTransition; the store applies each as a compare-and-set):
// QUEUED -> RUNNING | CANCELLED; RUNNING -> SUCCEEDED | FAILED | CANCELLED | INTERRUPTED;
// INTERRUPTED | CANCELLED | FAILED -> QUEUED (ResumeJob).
enum class JobState {
  kUnspecified = 0,
  kQueued = 1,
  kRunning = 2,
  kSucceeded = 3,
  kFailed = 4,
  kCancelled = 5,
  kInterrupted = 6
};

inline bool IsTerminal(JobState s) {
  return s == JobState::kSucceeded || s == JobState::kFailed || s == JobState::kCancelled ||
         s == JobState::kInterrupted;
}
bool IsLegalTransition(JobState from, JobState to);
const char* JobStateName(JobState s);

struct ItemRow {
  int64_t idx = 0;
  std::string item_id;
  std::string path;  // absolute, empty for embeddings
  // The refresh that added the item (0: the registration), and whether the last
  // refresh found its file gone (a missing item is never picked).
  int64_t generation = 0;
  bool missing = false;
};

struct FailedItemRow {
  std::string item_id;
  std::string path;
  std::string error;
};

// A dataset row is reserved (kRegistering) before its items are written and
// becomes visible when registration commits (kReady); kDeleting keeps the name taken
// while its files are removed. Start-up finishes what a crash left in between.
enum class DatasetState { kRegistering = 0, kReady = 1, kDeleting = 2 };

struct DatasetInfo {
  std::string name;
  DatasetState state = DatasetState::kReady;
  SourceKind source_kind = SourceKind::kUnspecified;
  std::string source_path;
  int64_t num_items = 0;
  int64_t num_failed = 0;
  std::vector<FailedItemRow> failed_items;  // first 100
  std::vector<std::string> feature_sources;
  int64_t created_ms = 0;
  // Items per feature chunk, fixed at registration (--chunk_size then): chunk c always
  // holds items [c * chunk_size, (c + 1) * chunk_size), whatever the flag is later.
  int64_t chunk_size = 1024;
  // The REGISTER job that reserved the name and fills the dataset (empty for datasets
  // registered before registration was a job).
  std::string registration_job_id;
  // How many refreshes added items (items of the newest have this generation), and the
  // items whose files the last refresh did not find.
  int64_t generation = 0;
  int64_t num_missing = 0;
};

struct Progress {
  std::string stage;
  int64_t done = 0;
  int64_t total = 0;
  double rate = 0;
  std::string message;
  std::optional<double> loss;
};

struct JobInfo {
  std::string id;
  JobKind kind = JobKind::kUnspecified;
  JobState state = JobState::kUnspecified;
  std::string dataset;
  JobParams params;         // typed, what the job body reads
  std::string params_json;  // the same, as stored and shown
  Progress progress;
  int64_t created_ms = 0, started_ms = 0, finished_ms = 0;
  std::string error;
  // The canonical status code of a FAILED job's error (absl and gRPC share them).
  int error_code = 0;
  std::string result_json;
  // Order of the change this snapshot shows (in-process only, not stored): watchers
  // drop any event older than one they already have.
  int64_t version = 0;
};

struct FeatureChunk {
  int64_t chunk = 0;
  int64_t count = 0;  // rows in the file
  std::string path;   // safetensors file with "features" [n,D] and "index" [n]
  // The items the chunk accounts for end here (its rows plus failed items cover
  // [chunk * chunk_size, end)). A refresh that adds items to a partly filled last chunk
  // leaves it short of the dataset's items: EMBED then embeds only the rest. -1 when
  // written: the store takes the dataset's item count at that moment.
  int64_t end = -1;
};

// Where the items of chunk `chunk` end in a dataset of n items and chunk size cs; a
// chunk that accounts for items up to there is complete.
inline int64_t ChunkEnd(int64_t chunk, int64_t n, int64_t cs) {
  return (chunk + 1) * cs < n ? (chunk + 1) * cs : n;
}
inline bool ChunkComplete(const FeatureChunk& c, int64_t n, int64_t cs) {
  return c.end >= ChunkEnd(c.chunk, n, cs);
}

struct SelectionRow {
  int64_t rank = 0;
  int64_t item_idx = 0;
  std::string item_id;
  std::string path;
  int64_t cluster = -1;
  double score = 0;
};

struct PromptInfo {
  std::string name;
  std::string dataset;
  std::string model_identity;
  int num_context = 0;
  int num_clusters = 0;
  std::string config_json;
  std::string path;
  int64_t created_ms = 0;
};

}  // namespace updp::core

#endif  // UPDP_SERVER_CORE_TYPES_H_
