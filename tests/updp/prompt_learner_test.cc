// UP-DP prompt learning on a tiny random checkpoint and real Fashion-MNIST images.
#include "server/updp/prompt_learner.h"

#include <gtest/gtest.h>

#include <random>

#include "server/model/image_preprocess.h"
#include "server/model/safetensors.h"
#include "server/model/test_model.h"
#include "server/updp/augment.h"
#include "tools/fmnist_lib.h"

namespace updp::prompt {
namespace {

class PromptLearnerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string dir = ::testing::TempDir() + "/prompt_tiny";
    ASSERT_TRUE(model::WriteRandomCheckpoint(dir, *model::PresetConfig("tiny"), 11).ok());
    auto m = model::Blip2Model::Load(dir, {});
    ASSERT_TRUE(m.ok());
    model_ = m->release();
    tok_ = new model::BertTokenizer(*model::BertTokenizer::FromVocabFile(dir + "/vocab.txt"));
    // ViT outputs of 2 augmented views of 192 real images.
    auto fm = tools::LoadFashionMnist("train");
    ASSERT_TRUE(fm.ok()) << fm.status();
    const int n = 192, size = model_->config().vision.image_size;
    std::vector<torch::Tensor> views;
    torch::NoGradGuard g;
    for (int i = 0; i < n; ++i) {
      model::RgbImage img{28, 28, std::vector<uint8_t>(28 * 28 * 3)};
      for (int p = 0; p < 28 * 28; ++p) {
        for (int c = 0; c < 3; ++c) img.pixels[p * 3 + c] = fm->pixels[i * 784 + p];
      }
      std::mt19937_64 rng(i);
      torch::Tensor px = torch::empty({2, 3, size, size});
      for (int v = 0; v < 2; ++v) {
        auto f = model::PreprocessForBlip2(Augment(img, size, AugmentOptions(), rng), size);
        px[v].copy_(torch::from_blob(f.data(), {3, size, size}));
      }
      views.push_back(model_->EncodeImage(px).unsqueeze(0));
    }
    cache_ = new torch::Tensor(torch::cat(views, 0).to(torch::kBFloat16));
  }
  static PromptConfig Config() {
    PromptConfig c;
    c.num_context = 4;
    c.num_clusters = 10;
    c.batch_size = 64;
    c.learning_rate = 3e-3;
    c.seed = 5;
    return c;
  }
  static model::Blip2Model* model_;
  static model::BertTokenizer* tok_;
  static torch::Tensor* cache_;
};
model::Blip2Model* PromptLearnerTest::model_ = nullptr;
model::BertTokenizer* PromptLearnerTest::tok_ = nullptr;
torch::Tensor* PromptLearnerTest::cache_ = nullptr;

TEST_F(PromptLearnerTest, LossDecreasesAndBlip2StaysFrozen) {
  std::map<std::string, torch::Tensor> before;
  for (const auto& [n, t] : model_->weights()) before[n] = t.clone();
  PromptConfig cfg = Config();
  PromptModule mod = PromptModule::Create(*model_, *tok_, cfg);
  torch::Tensor ctx0 = mod.context().detach().clone();
  PromptTrainer trainer(*model_, std::move(mod), cfg);
  std::vector<double> losses;
  for (int e = 0; e < 8; ++e) losses.push_back(trainer.RunEpoch(*cache_, nullptr, nullptr)->loss);
  EXPECT_LT(losses.back(), losses.front()) << "first " << losses.front() << " last " << losses.back();
  // The context vectors were trained...
  EXPECT_FALSE(torch::equal(trainer.module().context(), ctx0));
  // ...and every BLIP-2 tensor is bit-identical.
  for (const auto& [n, t] : model_->weights()) {
    EXPECT_TRUE(torch::equal(t, before.at(n))) << n;
    EXPECT_FALSE(t.requires_grad()) << n;
  }
}

TEST_F(PromptLearnerTest, ResumeEqualsUninterrupted) {
  PromptConfig cfg = Config();
  PromptTrainer full(*model_, PromptModule::Create(*model_, *tok_, cfg), cfg);
  for (int e = 0; e < 4; ++e) full.RunEpoch(*cache_, nullptr, nullptr);

  std::string dir = ::testing::TempDir() + "/prompt_ckpt";
  {
    PromptTrainer first(*model_, PromptModule::Create(*model_, *tok_, cfg), cfg);
    first.RunEpoch(*cache_, nullptr, nullptr);
    first.RunEpoch(*cache_, nullptr, nullptr);
    ASSERT_TRUE(first.SaveCheckpoint(dir).ok());
    // A cancelled epoch leaves nothing behind.
    int calls = 0;
    EXPECT_FALSE(first.RunEpoch(*cache_, [&] { return ++calls > 1; }, nullptr).has_value());
  }
  PromptTrainer resumed(*model_, PromptModule::Create(*model_, *tok_, cfg), cfg);
  ASSERT_TRUE(resumed.LoadCheckpoint(dir).ok());
  EXPECT_EQ(resumed.epochs_done(), 2);
  resumed.RunEpoch(*cache_, nullptr, nullptr);
  resumed.RunEpoch(*cache_, nullptr, nullptr);
  auto a = full.module().named(), b = resumed.module().named();
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i].second, b[i].second)) << a[i].first;
  EXPECT_EQ(full.history().back().loss, resumed.history().back().loss);
}

TEST_F(PromptLearnerTest, ChunkedMemoryMappedCacheTrainsLikeOneTensor) {
  // The job keeps its view cache as memory-mapped chunk files; training on them must
  // equal training on one in-memory tensor.
  std::vector<torch::Tensor> parts;
  for (int64_t b = 0; b < cache_->size(0); b += 50) {
    std::string path = ::testing::TempDir() + "/views_" + std::to_string(b) + ".safetensors";
    ASSERT_TRUE(model::WriteSafetensors(path, {{"views", cache_->narrow(0, b, std::min<int64_t>(50, cache_->size(0) - b))}}).ok());
    auto f = model::SafetensorsFile::Open(path);
    ASSERT_TRUE(f.ok());
    auto v = model::SafetensorsFile::MapTensor(std::shared_ptr<const model::SafetensorsFile>(std::move(*f)), "views");
    ASSERT_TRUE(v.ok());
    parts.push_back(*v);
  }
  ViewCache chunked(parts);
  EXPECT_EQ(chunked.size(), cache_->size(0));
  PromptConfig cfg = Config();
  PromptTrainer a(*model_, PromptModule::Create(*model_, *tok_, cfg), cfg);
  PromptTrainer b(*model_, PromptModule::Create(*model_, *tok_, cfg), cfg);
  for (int e = 0; e < 2; ++e) {
    a.RunEpoch(*cache_, nullptr, nullptr);
    b.RunEpoch(chunked, nullptr, nullptr);
  }
  EXPECT_TRUE(torch::equal(a.module().context(), b.module().context()));
}

TEST_F(PromptLearnerTest, ArtifactRoundTripAndIncompatibleModelRefused) {
  PromptConfig cfg = Config();
  PromptModule mod = PromptModule::Create(*model_, *tok_, cfg);
  auto bytes = mod.Serialize(cfg, model_->identity());
  ASSERT_TRUE(bytes.ok());
  auto back = PromptModule::Load(*bytes, *model_);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(torch::equal(back->first.context(), mod.context()));
  EXPECT_EQ(back->second.num_clusters, 10);

  std::string other = ::testing::TempDir() + "/prompt_small";
  ASSERT_TRUE(model::WriteRandomCheckpoint(other, *model::PresetConfig("small"), 1).ok());
  auto m2 = model::Blip2Model::Load(other, {});
  ASSERT_TRUE(m2.ok());
  auto refused = PromptModule::Load(*bytes, **m2);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(refused.status().message().find("incompatible"), std::string::npos);
  EXPECT_EQ(PromptModule::ReadMetadata("not a prompt").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(Losses, MatchHandComputedValues) {
  // Perfectly aligned, well-separated instance views give a low NT-Xent; a uniform
  // cluster assignment gives entropy term 0.
  torch::Tensor z = torch::eye(4);
  torch::Tensor p = torch::full({4, 2}, 0.5);
  Losses l = ComputeLosses(z, z, p, p, 0.5, 1.0);
  // Row u: positive sim 1/0.5 = 2, negatives: 6 others with sim 0 -> -log(e^2/(e^2+6)).
  const double expect = -std::log(std::exp(2.0) / (std::exp(2.0) + 6.0));
  EXPECT_NEAR(l.instance.item<double>(), expect, 1e-5);
  EXPECT_NEAR(l.entropy.item<double>(), 0.0, 1e-6);
  // A collapsed assignment has the maximal entropy term 2 log K.
  torch::Tensor q = torch::zeros({4, 2});
  q.select(1, 0).fill_(1.0);
  EXPECT_NEAR(ComputeLosses(z, z, q, q, 0.5, 1.0).entropy.item<double>(), 2 * std::log(2.0), 1e-5);
}

}  // namespace
}  // namespace updp::prompt
