#include "server/model/test_model.h"

#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "server/util/atomic_file.h"
#include "server/model/blip2_model.h"
#include "server/model/safetensors.h"

namespace updp::model {

absl::StatusOr<Blip2Config> PresetConfig(const std::string& preset) {
  Blip2Config c;  // defaults are vit-g
  if (preset == "vit-g") return c;
  if (preset == "tiny") {
    c.vision = {28, 14, 64, 128, 2, 4, 1e-6, true};
    c.qformer.hidden_size = 32;
    c.qformer.num_hidden_layers = 3;
    c.qformer.num_attention_heads = 4;
    c.qformer.intermediate_size = 64;
    c.qformer.max_position_embeddings = 64;
    c.qformer.encoder_hidden_size = 64;
    c.num_query_tokens = 8;
    c.image_text_hidden_size = 16;
    return c;
  }
  if (preset == "small") {
    c.vision = {224, 14, 192, 768, 4, 3, 1e-6, true};
    c.qformer.hidden_size = 128;
    c.qformer.num_hidden_layers = 4;
    c.qformer.num_attention_heads = 4;
    c.qformer.intermediate_size = 512;
    c.qformer.max_position_embeddings = 128;
    c.qformer.encoder_hidden_size = 192;
    c.num_query_tokens = 16;
    c.image_text_hidden_size = 64;
    return c;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("preset: '", preset, "' is not one of tiny, small, vit-g"));
}

std::string ConfigToJson(const Blip2Config& c) {
  nlohmann::json j = {
      {"architectures", {"Blip2ForImageTextRetrieval"}},
      {"model_type", "blip-2"},
      {"num_query_tokens", c.num_query_tokens},
      {"image_text_hidden_size", c.image_text_hidden_size},
      {"torch_dtype", "float32"},
      {"vision_config",
       {{"model_type", "blip_2_vision_model"},
        {"hidden_act", "gelu"},
        {"image_size", c.vision.image_size},
        {"patch_size", c.vision.patch_size},
        {"hidden_size", c.vision.hidden_size},
        {"intermediate_size", c.vision.intermediate_size},
        {"num_hidden_layers", c.vision.num_hidden_layers},
        {"num_attention_heads", c.vision.num_attention_heads},
        {"layer_norm_eps", c.vision.layer_norm_eps},
        {"qkv_bias", c.vision.qkv_bias}}},
      {"qformer_config",
       {{"model_type", "blip_2_qformer"},
        {"hidden_act", "gelu"},
        {"position_embedding_type", "absolute"},
        {"use_qformer_text_input", true},
        {"vocab_size", c.qformer.vocab_size},
        {"hidden_size", c.qformer.hidden_size},
        {"num_hidden_layers", c.qformer.num_hidden_layers},
        {"num_attention_heads", c.qformer.num_attention_heads},
        {"intermediate_size", c.qformer.intermediate_size},
        {"max_position_embeddings", c.qformer.max_position_embeddings},
        {"layer_norm_eps", c.qformer.layer_norm_eps},
        {"cross_attention_frequency", c.qformer.cross_attention_frequency},
        {"encoder_hidden_size", c.qformer.encoder_hidden_size},
        {"pad_token_id", c.qformer.pad_token_id}}}};
  return j.dump(2) + "\n";
}

std::string BuiltinVocab() {
  std::string v = "[PAD]\n";
  for (int i = 0; i < 99; ++i) v += absl::StrCat("[unused", i, "]\n");
  v += "[UNK]\n[CLS]\n[SEP]\n[MASK]\n";
  for (int c = 33; c < 127; ++c) {
    if (c >= 'A' && c <= 'Z') continue;
    v += static_cast<char>(c);
    v += '\n';
  }
  for (char c = 'a'; c <= 'z'; ++c) v += absl::StrCat("##", std::string(1, c), "\n");
  for (char c = '0'; c <= '9'; ++c) v += absl::StrCat("##", std::string(1, c), "\n");
  for (const char* w : {"the", "of", "and", "in", "to", "with", "on", "photo", "picture", "image",
                        "an", "this", "is", "cat", "dog", "shirt", "shoe", "bag", "dress", "coat"}) {
    v += absl::StrCat(w, "\n");
  }
  return v;
}

absl::Status WriteRandomCheckpoint(const std::string& out_dir, Blip2Config config, uint64_t seed,
                                   const std::string& vocab_text) {
  std::string vocab = vocab_text.empty() ? BuiltinVocab() : vocab_text;
  int lines = 0;
  for (char ch : vocab) lines += ch == '\n';
  if (!vocab.empty() && vocab.back() != '\n') ++lines;
  config.qformer.vocab_size = lines;
  ::mkdir(out_dir.c_str(), 0755);
  torch::manual_seed(seed);
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const auto& [name, shape] : ExpectedTensorShapes(config)) {
    torch::Tensor t;
    const bool is_ln = absl::StrContains(name, "layer_norm") || absl::StrContains(name, "layernorm") ||
                       absl::StrContains(name, "LayerNorm");
    if (is_ln) {
      t = absl::EndsWith(name, ".weight") ? torch::ones(shape) : torch::zeros(shape);
    } else if (absl::EndsWith(name, ".bias")) {
      t = torch::zeros(shape);
    } else {
      t = torch::randn(shape) * 0.02;
    }
    if (absl::EndsWith(name, "self_attn.qkv.bias")) t.zero_();
    tensors.emplace_back(name, t);
  }
  if (auto s = WriteSafetensors(out_dir + "/model.safetensors", tensors, {{"format", "pt"}});
      !s.ok()) {
    return s;
  }
  if (auto s = WriteFileAtomically(out_dir + "/config.json", ConfigToJson(config)); !s.ok()) {
    return s;
  }
  return WriteFileAtomically(out_dir + "/vocab.txt", vocab);
}

}  // namespace updp::model
