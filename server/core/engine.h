// What the core asks of the model-backed engine (server/engine/, LibTorch), so that
// the core itself never includes LibTorch. The engine also runs the EMBED,
// LEARN_PROMPT and SELECT job bodies, registered into the JobManager from main.
#ifndef UPDP_SERVER_CORE_ENGINE_H_
#define UPDP_SERVER_CORE_ENGINE_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace updp::core {

struct PromptMeta {
  std::string model_identity;
  int num_context = 0;
  int num_clusters = 0;
  std::string config_json;
  std::string trained_on_dataset;
};

class Engine {
 public:
  virtual ~Engine() = default;
  // A checkpoint is configured (--model_dir); without one only datasets that bring
  // their own embeddings work.
  virtual bool HasModel() const = 0;
  // The checkpoint is loaded. Until then model-backed requests get UNAVAILABLE.
  virtual bool Ready() const = 0;
  // Reads a prompt artifact and checks it against the loaded model.
  virtual absl::StatusOr<PromptMeta> CheckPrompt(const std::string& artifact) = 0;
  // Validates a user's .npy embeddings (float32/float16 [N, D], finite) and writes
  // them as one feature chunk at `chunk_path`. Returns N.
  virtual absl::StatusOr<int64_t> ImportEmbeddings(const std::string& npy_path,
                                                   const std::string& chunk_path) = 0;
};

}  // namespace updp::core

#endif  // UPDP_SERVER_CORE_ENGINE_H_
