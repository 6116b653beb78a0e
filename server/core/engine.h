// What the core asks of the model-backed engine (server/engine/, LibTorch), so that
// the core itself never includes LibTorch. The engine also runs the EMBED,
// LEARN_PROMPT and SELECT job bodies, registered into the JobManager from main.
#ifndef UPDP_SERVER_CORE_ENGINE_H_
#define UPDP_SERVER_CORE_ENGINE_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/core/types.h"

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
  // Validates a user's .npy embeddings (float16/float32/float64 [N, D], finite; float64
  // is stored as float32) and streams them into feature chunks of at most
  // options().import_chunk_rows rows under `dir`. `expected_rows` >= 0 (the ids file's
  // length) is checked against N before anything is written. Returns the chunks in
  // row order. `progress` gets the rows copied so far and N; returning false stops the
  // import (CANCELLED, no chunk left behind).
  using ImportProgress = std::function<bool(int64_t done, int64_t total)>;
  virtual absl::StatusOr<std::vector<FeatureChunk>> ImportEmbeddings(
      const std::string& npy_path, const std::string& dir, int64_t expected_rows,
      const ImportProgress& progress) = 0;
  // A JPEG preview of the image at `path` that fits max_side x max_side (the selection
  // report's thumbnails; needs no model). An error naming the file when it cannot be
  // read or decoded.
  virtual absl::StatusOr<std::string> Thumbnail(const std::string& path, int max_side) = 0;
};

}  // namespace updp::core

#endif  // UPDP_SERVER_CORE_ENGINE_H_
