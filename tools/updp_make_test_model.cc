// updp-make-test-model --out DIR --preset tiny|small|vit-g [--seed N] [--vocab FILE]
// Writes a randomly initialised BLIP-2 checkpoint in the Hugging Face layout.
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "server/util/atomic_file.h"
#include "server/model/test_model.h"
#include "server/util/flags_help.h"

ABSL_FLAG(std::string, out, "", "output folder");
ABSL_FLAG(std::string, preset, "tiny", "tiny | small | vit-g");
ABSL_FLAG(uint64_t, seed, 0, "random seed");
ABSL_FLAG(std::string, vocab, "", "vocab.txt to use instead of the built-in small vocab");
ABSL_FLAG(int, vision_layers, 0, "override the preset's number of ViT layers (0: keep)");
ABSL_FLAG(int, qformer_layers, 0, "override the preset's number of Q-Former layers (0: keep)");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("updp-make-test-model --out DIR --preset tiny|small|vit-g");
  updp::ShowOwnFlagsInHelp();
  absl::ParseCommandLine(argc, argv);
  if (absl::GetFlag(FLAGS_out).empty()) {
    std::cerr << "updp-make-test-model: --out is required\n";
    return 2;
  }
  auto config = updp::model::PresetConfig(absl::GetFlag(FLAGS_preset));
  if (!config.ok()) {
    std::cerr << "updp-make-test-model: " << config.status().message() << "\n";
    return 2;
  }
  if (absl::GetFlag(FLAGS_vision_layers) > 0) {
    config->vision.num_hidden_layers = absl::GetFlag(FLAGS_vision_layers);
  }
  if (absl::GetFlag(FLAGS_qformer_layers) > 0) {
    config->qformer.num_hidden_layers = absl::GetFlag(FLAGS_qformer_layers);
  }
  std::string vocab;
  if (!absl::GetFlag(FLAGS_vocab).empty()) {
    auto v = updp::ReadFile(absl::GetFlag(FLAGS_vocab));
    if (!v.ok()) {
      std::cerr << "updp-make-test-model: " << v.status().message() << "\n";
      return 2;
    }
    vocab = *v;
  }
  auto s = updp::model::WriteRandomCheckpoint(absl::GetFlag(FLAGS_out), *config,
                                              absl::GetFlag(FLAGS_seed), vocab);
  if (!s.ok()) {
    std::cerr << "updp-make-test-model: " << s.message() << "\n";
    return 1;
  }
  std::cout << "wrote " << absl::GetFlag(FLAGS_out) << "\n";
  return 0;
}
