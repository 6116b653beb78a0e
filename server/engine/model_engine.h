// The model-backed engine: loads the BLIP-2 checkpoint, imports users' embeddings,
// checks prompt artifacts, and runs the EMBED, LEARN_PROMPT and SELECT job bodies
// (registered into the core's JobManager from main). LibTorch lives here and below,
// never in server/core.
#ifndef UPDP_SERVER_ENGINE_MODEL_ENGINE_H_
#define UPDP_SERVER_ENGINE_MODEL_ENGINE_H_

#include <atomic>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/core/engine.h"
#include "server/core/job_manager.h"
#include "server/core/server_core.h"

namespace updp::model {
class Blip2Model;
class BertTokenizer;
class ImageEncoder;
}  // namespace updp::model

namespace updp::prompt {
class PromptModule;
}  // namespace updp::prompt

namespace updp::select {
class ThreadPool;
}  // namespace updp::select

namespace updp::engine {

struct OpenedFeatures;  // feature_io.h

class ModelEngine : public core::Engine {
 public:
  // Creates the selection thread pool (--cpu_threads threads; LibTorch's intra-op
  // threads are set to the same bound).
  explicit ModelEngine(core::ServerCore* core);
  ~ModelEngine() override;

  // Loads the checkpoint named by the core's options (no-op without --model_dir).
  // Called once, before Ready() turns true; RPC threads only read the model after
  // that (the release/acquire pair on ready_ orders it).
  absl::Status LoadModel();
  // Registers EMBED, LEARN_PROMPT and SELECT (updp on the device lane, the other
  // strategies on the CPU lane) and DUPLICATES (CPU lane).
  void RegisterJobs(core::JobManager& jobs);

  bool HasModel() const override { return !core_->options().model_dir.empty(); }
  bool Ready() const override { return ready_.load(std::memory_order_acquire); }
  absl::StatusOr<core::PromptMeta> CheckPrompt(const std::string& artifact) override;
  absl::StatusOr<std::vector<core::FeatureChunk>> ImportEmbeddings(
      const std::string& npy_path, const std::string& dir, int64_t expected_rows,
      const ImportProgress& progress) override;
  absl::StatusOr<std::string> Thumbnail(const std::string& path, int max_side) override;

 private:
  absl::Status RunEmbed(core::JobContext& ctx);
  // EMBED with attach_dir: validates and attaches updp-embed-shard output in place
  // (attach_job.cc).
  absl::Status RunAttach(core::JobContext& ctx);
  absl::Status RunSelect(core::JobContext& ctx);
  absl::Status RunLearnPrompt(core::JobContext& ctx);
  // DUPLICATES: near-duplicate groups of a feature source (duplicates_job.cc).
  absl::Status RunDuplicates(core::JobContext& ctx);
  // Ensures prompted joint features of every item (and, in the same pass, image
  // features where missing) exist as chunks; resumable by chunk.
  absl::Status ExtractPromptFeatures(core::JobContext& ctx, const std::string& dataset,
                                     const std::string& prompt, const prompt::PromptModule& mod);
  // The job's dataset's feature chunks of `source`, mapped and read in place
  // (OpenFeatures), after a "load-features" progress event; *num_items is the
  // dataset's item count.
  absl::StatusOr<OpenedFeatures> LoadFeatures(core::JobContext& ctx, const std::string& source,
                                              int64_t* num_items);
  // Model-backed job bodies refuse to run before the model is there.
  absl::Status NeedModel() const;

  core::ServerCore* core_;
  std::atomic<bool> ready_{false};
  std::shared_ptr<model::Blip2Model> model_;
  std::shared_ptr<model::ImageEncoder> encoder_;
  std::shared_ptr<model::BertTokenizer> tokenizer_;
  std::unique_ptr<select::ThreadPool> select_pool_;
};

}  // namespace updp::engine

#endif  // UPDP_SERVER_ENGINE_MODEL_ENGINE_H_
