// Batched image-feature extraction: decoding/preprocessing on a thread pool
// overlapped with model compute on the device.
//
// On CUDA the batch loop never waits for the GPU: pixels are prepared in pinned host
// memory and copied asynchronously, the image path is replayed as a CUDA graph per
// batch shape, and each batch's features come back by an asynchronous copy that is
// waited for only after the next batch has been queued.
#ifndef UPDP_SERVER_MODEL_ENCODER_H_
#define UPDP_SERVER_MODEL_ENCODER_H_

#include <torch/torch.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "server/model/blip2_model.h"
#include "server/model/cuda_graph.h"

namespace updp::model {

struct PreparedBatch {
  torch::Tensor pixels;            // [n_ok,3,S,S] float32, CPU (pinned when the model is on CUDA)
  std::vector<int> ok;             // index into the input list of each row
  std::vector<std::pair<int, std::string>> errors;  // index, message
};

struct EncodedChunk {
  torch::Tensor features;  // [n_ok, P] float16, CPU, L2-normalised
  std::vector<int> ok;
  std::vector<std::pair<int, std::string>> errors;
  bool cancelled = false;
};

struct EncoderOptions {
  int decode_threads = 2;
  // Replay the image path as CUDA graphs (one per batch shape). Only where the build
  // has CUDA (UPDP_WITH_CUDA) and the model is on a CUDA device.
  bool cuda_graphs = true;
  // Batch shapes captured at most (each graph holds one batch's activations); other
  // shapes, and EncodeAll's short last batch, run without a graph.
  int max_cuda_graphs = 3;
};

class ImageEncoder {
 public:
  ImageEncoder(std::shared_ptr<const Blip2Model> model, int decode_threads);
  ImageEncoder(std::shared_ptr<const Blip2Model> model, const EncoderOptions& options);

  const Blip2Model& model() const { return *model_; }
  bool uses_cuda_graphs() const { return graphs_ != nullptr; }

  // Decodes and preprocesses `paths` in parallel; failures are reported per item.
  PreparedBatch Prepare(const std::vector<std::string>& paths) const;
  // Image features [n,P] float32 on CPU for preprocessed pixels (waits for the device).
  torch::Tensor Embed(const torch::Tensor& pixels) const;
  // Image features [n,P] float32 on the model's device, enqueued on the current CUDA
  // stream without waiting (on the CPU: computed before returning).
  torch::Tensor EmbedOnDevice(const torch::Tensor& pixels, bool allow_graph = true) const;

  // Encodes `paths` in batches of `batch_size`, decoding batch k+1 while the model runs
  // batch k. `cancelled` is polled between batches; `on_batch(done)` reports progress.
  EncodedChunk EncodeAll(const std::vector<std::string>& paths, int batch_size,
                         const std::function<bool()>& cancelled,
                         const std::function<void(int64_t done, int64_t failed)>& on_batch) const;

 private:
  std::shared_ptr<const Blip2Model> model_;
  int decode_threads_;
  std::unique_ptr<CudaGraphCache> graphs_;
};

}  // namespace updp::model

#endif  // UPDP_SERVER_MODEL_ENCODER_H_
