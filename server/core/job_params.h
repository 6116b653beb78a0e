// Typed parameters of each job kind. Inside the process jobs carry these structs;
// JSON exists only where they are stored (SQLite) or shown (Job.parameters_json).
#ifndef UPDP_SERVER_CORE_JOB_PARAMS_H_
#define UPDP_SERVER_CORE_JOB_PARAMS_H_

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"

namespace updp::core {

enum class JobKind {
  kUnspecified = 0,
  kEmbed = 1,
  kLearnPrompt = 2,
  kSelect = 3,
  kRegister = 4,
  kDuplicates = 5,
  kRefresh = 6
};
const char* JobKindName(JobKind k);

struct EmbedParams {
  int batch_size = 32;
  int64_t chunk_size = 1024;  // items per feature chunk (the unit of resume)
  // Set: instead of computing features, attach the chunks that updp-embed-shard
  // workers wrote into this directory (canonical, inside --allowed_roots), in place.
  std::string attach_dir;
};

struct LearnPromptParams {
  std::string prompt_name;
  int num_context = 16;
  int num_clusters = 0;  // request: 0 = intended_budget or 100; stored: the resolved K
  int intended_budget = 0;
  int epochs = 20;
  int batch_size = 256;
  double learning_rate = 3e-4;
  int views = 2;
  uint64_t seed = 0;
  std::string init_phrase = "a photo of a";
  int64_t max_train_items = 0;
};

struct SelectParams {
  std::string strategy;
  int64_t budget = 0;
  uint64_t seed = 0;
  std::string features;  // resolved feature source
  std::string prompt;
  std::vector<std::string> labeled_ids;            // stored: the known ones (excluded from picks)
  std::string rule = "kmeans";                     // updp: kmeans | cluster-head
  bool strict_labeled = false;                     // unknown labeled ids: error, not ignored
  int64_t labeled_unknown = 0;                     // stored: how many given ids were not items
  std::vector<std::string> labeled_unknown_first;  // stored: the first ten of them
  double dedup = 0;  // > 0: no two picks (nor a pick and a labeled item) this similar
  // Only items added by a refresh of at least this generation are candidates (0 = all).
  // only_new asks for the newest refresh's items: stored resolved into min_generation.
  bool only_new = false;
  int64_t min_generation = 0;
};

struct DuplicatesParams {
  double threshold = 0;  // cosine similarity in (0, 1]
  std::string features;  // resolved feature source
};

// Where a dataset is registered from (the job's dataset is the name it reserves).
enum class SourceKind { kUnspecified = 0, kImages = 1, kManifest = 2, kEmbeddings = 3 };
const char* SourceKindName(SourceKind k);

struct RegisterParams {
  SourceKind source_kind = SourceKind::kUnspecified;
  std::string path;           // as requested (the job resolves it again when it runs)
  std::string ids_path;       // embeddings only, optional
  int64_t chunk_size = 1024;  // items per feature chunk, fixed at registration
};

// A rescan of an images/manifest dataset's source (the job's dataset): new files become
// new items, vanished ones are marked missing.
struct RefreshParams {};

using JobParams = std::variant<std::monostate, EmbedParams, LearnPromptParams, SelectParams,
                               RegisterParams, DuplicatesParams, RefreshParams>;

JobKind KindOf(const JobParams& p);
std::string ParamsToJson(const JobParams& p);
// Parses what ParamsToJson stored for a job of `kind` (never throws).
absl::StatusOr<JobParams> ParamsFromJson(JobKind kind, const std::string& json);

}  // namespace updp::core

#endif  // UPDP_SERVER_CORE_JOB_PARAMS_H_
