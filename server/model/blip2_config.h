// Sizes of a BLIP-2 image-text retrieval checkpoint, read from the Hugging Face
// config.json (Blip2Config). Missing fields take the Hugging Face defaults, which
// are those of Salesforce/blip2-itm-vit-g.
#ifndef UPDP_SERVER_MODEL_BLIP2_CONFIG_H_
#define UPDP_SERVER_MODEL_BLIP2_CONFIG_H_

#include <string>

#include "absl/status/statusor.h"

namespace updp::model {

struct VisionConfig {
  int image_size = 224;
  int patch_size = 14;
  int hidden_size = 1408;
  int intermediate_size = 6144;
  int num_hidden_layers = 39;
  int num_attention_heads = 16;
  double layer_norm_eps = 1e-6;
  bool qkv_bias = true;
  int num_positions() const { return (image_size / patch_size) * (image_size / patch_size) + 1; }
};

struct QFormerConfig {
  int vocab_size = 30522;
  int hidden_size = 768;
  int num_hidden_layers = 12;
  int num_attention_heads = 12;
  int intermediate_size = 3072;
  int max_position_embeddings = 512;
  double layer_norm_eps = 1e-12;
  int cross_attention_frequency = 2;
  int encoder_hidden_size = 1408;
  int pad_token_id = 0;
};

struct Blip2Config {
  VisionConfig vision;
  QFormerConfig qformer;
  int num_query_tokens = 32;
  int image_text_hidden_size = 256;
};

// Parses config.json text. Rejects non-BLIP-2 configs, unsupported activations or
// position-embedding types, and inconsistent sizes, naming the field.
absl::StatusOr<Blip2Config> ParseBlip2Config(const std::string& json_text);

}  // namespace updp::model

#endif  // UPDP_SERVER_MODEL_BLIP2_CONFIG_H_
