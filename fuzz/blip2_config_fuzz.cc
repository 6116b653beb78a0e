// config.json of a BLIP-2 checkpoint: ParseBlip2Config must return a status for any
// text, and an accepted config must have sizes the model code can rely on.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "server/model/blip2_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<updp::model::Blip2Config> c = updp::model::ParseBlip2Config(text);
  if (!c.ok()) return 0;
  // What blip2_model.cc divides by and allocates from.
  const auto& v = c->vision;
  const auto& q = c->qformer;
  if (v.patch_size <= 0 || v.image_size <= 0 || v.hidden_size <= 0 || v.num_attention_heads <= 0 ||
      v.hidden_size % v.num_attention_heads != 0 || q.hidden_size <= 0 ||
      q.num_attention_heads <= 0 || q.hidden_size % q.num_attention_heads != 0 ||
      q.cross_attention_frequency <= 0 || c->num_query_tokens <= 0) {
    std::abort();  // accepted, yet the model would divide by zero or misshape a tensor
  }
  (void)v.num_positions();
  return 0;
}
