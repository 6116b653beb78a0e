// Every input the fuzzers (fuzz/) ever crashed on, fed to its parser in the ordinary
// build: a clean status, never an exception, a crash or undefined behaviour. The same
// files are replayed under ASan/UBSan by scripts/fuzz.sh.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "server/model/blip2_config.h"
#include "server/model/blip2_model.h"
#include "server/model/image_preprocess.h"
#include "server/model/npy.h"
#include "server/model/safetensors.h"
#include "server/updp/prompt_learner.h"

namespace updp::model {
namespace {

namespace fs = std::filesystem;

// The committed inputs of one target, sorted (none is fine: a target may have no bugs).
std::vector<std::string> Inputs(const std::string& target) {
  std::vector<std::string> out;
  const fs::path dir = fs::path(UPDP_FUZZ_REGRESSIONS) / target;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) out.push_back(e.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string Regression(const std::string& target, const std::string& name) {
  return (fs::path(UPDP_FUZZ_REGRESSIONS) / target / name).string();
}

// A status from the input's own validation, not an internal error.
void ExpectClean(const absl::Status& s) {
  EXPECT_TRUE(s.ok() || s.code() == absl::StatusCode::kInvalidArgument ||
              s.code() == absl::StatusCode::kNotFound ||
              s.code() == absl::StatusCode::kFailedPrecondition)
      << s;
}

// A config.json whose model_type is an object threw nlohmann's type_error out of
// ParseBlip2Config (std::terminate in the server's model load); a size of 2e78 was
// converted to int (undefined behaviour).
TEST(FuzzRegressions, Blip2Config) {
  for (const std::string& p : Inputs("blip2_config")) {
    SCOPED_TRACE(p);
    ExpectClean(ParseBlip2Config(ReadAll(p)).status());
  }
  const std::string p = Regression("blip2_config", "model_type_object.json");
  EXPECT_EQ(ParseBlip2Config(ReadAll(p)).status().code(), absl::StatusCode::kInvalidArgument);
  const std::string q = Regression("blip2_config", "float_out_of_int_range.json");
  EXPECT_EQ(ParseBlip2Config(ReadAll(q)).status().code(), absl::StatusCode::kInvalidArgument);
  for (const char* text : {R"({"model_type": 1})",
                           R"({"model_type": "blip-2", "qformer_config": {"vocab_size": 1e78}})",
                           R"({"model_type": "blip-2", "qformer_config": {"vocab_size": 30522.5}})",
                           R"({"model_type": "blip-2", "num_query_tokens": 4294967328})",
                           R"({"model_type": "blip-2", "num_query_tokens": -4294967296})",
                           R"({"model_type": "blip-2",
                               "vision_config": {"image_size": 2147483646, "patch_size": 1}})",
                           R"({"model_type": "blip-2", "vision_config": 3})",
                           R"({"model_type": "blip-2", "qformer_config": {"hidden_act": null}})",
                           R"({"model_type": "blip-2",
                               "qformer_config": {"position_embedding_type": []}})"}) {
    SCOPED_TRACE(text);
    EXPECT_EQ(ParseBlip2Config(text).status().code(), absl::StatusCode::kInvalidArgument);
  }
}

// A valid array: reading rows 1 .. 1 + INT64_MAX overflowed the range check (begin +
// count) and asked pread for a huge block.
TEST(FuzzRegressions, Npy) {
  for (const std::string& p : Inputs("npy")) {
    SCOPED_TRACE(p);
    ExpectClean(ReadNpyHeader(p).status());
    ExpectClean(MapNpy(p).status());
    auto r = NpyReader::Open(p);
    ExpectClean(r.status());
    if (r.ok()) {
      char buf[8];
      EXPECT_EQ((*r)->ReadRows(1, INT64_MAX, buf).code(), absl::StatusCode::kOutOfRange);
      EXPECT_EQ((*r)->ReadRows(INT64_MAX, 1, buf).code(), absl::StatusCode::kOutOfRange);
    }
  }
}

// Get() of an empty tensor passed LibTorch's null data pointer to memcpy (UBSan).
TEST(FuzzRegressions, Safetensors) {
  for (const std::string& p : Inputs("safetensors")) {
    SCOPED_TRACE(p);
    auto f = SafetensorsFile::Open(p);
    ExpectClean(f.status());
    if (!f.ok()) continue;
    for (const auto& [name, info] : (*f)->tensors()) {
      auto t = (*f)->Get(name);
      ASSERT_TRUE(t.ok()) << t.status();
      EXPECT_EQ(t->sizes().vec(), info.shape);
    }
  }
}

TEST(FuzzRegressions, Image) {
  for (const std::string& p : Inputs("image")) {
    SCOPED_TRACE(p);
    auto img = DecodeImageBytes(ReadAll(p), p);
    ExpectClean(img.status());
    if (img.ok()) EXPECT_EQ(PreprocessForBlip2(*img, 28).size(), 3u * 28 * 28);
  }
}

TEST(FuzzRegressions, PromptArtifact) {
  const std::vector<std::string> inputs = Inputs("prompt_artifact");
  if (inputs.empty()) GTEST_SKIP() << "no prompt artifact regressions";
  auto m = Blip2Model::Load(std::string(UPDP_FIXTURES) + "/blip2-tiny-a", {});
  ASSERT_TRUE(m.ok()) << m.status();
  for (const std::string& p : inputs) {
    SCOPED_TRACE(p);
    ExpectClean(prompt::PromptModule::Load(ReadAll(p), **m).status());
  }
}

}  // namespace
}  // namespace updp::model
