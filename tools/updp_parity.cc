// updp-parity --fixture DIR: loads DIR's checkpoint, recomputes every tensor in
// DIR/expected.safetensors from DIR/inputs.safetensors, and prints the max absolute
// difference per tensor. Exit 1 if any exceeds --tolerance (default 1e-4).
#include <cstdio>
#include <iostream>
#include <map>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "server/model/blip2_model.h"
#include "server/model/safetensors.h"
#include "server/util/flags_help.h"

ABSL_FLAG(std::string, fixture, "", "fixture folder (config.json, model.safetensors, inputs/expected)");
ABSL_FLAG(double, tolerance, 1e-4, "maximum allowed absolute difference");
ABSL_FLAG(std::string, device, "cpu", "cpu | cuda[:N]");
ABSL_FLAG(std::string, precision, "fp32",
          "vision encoder dtype: fp32 | bf16 | fp16 (the Q-Former stays fp32); with bf16, "
          "pass a --tolerance that fits it (docs/PERFORMANCE.md)");
ABSL_FLAG(std::string, attention, "auto", "auto | math | sdpa");

using updp::model::Blip2Model;

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("updp-parity --fixture DIR");
  updp::ShowOwnFlagsInHelp();
  absl::ParseCommandLine(argc, argv);
  const std::string dir = absl::GetFlag(FLAGS_fixture);
  if (dir.empty()) {
    std::cerr << "updp-parity: --fixture is required\n";
    return 2;
  }
  auto device = updp::model::ParseDevice(absl::GetFlag(FLAGS_device));
  if (!device.ok()) {
    std::cerr << "updp-parity: " << device.status().message() << "\n";
    return 2;
  }
  auto dtype = updp::model::ParseVisionDtype(absl::GetFlag(FLAGS_precision), *device);
  auto attention = updp::model::ParseAttention(absl::GetFlag(FLAGS_attention));
  if (!dtype.ok() || !attention.ok()) {
    std::cerr << "updp-parity: " << (dtype.ok() ? attention.status() : dtype.status()).message()
              << "\n";
    return 2;
  }
  updp::model::ModelOptions options;
  options.device = *device;
  options.vision_dtype = *dtype;
  options.attention = *attention;
  auto model = Blip2Model::Load(dir, options);
  if (!model.ok()) {
    std::cerr << "updp-parity: " << model.status().message() << "\n";
    return 2;
  }
  auto inputs = updp::model::SafetensorsFile::Open(dir + "/inputs.safetensors");
  auto expected = updp::model::SafetensorsFile::Open(dir + "/expected.safetensors");
  if (!inputs.ok() || !expected.ok()) {
    std::cerr << "updp-parity: " << (inputs.ok() ? expected.status() : inputs.status()).message()
              << "\n";
    return 2;
  }
  auto in = [&](const char* n) {
    auto t = (*inputs)->Get(n);
    if (!t.ok()) {
      std::cerr << "updp-parity: " << t.status().message() << "\n";
      std::exit(2);
    }
    return *t;
  };
  torch::NoGradGuard no_grad;
  const Blip2Model& m = **model;
  std::printf("device %s, vision dtype %s, attention %s\n", absl::GetFlag(FLAGS_device).c_str(),
              updp::model::DtypeToString(*dtype).c_str(), updp::model::AttentionName(m.attention()));
  torch::Tensor pixels = in("pixel_values"), ids = in("input_ids"), mask = in("attention_mask");

  std::map<std::string, torch::Tensor> got;
  got["vision_embeddings"] = m.VisionEmbeddings(pixels);
  torch::Tensor image = m.EncodeImage(pixels);
  got["vision_last_hidden_state"] = image;
  torch::Tensor query = m.ImageQueryOutput(image);
  got["image_query_output"] = query;
  got["image_embeds_proj"] = m.ProjectImage(query);
  torch::Tensor text = m.TextOutput(ids, mask);
  got["text_last_hidden_state"] = text;
  got["text_embeds_proj"] = m.ProjectText(text);
  got["itc_logits"] =
      Blip2Model::ItcLogits(got["image_embeds_proj"], got["text_embeds_proj"].select(1, 0));
  torch::Tensor mm = m.MultimodalOutput(image, m.TextEmbeddingsFromIds(ids), mask);
  got["multimodal_last_hidden_state"] = mm;
  torch::Tensor mq = mm.narrow(1, 0, m.config().num_query_tokens);
  got["multimodal_query_output"] = mq;
  got["itm_logits"] = m.ItmLogits(mq);

  bool ok = true;
  const double tol = absl::GetFlag(FLAGS_tolerance);
  for (const auto& [name, info] : (*expected)->tensors()) {
    auto it = got.find(name);
    if (it == got.end()) {
      std::printf("%-30s  not computed by updp-parity  FAIL\n", name.c_str());
      ok = false;
      continue;
    }
    torch::Tensor e = *(*expected)->Get(name, torch::kFloat32);
    torch::Tensor g = it->second.to(torch::kCPU, torch::kFloat32);
    if (g.sizes() != e.sizes()) {
      std::printf("%-30s  shape mismatch  FAIL\n", name.c_str());
      ok = false;
      continue;
    }
    double diff = (g - e).abs().max().item<double>();
    bool pass = diff <= tol;
    ok = ok && pass;
    std::printf("%-30s  max|diff| = %.3e  %s\n", name.c_str(), diff, pass ? "ok" : "FAIL");
  }
  std::printf("%s (tolerance %.1e)\n", ok ? "PARITY OK" : "PARITY FAILED", tol);
  return ok ? 0 : 1;
}
