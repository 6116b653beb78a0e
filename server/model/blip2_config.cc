#include "server/model/blip2_config.h"

#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"

namespace updp::model {
namespace {

using nlohmann::json;

template <typename T>
absl::Status Read(const json& obj, const char* section, const char* key, T* out) {
  if (!obj.contains(key)) return absl::OkStatus();
  try {
    *out = obj.at(key).get<T>();
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("config.json: ", section, key, ": ", e.what()));
  }
  return absl::OkStatus();
}

// Sizes are JSON integers within int: get<int>() would convert a float or a wider integer
// silently, and a float out of int's range is undefined behaviour.
absl::Status Read(const json& obj, const char* section, const char* key, int* out) {
  auto it = obj.find(key);
  if (it == obj.end()) return absl::OkStatus();
  const bool fits =
      it->is_number_unsigned()
          ? it->get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<int>::max())
          : it->is_number_integer() && it->get<int64_t>() >= std::numeric_limits<int>::min() &&
                it->get<int64_t>() <= std::numeric_limits<int>::max();
  if (!fits) {
    return absl::InvalidArgumentError(
        absl::StrCat("config.json: ", section, key, " is ",
                     it->is_number() ? "out of range" : it->type_name(), ", not a 32-bit integer"));
  }
  *out = static_cast<int>(it->get<int64_t>());
  return absl::OkStatus();
}

// nlohmann's value() throws when the key holds another type: a config must get a status.
absl::StatusOr<std::string> StringField(const json& obj, const char* section, const char* key,
                                        const char* fallback) {
  auto it = obj.find(key);
  if (it == obj.end()) return std::string(fallback);
  if (!it->is_string()) {
    return absl::InvalidArgumentError(
        absl::StrCat("config.json: ", section, key, " is ", it->type_name(), ", not a string"));
  }
  return it->get<std::string>();
}

// A sub-config: absent is empty (every field its default); anything but an object is wrong.
absl::StatusOr<json> ObjectField(const json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end()) return json::object();
  if (!it->is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("config.json: ", key, " is ", it->type_name(), ", not an object"));
  }
  return *it;
}

absl::Status Positive(const char* name, int v) {
  if (v <= 0)
    return absl::InvalidArgumentError(absl::StrCat("config.json: ", name, " must be > 0"));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Blip2Config> ParseBlip2Config(const std::string& json_text) {
  json j;
  try {
    j = json::parse(json_text);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("config.json: not valid JSON: ", e.what()));
  }
  if (!j.is_object()) return absl::InvalidArgumentError("config.json: not a JSON object");
  absl::StatusOr<std::string> model_type = StringField(j, "", "model_type", "");
  if (!model_type.ok()) return model_type.status();
  if (*model_type != "blip-2") {
    return absl::InvalidArgumentError(
        absl::StrCat("config.json: model_type is '", *model_type, "', expected 'blip-2'"));
  }
  Blip2Config c;
  absl::Status s;
#define UPDP_READ(obj, sec, key, field)            \
  s = Read(obj, sec, key, &(field));               \
  if (!s.ok()) return s;
  UPDP_READ(j, "", "num_query_tokens", c.num_query_tokens);
  UPDP_READ(j, "", "image_text_hidden_size", c.image_text_hidden_size);
  absl::StatusOr<json> vision = ObjectField(j, "vision_config");
  if (!vision.ok()) return vision.status();
  const json& v = *vision;
  UPDP_READ(v, "vision_config.", "image_size", c.vision.image_size);
  UPDP_READ(v, "vision_config.", "patch_size", c.vision.patch_size);
  UPDP_READ(v, "vision_config.", "hidden_size", c.vision.hidden_size);
  UPDP_READ(v, "vision_config.", "intermediate_size", c.vision.intermediate_size);
  UPDP_READ(v, "vision_config.", "num_hidden_layers", c.vision.num_hidden_layers);
  UPDP_READ(v, "vision_config.", "num_attention_heads", c.vision.num_attention_heads);
  UPDP_READ(v, "vision_config.", "layer_norm_eps", c.vision.layer_norm_eps);
  UPDP_READ(v, "vision_config.", "qkv_bias", c.vision.qkv_bias);
  absl::StatusOr<json> qformer = ObjectField(j, "qformer_config");
  if (!qformer.ok()) return qformer.status();
  const json& q = *qformer;
  UPDP_READ(q, "qformer_config.", "vocab_size", c.qformer.vocab_size);
  UPDP_READ(q, "qformer_config.", "hidden_size", c.qformer.hidden_size);
  UPDP_READ(q, "qformer_config.", "num_hidden_layers", c.qformer.num_hidden_layers);
  UPDP_READ(q, "qformer_config.", "num_attention_heads", c.qformer.num_attention_heads);
  UPDP_READ(q, "qformer_config.", "intermediate_size", c.qformer.intermediate_size);
  UPDP_READ(q, "qformer_config.", "max_position_embeddings", c.qformer.max_position_embeddings);
  UPDP_READ(q, "qformer_config.", "layer_norm_eps", c.qformer.layer_norm_eps);
  UPDP_READ(q, "qformer_config.", "cross_attention_frequency", c.qformer.cross_attention_frequency);
  UPDP_READ(q, "qformer_config.", "encoder_hidden_size", c.qformer.encoder_hidden_size);
  UPDP_READ(q, "qformer_config.", "pad_token_id", c.qformer.pad_token_id);
#undef UPDP_READ
  for (const auto& [sec, name] : {std::pair<const json*, const char*>{&v, "vision_config."},
                                   std::pair<const json*, const char*>{&q, "qformer_config."}}) {
    absl::StatusOr<std::string> act = StringField(*sec, name, "hidden_act", "gelu");
    if (!act.ok()) return act.status();
    if (*act != "gelu") {
      return absl::InvalidArgumentError(absl::StrCat("config.json: hidden_act '", *act,
                                                     "' is not supported (only exact 'gelu')"));
    }
  }
  absl::StatusOr<std::string> pos =
      StringField(q, "qformer_config.", "position_embedding_type", "absolute");
  if (!pos.ok()) return pos.status();
  if (*pos != "absolute") {
    return absl::InvalidArgumentError(absl::StrCat(
        "config.json: qformer_config.position_embedding_type '", *pos, "' is not supported"));
  }
  for (auto [name, val] : std::initializer_list<std::pair<const char*, int>>{
           {"vision_config.image_size", c.vision.image_size},
           {"vision_config.patch_size", c.vision.patch_size},
           {"vision_config.hidden_size", c.vision.hidden_size},
           {"vision_config.num_hidden_layers", c.vision.num_hidden_layers},
           {"vision_config.num_attention_heads", c.vision.num_attention_heads},
           {"qformer_config.hidden_size", c.qformer.hidden_size},
           {"qformer_config.num_hidden_layers", c.qformer.num_hidden_layers},
           {"qformer_config.num_attention_heads", c.qformer.num_attention_heads},
           {"qformer_config.cross_attention_frequency", c.qformer.cross_attention_frequency},
           {"num_query_tokens", c.num_query_tokens},
           {"image_text_hidden_size", c.image_text_hidden_size}}) {
    if (auto st = Positive(name, val); !st.ok()) return st;
  }
  if (c.vision.hidden_size % c.vision.num_attention_heads != 0) {
    return absl::InvalidArgumentError(
        "config.json: vision_config.hidden_size is not divisible by num_attention_heads");
  }
  if (c.qformer.hidden_size % c.qformer.num_attention_heads != 0) {
    return absl::InvalidArgumentError(
        "config.json: qformer_config.hidden_size is not divisible by num_attention_heads");
  }
  if (c.vision.image_size % c.vision.patch_size != 0) {
    return absl::InvalidArgumentError(
        "config.json: vision_config.image_size is not a multiple of patch_size");
  }
  // num_positions() squares the patch grid side in int.
  if (c.vision.image_size / c.vision.patch_size > 46340) {
    return absl::InvalidArgumentError(
        "config.json: vision_config.image_size / patch_size is over 46340 patches a side");
  }
  if (c.qformer.encoder_hidden_size != c.vision.hidden_size) {
    return absl::InvalidArgumentError(
        "config.json: qformer_config.encoder_hidden_size differs from vision_config.hidden_size");
  }
  return c;
}

}  // namespace updp::model
