#include "server/model/blip2_model.h"

#include <torch/version.h>

#include <cmath>
#include <cstdio>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/util/atomic_file.h"
#include "server/util/fnv1a.h"
#include "server/model/safetensors.h"

namespace updp::model {
namespace {

using Shape = std::vector<int64_t>;

std::string ShapeStr(const Shape& s) { return absl::StrCat("[", absl::StrJoin(s, ","), "]"); }

}  // namespace

// at::scaled_dot_product_attention appeared in LibTorch 2.0 (its default scale is
// head_dim^-0.5, the one both BLIP-2 attentions use).
#if TORCH_VERSION_MAJOR >= 2
#define UPDP_HAVE_SDPA 1
#endif

bool SdpaAvailable() {
#ifdef UPDP_HAVE_SDPA
  return true;
#else
  return false;
#endif
}

absl::StatusOr<AttentionKernel> ParseAttention(const std::string& s) {
  if (s == "auto") return AttentionKernel::kAuto;
  if (s == "math") return AttentionKernel::kMath;
  if (s == "sdpa") {
    if (!SdpaAvailable()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "attention: 'sdpa' needs LibTorch >= 2.0 (this build has ", TORCH_VERSION, ")"));
    }
    return AttentionKernel::kSdpa;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("attention: '", s, "' is not one of auto, math, sdpa"));
}

const char* AttentionName(AttentionKernel k) {
  switch (k) {
    case AttentionKernel::kAuto: return "auto";
    case AttentionKernel::kMath: return "math";
    case AttentionKernel::kSdpa: return "sdpa";
  }
  return "?";
}

std::map<std::string, std::vector<int64_t>> ExpectedTensorShapes(const Blip2Config& c) {
  std::map<std::string, Shape> e;
  const int64_t dv = c.vision.hidden_size, iv = c.vision.intermediate_size;
  const int64_t p = c.vision.patch_size, t = c.vision.num_positions();
  e["vision_model.embeddings.class_embedding"] = {1, 1, dv};
  e["vision_model.embeddings.position_embedding"] = {1, t, dv};
  e["vision_model.embeddings.patch_embedding.weight"] = {dv, 3, p, p};
  e["vision_model.embeddings.patch_embedding.bias"] = {dv};
  for (int i = 0; i < c.vision.num_hidden_layers; ++i) {
    std::string l = absl::StrCat("vision_model.encoder.layers.", i, ".");
    for (const char* ln : {"layer_norm1", "layer_norm2"}) {
      e[l + ln + ".weight"] = {dv};
      e[l + ln + ".bias"] = {dv};
    }
    e[l + "self_attn.qkv.weight"] = {3 * dv, dv};
    if (c.vision.qkv_bias) e[l + "self_attn.qkv.bias"] = {3 * dv};
    e[l + "self_attn.projection.weight"] = {dv, dv};
    e[l + "self_attn.projection.bias"] = {dv};
    e[l + "mlp.fc1.weight"] = {iv, dv};
    e[l + "mlp.fc1.bias"] = {iv};
    e[l + "mlp.fc2.weight"] = {dv, iv};
    e[l + "mlp.fc2.bias"] = {dv};
  }
  e["vision_model.post_layernorm.weight"] = {dv};
  e["vision_model.post_layernorm.bias"] = {dv};
  const int64_t d = c.qformer.hidden_size, iq = c.qformer.intermediate_size;
  e["query_tokens"] = {1, c.num_query_tokens, d};
  e["embeddings.word_embeddings.weight"] = {c.qformer.vocab_size, d};
  e["embeddings.position_embeddings.weight"] = {c.qformer.max_position_embeddings, d};
  e["qformer.layernorm.weight"] = {d};
  e["qformer.layernorm.bias"] = {d};
  auto attention = [&](const std::string& pre, int64_t kv_in) {
    e[pre + "attention.query.weight"] = {d, d};
    e[pre + "attention.query.bias"] = {d};
    e[pre + "attention.key.weight"] = {d, kv_in};
    e[pre + "attention.key.bias"] = {d};
    e[pre + "attention.value.weight"] = {d, kv_in};
    e[pre + "attention.value.bias"] = {d};
    e[pre + "output.dense.weight"] = {d, d};
    e[pre + "output.dense.bias"] = {d};
    e[pre + "output.LayerNorm.weight"] = {d};
    e[pre + "output.LayerNorm.bias"] = {d};
  };
  for (int i = 0; i < c.qformer.num_hidden_layers; ++i) {
    std::string l = absl::StrCat("qformer.encoder.layer.", i, ".");
    attention(l + "attention.", d);
    if (i % c.qformer.cross_attention_frequency == 0) {
      attention(l + "crossattention.", c.qformer.encoder_hidden_size);
    }
    for (const char* suffix : {"", "_query"}) {
      e[absl::StrCat(l, "intermediate", suffix, ".dense.weight")] = {iq, d};
      e[absl::StrCat(l, "intermediate", suffix, ".dense.bias")] = {iq};
      e[absl::StrCat(l, "output", suffix, ".dense.weight")] = {d, iq};
      e[absl::StrCat(l, "output", suffix, ".dense.bias")] = {d};
      e[absl::StrCat(l, "output", suffix, ".LayerNorm.weight")] = {d};
      e[absl::StrCat(l, "output", suffix, ".LayerNorm.bias")] = {d};
    }
  }
  const int64_t proj = c.image_text_hidden_size;
  for (const char* n : {"vision_projection", "text_projection"}) {
    e[absl::StrCat(n, ".weight")] = {proj, d};
    e[absl::StrCat(n, ".bias")] = {proj};
  }
  e["itm_head.weight"] = {2, d};
  e["itm_head.bias"] = {2};
  return e;
}

absl::StatusOr<torch::Device> ParseDevice(const std::string& s) {
  if (s == "cpu") return torch::Device(torch::kCPU);
  if (s == "cuda" || absl::StartsWith(s, "cuda:")) {
    int index = 0;
    if (s.size() > 5 && !absl::SimpleAtoi(s.substr(5), &index)) {
      return absl::InvalidArgumentError(absl::StrCat("device: bad CUDA index in '", s, "'"));
    }
    if (!torch::cuda::is_available()) {
#ifdef UPDP_WITH_CUDA
      return absl::FailedPreconditionError(absl::StrCat(
          "device: '", s, "' requested but no CUDA GPU is visible: this CUDA build found no ",
          "NVIDIA driver or device (in a container, give it the GPU, e.g. docker run --gpus all; ",
          "or run with --device cpu)"));
#else
      return absl::FailedPreconditionError(absl::StrCat(
          "device: '", s, "' requested but this build's LibTorch has no CUDA (run with ",
          "--device cpu, or use the CUDA build)"));
#endif
    }
    if (index < 0 || index >= static_cast<int>(torch::cuda::device_count())) {
      return absl::InvalidArgumentError(absl::StrCat("device: no CUDA device ", index));
    }
    return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("device: '", s, "' is not one of cpu, cuda, cuda:N"));
}

absl::StatusOr<torch::ScalarType> ParseVisionDtype(const std::string& precision,
                                                   const torch::Device& device) {
  if (precision == "auto") return device.is_cuda() ? torch::kBFloat16 : torch::kFloat32;
  if (precision == "fp32") return torch::kFloat32;
  if (precision == "bf16") return torch::kBFloat16;
  if (precision == "fp16") return torch::kFloat16;
  return absl::InvalidArgumentError(
      absl::StrCat("precision: '", precision, "' is not one of auto, fp32, bf16, fp16"));
}

absl::StatusOr<torch::ScalarType> ParseQFormerDtype(const std::string& precision,
                                                    const torch::Device& device,
                                                    torch::ScalarType vision_dtype) {
  if (precision == "auto") {
    return device.is_cuda() && vision_dtype == torch::kBFloat16 ? torch::kBFloat16 : torch::kFloat32;
  }
  if (precision == "fp32") return torch::kFloat32;
  if (precision == "bf16") return torch::kBFloat16;
  return absl::InvalidArgumentError(
      absl::StrCat("qformer_precision: '", precision, "' is not one of auto, fp32, bf16"));
}

absl::StatusOr<std::unique_ptr<Blip2Model>> Blip2Model::Load(const std::string& dir,
                                                             const ModelOptions& options) {
  auto config_text = ReadFile(dir + "/config.json");
  if (!config_text.ok()) return config_text.status();
  auto config = ParseBlip2Config(*config_text);
  if (!config.ok()) return config.status();
  auto file = SafetensorsFile::Open(dir + "/model.safetensors");
  if (!file.ok()) return file.status();
  const SafetensorsFile& st = **file;

  std::unique_ptr<Blip2Model> m(new Blip2Model());
  m->config_ = *config;
  m->options_ = options;
  m->attention_ = options.attention == AttentionKernel::kAuto
                      ? (SdpaAvailable() ? AttentionKernel::kSdpa : AttentionKernel::kMath)
                      : options.attention;
  if (m->attention_ == AttentionKernel::kSdpa && !SdpaAvailable()) {
    return absl::InvalidArgumentError("attention: 'sdpa' needs LibTorch >= 2.0");
  }
  if (options.device.is_cuda()) {
    // Set both ways: LibTorch lets cuDNN convolutions use TF32 by default, which would
    // move the fp32 patch embedding by ~2e-3 (20x the parity tolerance).
    const bool tf32 =
        options.allow_tf32_with_low_precision_vision && options.vision_dtype != torch::kFloat32;
    at::globalContext().setAllowTF32CuBLAS(tf32);
    at::globalContext().setAllowTF32CuDNN(tf32);
  }
  const auto expected = ExpectedTensorShapes(*config);

  // Older LAVIS-derived exports keep the vision attention bias split as q_bias/v_bias.
  std::set<std::string> consumed;
  for (const auto& [name, shape] : expected) {
    torch::Tensor t;
    const bool split_bias = absl::EndsWith(name, "self_attn.qkv.bias") && !st.Has(name);
    if (split_bias) {
      std::string pre = name.substr(0, name.size() - std::string("qkv.bias").size());
      auto q = st.Get(pre + "q_bias", torch::kFloat32);
      auto v = st.Get(pre + "v_bias", torch::kFloat32);
      if (!q.ok() || !v.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(
            st.path(), ": missing tensor '", name, "' (nor split q_bias/v_bias)"));
      }
      if (q->sizes().vec() != Shape{shape[0] / 3} || v->sizes().vec() != Shape{shape[0] / 3}) {
        return absl::InvalidArgumentError(absl::StrCat(st.path(), ": tensor '", pre,
                                                       "q_bias/v_bias' has the wrong shape"));
      }
      t = torch::cat({*q, torch::zeros_like(*q), *v});
      consumed.insert(pre + "q_bias");
      consumed.insert(pre + "v_bias");
    } else {
      if (!st.Has(name)) {
        return absl::InvalidArgumentError(
            absl::StrCat(st.path(), ": missing tensor '", name, "' ", ShapeStr(shape)));
      }
      const auto& info = st.tensors().at(name);
      if (info.dtype != "F32" && info.dtype != "F16" && info.dtype != "BF16") {
        return absl::InvalidArgumentError(absl::StrCat(st.path(), ": tensor '", name,
                                                       "' has dtype ", info.dtype,
                                                       ", expected F32, F16 or BF16"));
      }
      if (info.shape != shape) {
        return absl::InvalidArgumentError(absl::StrCat(st.path(), ": tensor '", name, "' has shape ",
                                                       ShapeStr(info.shape), ", config.json says ",
                                                       ShapeStr(shape)));
      }
      auto got = st.Get(name, torch::kFloat32);
      if (!got.ok()) return got.status();
      t = *got;
      consumed.insert(name);
    }
    m->weights_[name] = t;
  }
  for (const auto& [name, info] : st.tensors()) {
    if (consumed.count(name) || absl::EndsWith(name, "position_ids")) continue;
    return absl::InvalidArgumentError(absl::StrCat(
        st.path(), ": unexpected tensor '", name, "' ", ShapeStr(info.shape),
        " (not part of a Blip2ForImageTextRetrieval with this config.json)"));
  }

  uint64_t h = Fnv1a(kFnv1aOffset, *config_text);
  for (const auto& [name, shape] : expected) h = Fnv1a(h, absl::StrCat(name, ShapeStr(shape), ";"));
  m->identity_ = Hex64(h);

  // Move to device; vision weights in the vision dtype, the rest float32.
  for (auto& [name, t] : m->weights_) {
    const bool vision = absl::StartsWith(name, "vision_model.");
    t = t.to(options.device, vision ? options.vision_dtype : torch::kFloat32).set_requires_grad(false);
  }
  auto W = [&](const std::string& n) { return m->weights_.at(n); };
  auto L = [&](const std::string& n) { return Linear{W(n + ".weight"), W(n + ".bias")}; };
  auto N = [&](const std::string& n, double eps) {
    return LayerNorm{W(n + ".weight"), W(n + ".bias"), eps};
  };
  const auto& c = m->config_;
  m->class_emb_ = W("vision_model.embeddings.class_embedding");
  m->pos_emb_ = W("vision_model.embeddings.position_embedding");
  m->patch_w_ = W("vision_model.embeddings.patch_embedding.weight");
  m->patch_b_ = W("vision_model.embeddings.patch_embedding.bias");
  for (int i = 0; i < c.vision.num_hidden_layers; ++i) {
    std::string l = absl::StrCat("vision_model.encoder.layers.", i, ".");
    VisionLayer v;
    v.ln1 = N(l + "layer_norm1", c.vision.layer_norm_eps);
    v.ln2 = N(l + "layer_norm2", c.vision.layer_norm_eps);
    v.qkv.w = W(l + "self_attn.qkv.weight");
    if (c.vision.qkv_bias) v.qkv.b = W(l + "self_attn.qkv.bias");
    v.proj = L(l + "self_attn.projection");
    v.fc1 = L(l + "mlp.fc1");
    v.fc2 = L(l + "mlp.fc2");
    m->vision_layers_.push_back(v);
  }
  m->post_ln_ = N("vision_model.post_layernorm", c.vision.layer_norm_eps);
  m->query_tokens_ = W("query_tokens");
  m->word_emb_ = W("embeddings.word_embeddings.weight");
  m->text_pos_emb_ = W("embeddings.position_embeddings.weight");
  const double qeps = c.qformer.layer_norm_eps;
  // One Q-Former weight set per dtype, read from the same checkpoint names (for float32
  // .to() returns the loaded tensors themselves).
  auto build_qformer = [&](torch::ScalarType dt) {
    auto Wq = [&](const std::string& n) { return W(n).to(dt); };
    auto Lq = [&](const std::string& n) { return Linear{Wq(n + ".weight"), Wq(n + ".bias")}; };
    auto Nq = [&](const std::string& n) {
      return LayerNorm{Wq(n + ".weight"), Wq(n + ".bias"), qeps};
    };
    auto attention = [&](const std::string& pre) {
      Attention a;
      a.q = Lq(pre + "attention.query");
      a.k = Lq(pre + "attention.key");
      a.v = Lq(pre + "attention.value");
      a.out = Lq(pre + "output.dense");
      a.ln = Nq(pre + "output.LayerNorm");
      return a;
    };
    QFormerWeights w;
    w.dtype = dt;
    w.ln = Nq("qformer.layernorm");
    for (int i = 0; i < c.qformer.num_hidden_layers; ++i) {
      std::string l = absl::StrCat("qformer.encoder.layer.", i, ".");
      QFormerLayer q;
      q.self_attn = attention(l + "attention.");
      q.has_cross = i % c.qformer.cross_attention_frequency == 0;
      if (q.has_cross) q.cross_attn = attention(l + "crossattention.");
      q.inter = Lq(l + "intermediate.dense");
      q.out = Lq(l + "output.dense");
      q.out_ln = Nq(l + "output.LayerNorm");
      q.inter_q = Lq(l + "intermediate_query.dense");
      q.out_q = Lq(l + "output_query.dense");
      q.out_q_ln = Nq(l + "output_query.LayerNorm");
      w.layers.push_back(q);
    }
    return w;
  };
  m->qformer_ = build_qformer(torch::kFloat32);
  if (options.qformer_image_dtype != torch::kFloat32) {
    m->qformer_image_ = build_qformer(options.qformer_image_dtype);
  }
  m->vision_proj_ = L("vision_projection");
  m->text_proj_ = L("text_projection");
  m->itm_head_ = L("itm_head");
  return m;
}

int64_t Blip2Model::num_parameters() const {
  int64_t n = 0;
  for (const auto& [name, t] : weights_) n += t.numel();
  return n;
}

torch::Tensor Blip2Model::VisionEmbeddings(const torch::Tensor& pixel_values) const {
  torch::Tensor x = pixel_values.to(options_.device, options_.vision_dtype);
  const int64_t p = config_.vision.patch_size;
  torch::Tensor patches = torch::conv2d(x, patch_w_, patch_b_, {p, p});  // [B,D,gh,gw]
  patches = patches.flatten(2).transpose(1, 2);                            // [B,gh*gw,D]
  torch::Tensor cls = class_emb_.expand({x.size(0), 1, class_emb_.size(2)});
  torch::Tensor e = torch::cat({cls, patches}, 1);
  return e + pos_emb_.narrow(1, 0, e.size(1));
}

torch::Tensor Blip2Model::EncodeImage(const torch::Tensor& pixel_values) const {
  torch::Tensor h = VisionEmbeddings(pixel_values);
  const int64_t heads = config_.vision.num_attention_heads;
  const int64_t b = h.size(0), t = h.size(1), dim = h.size(2), hd = dim / heads;
  const bool fused_gelu = options_.fused_gelu && options_.device.is_cuda() &&
                          options_.vision_dtype != torch::kFloat32;
  for (const auto& l : vision_layers_) {
    torch::Tensor x = l.ln1(h);
    torch::Tensor qkv = l.qkv(x).reshape({b, t, 3, heads, hd}).permute({2, 0, 3, 1, 4});
    torch::Tensor ctx = Attend(qkv[0], qkv[1], qkv[2], torch::Tensor(), true);  // [B,H,T,hd]
    ctx = ctx.permute({0, 2, 1, 3}).reshape({b, t, dim});
    h = h + l.proj(ctx);
#if TORCH_VERSION_MAJOR >= 2
    if (fused_gelu) {
      torch::Tensor x2 = l.ln2(h).reshape({b * t, dim});
      torch::Tensor a = at::_addmm_activation(l.fc1.b, x2, l.fc1.w.t(), 1, 1, /*use_gelu=*/true);
      h = h + l.fc2(a.view({b, t, -1}));
      continue;
    }
#endif
    h = h + l.fc2(torch::gelu(l.fc1(l.ln2(h))));
  }
  return post_ln_(h).to(torch::kFloat32);
}

torch::Tensor Blip2Model::TextEmbeddingsFromIds(const torch::Tensor& input_ids) const {
  return TextEmbeddingsFromInputs(
      torch::embedding(word_emb_, input_ids.to(options_.device, torch::kLong)));
}

torch::Tensor Blip2Model::TextEmbeddingsFromInputs(const torch::Tensor& inputs_embeds) const {
  const int64_t len = inputs_embeds.size(1);
  TORCH_CHECK(len <= text_pos_emb_.size(0), "text length ", len, " exceeds max_position_embeddings ",
              text_pos_emb_.size(0));
  return inputs_embeds + text_pos_emb_.narrow(0, 0, len).unsqueeze(0);
}

torch::Tensor Blip2Model::BertAttention(const Attention& a, const torch::Tensor& h,
                                        const torch::Tensor& kv,
                                        const torch::Tensor& mask_add) const {
  const int64_t heads = config_.qformer.num_attention_heads;
  const int64_t b = h.size(0), lq = h.size(1), d = h.size(2), hd = d / heads, lk = kv.size(1);
  torch::Tensor q = a.q(h).view({b, lq, heads, hd}).transpose(1, 2);
  torch::Tensor k = a.k(kv).view({b, lk, heads, hd}).transpose(1, 2);
  torch::Tensor v = a.v(kv).view({b, lk, heads, hd}).transpose(1, 2);
  torch::Tensor ctx = Attend(q, k, v, mask_add, false).transpose(1, 2).reshape({b, lq, d});
  return a.ln(a.out(ctx) + h);
}

torch::Tensor Blip2Model::Attend(const torch::Tensor& q, const torch::Tensor& k,
                                 const torch::Tensor& v, const torch::Tensor& mask_add,
                                 bool scale_after) const {
#ifdef UPDP_HAVE_SDPA
  if (attention_ == AttentionKernel::kSdpa) {
    // The mask is additive and broadcast over heads and queries ([B,1,1,L]); it must
    // have the scores' dtype.
    c10::optional<at::Tensor> mask;
    if (mask_add.defined()) mask = mask_add.to(q.scalar_type());
    return at::scaled_dot_product_attention(q, k, v, mask, 0.0, false);
  }
#endif
  const double hd = static_cast<double>(q.size(-1));
  torch::Tensor scores = torch::matmul(q, k.transpose(-1, -2));
  scores = scale_after ? scores * (1.0 / std::sqrt(hd)) : scores / std::sqrt(hd);
  if (mask_add.defined()) scores = scores + mask_add;
  return torch::matmul(scores.softmax(-1), v);
}

torch::Tensor Blip2Model::QFormer(const torch::Tensor& emb, int64_t query_length,
                                  const torch::Tensor& attention_mask,
                                  const torch::Tensor& image_embeds) const {
  return RunQFormer(qformer_, emb, query_length, attention_mask, image_embeds);
}

torch::Tensor Blip2Model::RunQFormer(const QFormerWeights& w, const torch::Tensor& emb,
                                     int64_t query_length, const torch::Tensor& attention_mask,
                                     const torch::Tensor& image_embeds) const {
  TORCH_CHECK(query_length == 0 || image_embeds.defined(),
              "Q-Former with queries needs image embeddings");
  torch::Tensor h = w.ln(emb.to(options_.device, w.dtype));
  torch::Tensor mask_add;
  if (attention_mask.defined()) {
    mask_add = (1.0 - attention_mask.to(options_.device, torch::kFloat32)) * -10000.0;
    mask_add = mask_add.unsqueeze(1).unsqueeze(1).to(w.dtype);  // [B,1,1,L]
  }
  torch::Tensor img;
  if (query_length > 0) img = image_embeds.to(options_.device, w.dtype);
  const int64_t len = h.size(1);
  for (const auto& l : w.layers) {
    torch::Tensor a = BertAttention(l.self_attn, h, h, mask_add);
    if (query_length > 0) {
      torch::Tensor q = a.narrow(1, 0, query_length);
      if (l.has_cross) q = BertAttention(l.cross_attn, q, img, torch::Tensor());
      q = l.out_q_ln(l.out_q(torch::gelu(l.inter_q(q))) + q);
      if (len > query_length) {
        torch::Tensor t = a.narrow(1, query_length, len - query_length);
        t = l.out_ln(l.out(torch::gelu(l.inter(t))) + t);
        h = torch::cat({q, t}, 1);
      } else {
        h = q;
      }
    } else {
      h = l.out_ln(l.out(torch::gelu(l.inter(a))) + a);
    }
  }
  return h;
}

torch::Tensor Blip2Model::ImageQueryOutput(const torch::Tensor& image_embeds) const {
  torch::Tensor q = query_tokens_.expand({image_embeds.size(0), -1, -1});
  const QFormerWeights& w = qformer_image_.layers.empty() ? qformer_ : qformer_image_;
  return RunQFormer(w, q, q.size(1), torch::Tensor(), image_embeds).to(torch::kFloat32);
}

torch::Tensor Blip2Model::TextOutput(const torch::Tensor& ids, const torch::Tensor& mask) const {
  return QFormer(TextEmbeddingsFromIds(ids), 0, mask, torch::Tensor());
}

torch::Tensor Blip2Model::MultimodalOutput(const torch::Tensor& image_embeds,
                                           const torch::Tensor& text_embeddings,
                                           const torch::Tensor& text_mask) const {
  const int64_t b = image_embeds.size(0);
  torch::Tensor q = query_tokens_.expand({b, -1, -1});
  torch::Tensor emb = torch::cat({q, text_embeddings.to(options_.device, torch::kFloat32)}, 1);
  torch::Tensor mask;
  if (text_mask.defined()) {
    mask = torch::cat({torch::ones({b, q.size(1)}, torch::TensorOptions().device(options_.device)),
                       text_mask.to(options_.device, torch::kFloat32)},
                      1);
  }
  return QFormer(emb, q.size(1), mask, image_embeds);
}

torch::Tensor Blip2Model::ProjectImage(const torch::Tensor& query_output) const {
  return torch::nn::functional::normalize(
      vision_proj_(query_output), torch::nn::functional::NormalizeFuncOptions().dim(-1).eps(1e-12));
}

torch::Tensor Blip2Model::ProjectText(const torch::Tensor& text_output) const {
  return torch::nn::functional::normalize(
      text_proj_(text_output), torch::nn::functional::NormalizeFuncOptions().dim(-1).eps(1e-12));
}

torch::Tensor Blip2Model::ItmLogits(const torch::Tensor& multimodal_query_output) const {
  return itm_head_(multimodal_query_output).mean(1);
}

torch::Tensor Blip2Model::ItcLogits(const torch::Tensor& image_proj, const torch::Tensor& text_cls) {
  // [Bi,Q,P] x [Bj,P] -> [Bi,Bj,Q] -> max over Q.
  return std::get<0>(torch::einsum("iqp,jp->ijq", {image_proj, text_cls}).max(-1));
}

torch::Tensor Blip2Model::ImageFeature(const torch::Tensor& image_embeds) const {
  torch::Tensor proj = ProjectImage(ImageQueryOutput(image_embeds)).mean(1);
  return torch::nn::functional::normalize(
      proj, torch::nn::functional::NormalizeFuncOptions().dim(-1).eps(1e-12));
}

}  // namespace updp::model
