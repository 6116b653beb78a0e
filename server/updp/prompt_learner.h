// UP-DP prompt learning on a frozen BLIP-2: M learnable context vectors in the
// Q-Former word-embedding space, an instance head and a cluster head, trained with
// the Contrastive Clustering objective on two views of each image. Only the
// context vectors and the heads receive gradients.
#ifndef UPDP_SERVER_UPDP_PROMPT_LEARNER_H_
#define UPDP_SERVER_UPDP_PROMPT_LEARNER_H_

#include <torch/torch.h>

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/model/blip2_model.h"
#include "server/model/tokenizer.h"

namespace updp::prompt {

struct PromptConfig {
  int num_context = 16;     // M
  int num_clusters = 100;   // K
  int epochs = 20;
  int batch_size = 256;
  double learning_rate = 3e-4;
  int views = 2;            // cached augmented views per training image (V >= 2)
  uint64_t seed = 0;
  std::string init_phrase = "a photo of a";  // empty: N(0, 0.02) initialisation
  double tau_instance = 0.5;
  double tau_cluster = 1.0;
  int instance_dim = 128;
  std::string feature = "mean";  // joint feature: mean | cls | projected
  std::string trained_on_dataset;

  nlohmann::json ToJson() const;
  static absl::StatusOr<PromptConfig> FromJson(const nlohmann::json& j);
};

// The learnable part of UP-DP.
class PromptModule {
 public:
  // Initialises context vectors from the phrase's word embeddings (repeated or
  // truncated to M) and the heads with PyTorch's default Linear initialisation.
  static PromptModule Create(const model::Blip2Model& m, const model::BertTokenizer& tok,
                             const PromptConfig& cfg);
  // Loads an artifact written by Save(); FAILED_PRECONDITION naming both identities
  // when it was trained on an incompatible model.
  static absl::StatusOr<std::pair<PromptModule, PromptConfig>> Load(
      const std::string& bytes, const model::Blip2Model& m);
  // Parses only the artifact's metadata (config, identity) without a model.
  static absl::StatusOr<std::pair<PromptConfig, std::string>> ReadMetadata(const std::string& bytes);

  // Serialises tensors + config + the model identity (safetensors bytes).
  absl::StatusOr<std::string> Serialize(const PromptConfig& cfg, const std::string& identity) const;

  std::vector<torch::Tensor> parameters() const;
  std::vector<std::pair<std::string, torch::Tensor>> named() const;
  void CopyFrom(const std::vector<std::pair<std::string, torch::Tensor>>& named);

  // Joint features of cached image embeddings [B,T,Dv]: [B, feature_dim], L2-normalised.
  torch::Tensor JointFeatures(const model::Blip2Model& m, const torch::Tensor& image_embeds) const;
  torch::Tensor Instance(const torch::Tensor& h) const;  // [B,128], normalised
  torch::Tensor Cluster(const torch::Tensor& h) const;   // [B,K], softmax

  const torch::Tensor& context() const { return ctx_; }

 private:
  torch::Tensor ctx_;  // [M,d]
  torch::Tensor i_w1_, i_b1_, i_w2_, i_b2_, c_w1_, c_b1_, c_w2_, c_b2_;
  int64_t cls_id_ = 101, sep_id_ = 102;
  std::string feature_ = "mean";
};

struct Losses {
  torch::Tensor total, instance, cluster, entropy;
};
// Contrastive Clustering losses for two views (see docs/METHODS.md).
Losses ComputeLosses(const torch::Tensor& z_a, const torch::Tensor& z_b, const torch::Tensor& p_a,
                     const torch::Tensor& p_b, double tau_i, double tau_c);

struct EpochStats {
  int epoch = 0;  // 1-based, completed
  double loss = 0, instance_loss = 0, cluster_loss = 0, entropy_term = 0;
  double usage_entropy = 0;  // entropy (nats) of the mean cluster assignment
};

// Cached ViT outputs of V augmented views per training image: one tensor
// [N, V, T, Dv] (e.g. on the device) or several row-chunks (e.g. memory-mapped files).
class ViewCache {
 public:
  explicit ViewCache(torch::Tensor whole);
  explicit ViewCache(std::vector<torch::Tensor> parts);
  int64_t size() const { return size_; }
  int64_t views() const { return views_; }
  // Rows `rows` [b] at views `view` [b] as a [b, T, Dv] tensor (same device as the parts).
  torch::Tensor Gather(const torch::Tensor& rows, const torch::Tensor& view) const;

 private:
  std::vector<torch::Tensor> parts_;
  std::vector<int64_t> starts_;
  int64_t size_ = 0, views_ = 0;
};

// Trains a PromptModule over a cache of ViT outputs [N, V, T, Dv] (bf16 or fp32).
// State is checkpointed per epoch so that Resume + the same seed reproduces an
// uninterrupted run exactly.
class PromptTrainer {
 public:
  PromptTrainer(const model::Blip2Model& m, PromptModule module, PromptConfig cfg);

  int epochs_done() const { return epochs_done_; }
  const std::vector<EpochStats>& history() const { return history_; }
  PromptModule& module() { return module_; }

  // Runs epoch epochs_done()+1. Returns nullopt if `cancelled` fired (the partial
  // epoch is discarded: parameters are restored from the last checkpoint by the caller).
  std::optional<EpochStats> RunEpoch(const ViewCache& cache,
                                     const std::function<bool()>& cancelled,
                                     const std::function<void(int64_t, int64_t)>& on_batch);
  std::optional<EpochStats> RunEpoch(const torch::Tensor& cache,
                                     const std::function<bool()>& cancelled,
                                     const std::function<void(int64_t, int64_t)>& on_batch) {
    return RunEpoch(ViewCache(cache), cancelled, on_batch);
  }

  absl::Status SaveCheckpoint(const std::string& dir) const;
  absl::Status LoadCheckpoint(const std::string& dir);

 private:
  const model::Blip2Model& m_;
  PromptModule module_;
  PromptConfig cfg_;
  std::unique_ptr<torch::optim::Adam> adam_;
  int epochs_done_ = 0;
  std::vector<EpochStats> history_;
};

}  // namespace updp::prompt

#endif  // UPDP_SERVER_UPDP_PROMPT_LEARNER_H_
