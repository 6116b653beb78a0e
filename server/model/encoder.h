// Batched image-feature extraction: decoding/preprocessing on a thread pool
// overlapped with model compute on the device.
#ifndef UPDP_SERVER_MODEL_ENCODER_H_
#define UPDP_SERVER_MODEL_ENCODER_H_

#include <torch/torch.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "server/model/blip2_model.h"

namespace updp::model {

struct PreparedBatch {
  torch::Tensor pixels;            // [n_ok,3,S,S] float32, CPU
  std::vector<int> ok;             // index into the input list of each row
  std::vector<std::pair<int, std::string>> errors;  // index, message
};

struct EncodedChunk {
  torch::Tensor features;  // [n_ok, P] float16, CPU, L2-normalised
  std::vector<int> ok;
  std::vector<std::pair<int, std::string>> errors;
  bool cancelled = false;
};

class ImageEncoder {
 public:
  ImageEncoder(std::shared_ptr<const Blip2Model> model, int decode_threads);

  const Blip2Model& model() const { return *model_; }

  // Decodes and preprocesses `paths` in parallel; failures are reported per item.
  PreparedBatch Prepare(const std::vector<std::string>& paths) const;
  // Image features [n,P] float32 on CPU for preprocessed pixels.
  torch::Tensor Embed(const torch::Tensor& pixels) const;

  // Encodes `paths` in batches of `batch_size`, decoding batch k+1 while the model runs
  // batch k. `cancelled` is polled between batches; `on_batch(done)` reports progress.
  EncodedChunk EncodeAll(const std::vector<std::string>& paths, int batch_size,
                         const std::function<bool()>& cancelled,
                         const std::function<void(int64_t done, int64_t failed)>& on_batch) const;

 private:
  std::shared_ptr<const Blip2Model> model_;
  int decode_threads_;
};

}  // namespace updp::model

#endif  // UPDP_SERVER_MODEL_ENCODER_H_
