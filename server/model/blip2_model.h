// BLIP-2 image-text retrieval model (EVA ViT-g vision encoder + Q-Former with
// projections and ITM head) in LibTorch, loading the Hugging Face
// Blip2ForImageTextRetrieval checkpoint layout. All weights are frozen
// (requires_grad = false); gradients can still flow to text input embeddings,
// which is what prompt learning needs.
#ifndef UPDP_SERVER_MODEL_BLIP2_MODEL_H_
#define UPDP_SERVER_MODEL_BLIP2_MODEL_H_

#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/model/blip2_config.h"

namespace updp::model {

// How attention is computed. kMath is the matmul-softmax-matmul reference path; kSdpa
// LibTorch's fused scaled_dot_product_attention (flash / memory-efficient kernels on
// CUDA), available from LibTorch 2.0. kAuto: kSdpa where available, else kMath.
enum class AttentionKernel { kAuto, kMath, kSdpa };

struct ModelOptions {
  torch::Device device = torch::kCPU;
  // dtype of the vision encoder; the Q-Former always runs in float32.
  torch::ScalarType vision_dtype = torch::kFloat32;
  AttentionKernel attention = AttentionKernel::kAuto;
  // On CUDA, let float32 matrix products and convolutions (the Q-Former, the patch
  // embedding) use TF32 tensor cores. This is process-wide in LibTorch. Load() turns it
  // on only when the vision encoder runs in bf16/fp16, whose rounding is far larger than
  // TF32's, and off otherwise, so that fp32 (parity) stays IEEE fp32.
  bool allow_tf32_with_low_precision_vision = true;
  // dtype of the Q-Former on the image-feature path (ImageQueryOutput, ImageFeature):
  // float32, or bf16/fp16 as the reference implementation runs it in its bf16 mode. The
  // text and multimodal passes (prompt learning) always run in float32.
  torch::ScalarType qformer_image_dtype = torch::kFloat32;
  // CUDA with a bf16/fp16 ViT only (fp32 always uses the exact form): compute the
  // MLP's fc1 + GELU as one cuBLASLt GEMM with a GELU epilogue, which saves a pass over
  // the widest activation (+6 % images/s on an H200). That epilogue is the tanh
  // approximation of GELU (BLIP-2 uses the exact erf form): measured against the fp32
  // reference, the features' error is the same as with the exact form in bf16
  // (docs/PERFORMANCE.md), because bf16 rounding dominates.
  bool fused_gelu = true;
};

// Q-Former image-path dtype: "auto" (bf16 when the ViT runs in bf16 on CUDA, else fp32),
// "fp32", "bf16".
absl::StatusOr<torch::ScalarType> ParseQFormerDtype(const std::string& precision,
                                                    const torch::Device& device,
                                                    torch::ScalarType vision_dtype);

// True when this LibTorch provides the fused attention (>= 2.0).
bool SdpaAvailable();
// Parses "auto", "math", "sdpa"; "sdpa" is an error where SdpaAvailable() is false.
absl::StatusOr<AttentionKernel> ParseAttention(const std::string& s);
const char* AttentionName(AttentionKernel k);

// Parses "cpu", "cuda", "cuda:N".
absl::StatusOr<torch::Device> ParseDevice(const std::string& s);
// Default vision dtype for a device: bf16 on CUDA, fp32 on CPU. `precision` may be
// "auto", "fp32", "bf16" or "fp16".
absl::StatusOr<torch::ScalarType> ParseVisionDtype(const std::string& precision,
                                                   const torch::Device& device);

// Names and shapes of every tensor a Blip2ForImageTextRetrieval checkpoint with this
// config holds (Hugging Face key names, fused vision qkv bias).
std::map<std::string, std::vector<int64_t>> ExpectedTensorShapes(const Blip2Config& c);

struct Linear {
  torch::Tensor w, b;
  torch::Tensor operator()(const torch::Tensor& x) const { return torch::linear(x, w, b); }
};
struct LayerNorm {
  torch::Tensor w, b;
  double eps = 1e-12;
  torch::Tensor operator()(const torch::Tensor& x) const {
    return torch::layer_norm(x, {w.size(0)}, w, b, eps);
  }
};

class Blip2Model {
 public:
  // Loads `dir`/config.json and `dir`/model.safetensors.
  static absl::StatusOr<std::unique_ptr<Blip2Model>> Load(const std::string& dir,
                                                          const ModelOptions& options);

  const Blip2Config& config() const { return config_; }
  const ModelOptions& options() const { return options_; }
  // The attention path in use (kAuto resolved).
  AttentionKernel attention() const { return attention_; }
  // sha256-free identity: FNV-1a 64 of config.json bytes and the sorted tensor
  // names/shapes, hex. Two checkpoints with the same architecture but other
  // weights share it; a prompt only depends on the architecture and embeddings.
  const std::string& identity() const { return identity_; }
  int64_t num_parameters() const;

  // pixel_values [B,3,H,W] float -> embeddings before the encoder [B,T,Dv] (float32).
  torch::Tensor VisionEmbeddings(const torch::Tensor& pixel_values) const;
  // pixel_values -> last hidden state after post_layernorm, float32 [B,T,Dv].
  torch::Tensor EncodeImage(const torch::Tensor& pixel_values) const;

  // Text embeddings (word + absolute position, positions 0..L-1), before the layernorm.
  torch::Tensor TextEmbeddingsFromIds(const torch::Tensor& input_ids) const;
  torch::Tensor TextEmbeddingsFromInputs(const torch::Tensor& inputs_embeds) const;
  // Q-Former run on raw embeddings `emb` [B,L,d] whose first `query_length` rows are
  // query tokens. `attention_mask` [B,L] (1 = keep) may be undefined (all visible).
  // `image_embeds` is required when query_length > 0.
  torch::Tensor QFormer(const torch::Tensor& emb, int64_t query_length,
                        const torch::Tensor& attention_mask,
                        const torch::Tensor& image_embeds) const;

  // Convenience modes.
  torch::Tensor ImageQueryOutput(const torch::Tensor& image_embeds) const;   // [B,Q,d]
  torch::Tensor TextOutput(const torch::Tensor& ids, const torch::Tensor& mask) const;  // [B,L,d]
  // Multimodal: queries + text (ids or embeddings), full bidirectional mask.
  torch::Tensor MultimodalOutput(const torch::Tensor& image_embeds,
                                 const torch::Tensor& text_embeddings,
                                 const torch::Tensor& text_mask) const;  // [B,Q+L,d]

  torch::Tensor ProjectImage(const torch::Tensor& query_output) const;  // normalised [B,Q,P]
  torch::Tensor ProjectText(const torch::Tensor& text_output) const;    // normalised [B,L,P]
  torch::Tensor ItmLogits(const torch::Tensor& multimodal_query_output) const;  // [B,2]
  // max over queries of <image_proj[i,q], text_proj[j]>: [Bi, Bj].
  static torch::Tensor ItcLogits(const torch::Tensor& image_proj, const torch::Tensor& text_cls);

  // Image feature used for selection: mean over queries of the projected query
  // embeddings, L2-normalised [B,P].
  torch::Tensor ImageFeature(const torch::Tensor& image_embeds) const;

  const torch::Tensor& word_embeddings() const { return word_emb_; }
  // Every weight tensor by its checkpoint name (for tests that prove nothing changed).
  const std::map<std::string, torch::Tensor>& weights() const { return weights_; }

 private:
  struct VisionLayer {
    LayerNorm ln1, ln2;
    Linear qkv, proj, fc1, fc2;
  };
  struct Attention {
    Linear q, k, v, out;
    LayerNorm ln;
  };
  struct QFormerLayer {
    Attention self_attn;
    bool has_cross = false;
    Attention cross_attn;
    Linear inter, out, inter_q, out_q;
    LayerNorm out_ln, out_q_ln;
  };

  Blip2Model() = default;
  // softmax(q k^T / sqrt(head_dim) + mask_add) v on [B,H,L,hd] tensors; mask_add may be
  // undefined. `scale_after` multiplies the scores by head_dim^-0.5 (the ViT's order of
  // operations) instead of dividing by sqrt(head_dim) (the Q-Former's); only the math
  // path distinguishes the two.
  torch::Tensor Attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                       const torch::Tensor& mask_add, bool scale_after) const;
  torch::Tensor BertAttention(const Attention& a, const torch::Tensor& h,
                              const torch::Tensor& kv, const torch::Tensor& mask_add) const;
  // One set of Q-Former weights in one dtype.
  struct QFormerWeights {
    torch::ScalarType dtype = torch::kFloat32;
    LayerNorm ln;
    std::vector<QFormerLayer> layers;
  };
  torch::Tensor RunQFormer(const QFormerWeights& w, const torch::Tensor& emb,
                           int64_t query_length, const torch::Tensor& attention_mask,
                           const torch::Tensor& image_embeds) const;

  Blip2Config config_;
  ModelOptions options_;
  AttentionKernel attention_ = AttentionKernel::kMath;
  std::string identity_;
  std::map<std::string, torch::Tensor> weights_;

  torch::Tensor class_emb_, pos_emb_, patch_w_, patch_b_;
  std::vector<VisionLayer> vision_layers_;
  LayerNorm post_ln_;
  torch::Tensor query_tokens_, word_emb_, text_pos_emb_;
  QFormerWeights qformer_;        // float32: every pass
  QFormerWeights qformer_image_;  // the image path's copy when qformer_image_dtype != fp32
  Linear vision_proj_, text_proj_, itm_head_;
};

}  // namespace updp::model

#endif  // UPDP_SERVER_MODEL_BLIP2_MODEL_H_
