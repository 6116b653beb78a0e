#include "server/model/blip2_model.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include "absl/strings/match.h"
#include "server/util/atomic_file.h"
#include "server/model/encoder.h"
#include "server/model/safetensors.h"
#include "server/model/test_model.h"

namespace updp::model {
namespace {

const std::string kFixture = std::string(UPDP_FIXTURES) + "/blip2-tiny-a";

// Copies the fixture checkpoint with `edit` applied to its tensors.
std::string EditedCheckpoint(
    const std::string& name,
    const std::function<void(std::vector<std::pair<std::string, torch::Tensor>>&)>& edit) {
  std::string dir = ::testing::TempDir() + "/" + name;
  ::mkdir(dir.c_str(), 0755);
  auto f = SafetensorsFile::Open(kFixture + "/model.safetensors");
  std::vector<std::pair<std::string, torch::Tensor>> t;
  for (const auto& [n, info] : (*f)->tensors()) t.emplace_back(n, *(*f)->Get(n));
  edit(t);
  EXPECT_TRUE(WriteSafetensors(dir + "/model.safetensors", t).ok());
  EXPECT_TRUE(WriteFileAtomically(dir + "/config.json", *ReadFile(kFixture + "/config.json")).ok());
  return dir;
}

// The fused attention (LibTorch >= 2.0) must compute what the matmul-softmax path does,
// in every place attention is used: the ViT, the Q-Former's query self- and
// cross-attention, masked text self-attention and the multimodal pass.
TEST(Blip2Model, FusedAttentionEqualsMatmulSoftmaxOnCpu) {
  if (!SdpaAvailable()) {
    EXPECT_FALSE(ParseAttention("sdpa").ok());
    GTEST_SKIP() << "this LibTorch has no scaled_dot_product_attention";
  }
  ModelOptions math_options, sdpa_options;
  math_options.attention = AttentionKernel::kMath;
  sdpa_options.attention = AttentionKernel::kSdpa;
  auto math = Blip2Model::Load(kFixture, math_options);
  auto sdpa = Blip2Model::Load(kFixture, sdpa_options);
  ASSERT_TRUE(math.ok() && sdpa.ok());
  ASSERT_EQ((*math)->attention(), AttentionKernel::kMath);
  ASSERT_EQ((*sdpa)->attention(), AttentionKernel::kSdpa);
  auto in = *SafetensorsFile::Open(kFixture + "/inputs.safetensors");
  torch::NoGradGuard g;
  torch::Tensor px = *in->Get("pixel_values"), ids = *in->Get("input_ids"),
                mask = *in->Get("attention_mask");
  auto diff = [](const torch::Tensor& a, const torch::Tensor& b) {
    return (a - b).abs().max().item<double>();
  };
  torch::Tensor img_m = (*math)->EncodeImage(px), img_s = (*sdpa)->EncodeImage(px);
  EXPECT_LT(diff(img_m, img_s), 1e-5);
  EXPECT_LT(diff((*math)->ImageQueryOutput(img_m), (*sdpa)->ImageQueryOutput(img_m)), 1e-5);
  EXPECT_LT(diff((*math)->TextOutput(ids, mask), (*sdpa)->TextOutput(ids, mask)), 1e-5);
  torch::Tensor emb = (*math)->TextEmbeddingsFromIds(ids);
  EXPECT_LT(diff((*math)->MultimodalOutput(img_m, emb, mask), (*sdpa)->MultimodalOutput(img_m, emb, mask)),
            1e-5);
  // The padding mask matters: without it the text output moves far more than 1e-5.
  EXPECT_GT(diff((*sdpa)->TextOutput(ids, mask), (*sdpa)->TextOutput(ids, torch::ones_like(mask))), 1e-3);
}

// The image path can run its Q-Former in bf16 (as the reference does in its bf16 mode):
// close to float32, not identical, and the text path stays float32.
TEST(Blip2Model, Bf16QFormerImagePathIsCloseToFloat32) {
  EXPECT_EQ(*ParseQFormerDtype("auto", torch::kCPU, torch::kBFloat16), torch::kFloat32);
  EXPECT_EQ(*ParseQFormerDtype("bf16", torch::kCPU, torch::kFloat32), torch::kBFloat16);
  EXPECT_FALSE(ParseQFormerDtype("fp8", torch::kCPU, torch::kFloat32).ok());
  ModelOptions bf16;
  bf16.qformer_image_dtype = torch::kBFloat16;
  auto ref = Blip2Model::Load(kFixture, {});
  auto low = Blip2Model::Load(kFixture, bf16);
  ASSERT_TRUE(ref.ok() && low.ok());
  auto in = *SafetensorsFile::Open(kFixture + "/inputs.safetensors");
  torch::NoGradGuard g;
  torch::Tensor img = (*ref)->EncodeImage(*in->Get("pixel_values"));
  torch::Tensor a = (*ref)->ImageFeature(img), b = (*low)->ImageFeature(img);
  EXPECT_EQ(b.scalar_type(), torch::kFloat32);
  const double d = (a - b).abs().max().item<double>();
  EXPECT_GT(d, 0.0);
  EXPECT_LT(d, 3e-2);
  torch::Tensor ids = *in->Get("input_ids"), mask = *in->Get("attention_mask");
  EXPECT_TRUE(torch::equal((*ref)->TextOutput(ids, mask), (*low)->TextOutput(ids, mask)));
}

TEST(Blip2Model, ParsesAttentionKernel) {
  EXPECT_EQ(*ParseAttention("auto"), AttentionKernel::kAuto);
  EXPECT_EQ(*ParseAttention("math"), AttentionKernel::kMath);
  auto bad = ParseAttention("flash");
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(absl::StrContains(bad.status().message(), "attention"));
  auto m = Blip2Model::Load(kFixture, {});
  ASSERT_TRUE(m.ok());
  EXPECT_EQ((*m)->attention(), SdpaAvailable() ? AttentionKernel::kSdpa : AttentionKernel::kMath);
}

TEST(Blip2Model, LoadsFixtureAndMatchesReference) {
  auto m = Blip2Model::Load(kFixture, {});
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ((*m)->num_parameters(), 195458);
  auto in = *SafetensorsFile::Open(kFixture + "/inputs.safetensors");
  auto ex = *SafetensorsFile::Open(kFixture + "/expected.safetensors");
  torch::NoGradGuard g;
  torch::Tensor img = (*m)->EncodeImage(*in->Get("pixel_values"));
  EXPECT_LT((img - *ex->Get("vision_last_hidden_state")).abs().max().item<double>(), 1e-4);
  torch::Tensor q = (*m)->ImageQueryOutput(img);
  EXPECT_LT((q - *ex->Get("image_query_output")).abs().max().item<double>(), 1e-4);
}

TEST(Blip2Model, SplitQvBiasLoadsIdentically) {
  std::string dir = EditedCheckpoint("split_bias", [](auto& t) {
    std::vector<std::pair<std::string, torch::Tensor>> out;
    for (auto& [n, v] : t) {
      if (absl::EndsWith(n, "self_attn.qkv.bias")) {
        std::string pre = n.substr(0, n.size() - 8);
        int64_t d = v.size(0) / 3;
        out.emplace_back(pre + "q_bias", v.narrow(0, 0, d).clone());
        out.emplace_back(pre + "v_bias", v.narrow(0, 2 * d, d).clone());
      } else {
        out.emplace_back(n, v);
      }
    }
    t = out;
  });
  auto a = Blip2Model::Load(kFixture, {});
  auto b = Blip2Model::Load(dir, {});
  ASSERT_TRUE(b.ok()) << b.status();
  for (const auto& [n, v] : (*a)->weights()) EXPECT_TRUE(torch::equal(v, (*b)->weights().at(n))) << n;
}

TEST(Blip2Model, ErrorsNameTheTensor) {
  std::string dir = EditedCheckpoint("missing", [](auto& t) {
    t.erase(std::remove_if(t.begin(), t.end(),
                           [](auto& p) { return p.first == "itm_head.weight"; }),
            t.end());
  });
  auto m = Blip2Model::Load(dir, {});
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("itm_head.weight"), std::string::npos) << m.status();

  dir = EditedCheckpoint("shape", [](auto& t) {
    for (auto& [n, v] : t) {
      if (n == "query_tokens") v = torch::zeros({1, 9, 32});
    }
  });
  m = Blip2Model::Load(dir, {});
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("query_tokens"), std::string::npos) << m.status();

  dir = EditedCheckpoint("extra", [](auto& t) { t.emplace_back("bogus.weight", torch::zeros({2})); });
  m = Blip2Model::Load(dir, {});
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("bogus.weight"), std::string::npos) << m.status();

  dir = EditedCheckpoint("dtype", [](auto& t) {
    for (auto& [n, v] : t) {
      if (n == "itm_head.bias") v = torch::zeros({2}, torch::kLong);
    }
  });
  m = Blip2Model::Load(dir, {});
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("itm_head.bias"), std::string::npos) << m.status();
}

TEST(Blip2Model, RandomPresetsLoadThroughTheSameCode) {
  for (const char* preset : {"tiny", "small"}) {
    std::string dir = ::testing::TempDir() + "/preset_" + preset;
    auto cfg = PresetConfig(preset);
    ASSERT_TRUE(cfg.ok());
    ASSERT_TRUE(WriteRandomCheckpoint(dir, *cfg, 1).ok());
    auto m = Blip2Model::Load(dir, {});
    ASSERT_TRUE(m.ok()) << m.status();
    torch::NoGradGuard g;
    int s = cfg->vision.image_size;
    torch::Tensor img = (*m)->EncodeImage(torch::randn({2, 3, s, s}));
    EXPECT_EQ(img.sizes(), (std::vector<int64_t>{2, cfg->vision.num_positions(), cfg->vision.hidden_size}));
    torch::Tensor f = (*m)->ImageFeature(img);
    EXPECT_EQ(f.size(1), cfg->image_text_hidden_size);
    EXPECT_NEAR(f.norm(2, 1).min().item<double>(), 1.0, 1e-5);
  }
}

TEST(Encoder, SkipsCorruptImagesAndEncodesTheRest) {
  auto m = Blip2Model::Load(kFixture, {});
  ASSERT_TRUE(m.ok());
  std::string bad = ::testing::TempDir() + "/bad.png";
  ASSERT_TRUE(WriteFileAtomically(bad, "not a png").ok());
  std::string dir = std::string(UPDP_FIXTURES) + "/images/";
  ImageEncoder enc(std::shared_ptr<const Blip2Model>(std::move(*m)), 2);
  std::vector<std::string> paths = {dir + "gradient_rgb_40x30.png", bad,
                                    dir + "gray_17x23.png", dir + "pattern_rgb_64x48_q90.jpg"};
  int64_t last_done = 0;
  auto chunk = enc.EncodeAll(paths, 2, nullptr, [&](int64_t done, int64_t) { last_done = done; });
  EXPECT_EQ(last_done, 4);
  EXPECT_EQ(chunk.ok, (std::vector<int>{0, 2, 3}));
  ASSERT_EQ(chunk.errors.size(), 1u);
  EXPECT_EQ(chunk.errors[0].first, 1);
  EXPECT_EQ(chunk.features.sizes(), (std::vector<int64_t>{3, 16}));
  // Batching does not change the result.
  auto single = enc.EncodeAll(paths, 1, nullptr, nullptr);
  EXPECT_TRUE(torch::allclose(single.features.to(torch::kFloat32),
                              chunk.features.to(torch::kFloat32), 1e-3, 1e-3));
}

}  // namespace
}  // namespace updp::model
