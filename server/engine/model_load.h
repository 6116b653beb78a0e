// Loading the BLIP-2 checkpoint and its image encoder from the same settings in the
// server and in the shard worker (updp-embed-shard): the two must build the model the
// same way for their features to be byte-identical.
#ifndef UPDP_SERVER_ENGINE_MODEL_LOAD_H_
#define UPDP_SERVER_ENGINE_MODEL_LOAD_H_

#include <torch/torch.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace updp::model {
class Blip2Model;
class ImageEncoder;
}  // namespace updp::model

namespace updp::engine {

struct ModelSettings {
  std::string model_dir;
  std::string device = "cpu";
  std::string precision = "auto";
  std::string attention = "auto";
  std::string qformer_precision = "auto";
  bool fused_gelu = true;
  bool cuda_graphs = true;
  int decode_threads = 2;
};

struct LoadedModel {
  std::shared_ptr<model::Blip2Model> model;
  std::shared_ptr<model::ImageEncoder> encoder;
  torch::Device device = torch::kCPU;
  torch::ScalarType vision_dtype = torch::kFloat32;
};

// Parses the device and dtypes (INVALID_ARGUMENT naming the setting), loads and
// checks the checkpoint, and builds the encoder.
absl::StatusOr<LoadedModel> LoadModelAndEncoder(const ModelSettings& s);

}  // namespace updp::engine

#endif  // UPDP_SERVER_ENGINE_MODEL_LOAD_H_
