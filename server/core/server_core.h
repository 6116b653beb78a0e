// ServerCore: the service without gRPC (cf. TF Serving's ServerCore). Datasets,
// jobs, results and prompts; the RPC layer only converts to and from protos.
#ifndef UPDP_SERVER_CORE_SERVER_CORE_H_
#define UPDP_SERVER_CORE_SERVER_CORE_H_

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/core/job_manager.h"
#include "server/core/metrics.h"
#include "server/core/paths.h"
#include "server/core/store.h"
#include "server/core/types.h"

namespace updp::model {
class Blip2Model;
class BertTokenizer;
class ImageEncoder;
}  // namespace updp::model

namespace updp::core {

struct ServerOptions {
  std::string data_dir = "./data";
  std::string model_dir;  // empty: no model (only bring-your-own-embeddings datasets)
  std::string device = "cpu";
  std::string precision = "auto";
  std::string attention = "auto";  // auto | math | sdpa
  bool cuda_graphs = true;         // replay the image path as CUDA graphs on CUDA
  std::string qformer_precision = "auto";  // Q-Former dtype on the image path
  bool fused_gelu = true;                  // tanh-GELU GEMM epilogue (CUDA, bf16 ViT)
  std::vector<std::string> allowed_roots;
  int queue_capacity = 64;
  int cpu_threads = 1;
  int embed_batch_size = 32;
  int chunk_size = 1024;  // items per feature chunk (the unit of resume)
  int decode_threads = 2;
  int64_t prompt_cache_bytes = int64_t{8} << 30;  // cached ViT views for prompt learning
};

struct SelectParams {
  std::string dataset;
  std::string strategy;
  int64_t budget = 0;
  uint64_t seed = 0;
  std::string features;
  std::string prompt;
  std::vector<std::string> labeled_ids;
  std::string rule;
};

struct LearnPromptParams {
  std::string dataset;
  std::string prompt_name;
  int num_context = 16;
  int num_clusters = 0;
  int intended_budget = 0;
  int epochs = 20;
  int batch_size = 256;
  double learning_rate = 3e-4;
  int views = 2;
  uint64_t seed = 0;
  std::string init_phrase = "a photo of a";
  int64_t max_train_items = 0;
};

struct SelectionPage {
  std::vector<SelectionRow> items;
  std::string next_page_token;
  int64_t total = 0;
  std::string strategy;
  std::string dataset;
};

class ServerCore {
 public:
  static absl::StatusOr<std::unique_ptr<ServerCore>> Create(const ServerOptions& options,
                                                            Metrics* metrics);
  ~ServerCore();

  // Loads the BLIP-2 checkpoint from options.model_dir (no-op without one).
  absl::Status LoadModel();
  bool has_model() const { return model_ != nullptr; }
  // Starts the job executors.
  void Start();
  // Graceful stop; see JobManager::Shutdown.
  bool Shutdown(int64_t grace_ms);

  absl::StatusOr<DatasetInfo> RegisterDataset(const std::string& name, SourceKind kind,
                                              const std::string& path,
                                              const std::string& ids_path);
  absl::StatusOr<DatasetInfo> GetDataset(const std::string& name);
  std::vector<DatasetInfo> ListDatasets();
  absl::Status DeleteDataset(const std::string& name);

  absl::StatusOr<JobInfo> StartEmbedding(const std::string& dataset, int batch_size);
  absl::StatusOr<JobInfo> LearnPrompt(const LearnPromptParams& p);
  absl::StatusOr<JobInfo> Select(const SelectParams& p);
  JobManager& jobs() { return *jobs_; }
  std::vector<JobInfo> ListJobs(const std::string& dataset, JobState state, int limit);

  absl::StatusOr<SelectionPage> GetSelection(const std::string& job_id, int page_size,
                                             const std::string& page_token);

  std::vector<PromptInfo> ListPrompts();
  absl::StatusOr<std::pair<PromptInfo, std::string>> ExportPrompt(const std::string& name);
  absl::StatusOr<PromptInfo> ImportPrompt(const std::string& name, const std::string& bytes);

  Store& store() { return *store_; }
  Metrics* metrics() { return metrics_; }
  const ServerOptions& options() const { return options_; }

 private:
  ServerCore() = default;
  // Job bodies (server/jobs/, LibTorch).
  absl::Status RunEmbed(JobContext& ctx);
  absl::Status RunSelect(JobContext& ctx);
  absl::Status RunLearnPrompt(JobContext& ctx);
  // Ensures prompted joint features of every item (and, in the same pass, image
  // features where missing) exist as chunks; resumable by chunk.
  absl::Status ExtractPromptFeatures(JobContext& ctx, const std::string& dataset,
                                     const std::string& prompt);
  // Copies a user's .npy embeddings into a feature chunk of `dataset`.
  absl::StatusOr<int64_t> ImportEmbeddings(const std::string& dataset, const std::string& npy);
  absl::Status CheckPromptCompatible(const std::string& bytes, std::string* identity,
                                     int* num_context, int* num_clusters, std::string* config);
  std::string FeatureDir(const std::string& dataset, const std::string& source) const;

  ServerOptions options_;
  Metrics* metrics_ = nullptr;
  std::unique_ptr<Store> store_;
  std::unique_ptr<PathPolicy> paths_;
  std::unique_ptr<JobManager> jobs_;
  std::shared_ptr<model::Blip2Model> model_;
  std::shared_ptr<model::ImageEncoder> encoder_;
  std::shared_ptr<model::BertTokenizer> tokenizer_;
};

// Feature source names.
inline constexpr char kImageFeatures[] = "image";
inline constexpr char kUserEmbeddings[] = "embeddings";
std::string PromptFeatures(const std::string& prompt);

}  // namespace updp::core

#endif  // UPDP_SERVER_CORE_SERVER_CORE_H_
