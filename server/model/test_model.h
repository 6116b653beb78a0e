// Randomly initialised BLIP-2 checkpoints in exactly the Hugging Face layout
// (config.json, model.safetensors, vocab.txt), for tests, demos and benchmarks.
#ifndef UPDP_SERVER_MODEL_TEST_MODEL_H_
#define UPDP_SERVER_MODEL_TEST_MODEL_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/model/blip2_config.h"

namespace updp::model {

// "tiny" (28 px, 2+3 layers), "small" (224 px, 4+4 layers, width 192/128) or "vit-g"
// (the real Salesforce/blip2-itm-vit-g sizes).
absl::StatusOr<Blip2Config> PresetConfig(const std::string& preset);
std::string ConfigToJson(const Blip2Config& c);
// A small WordPiece vocab in bert-base-uncased order conventions ([PAD]=0,
// [UNK]=100, [CLS]=101, [SEP]=102, [MASK]=103), ASCII characters, ##-pieces and
// common English words; enough to tokenise prompts.
std::string BuiltinVocab();

// Writes out_dir/{config.json, model.safetensors, vocab.txt}. vocab_text replaces the
// built-in vocab when non-empty (the Q-Former vocab_size follows it).
absl::Status WriteRandomCheckpoint(const std::string& out_dir, Blip2Config config, uint64_t seed,
                                   const std::string& vocab_text = "");

}  // namespace updp::model

#endif  // UPDP_SERVER_MODEL_TEST_MODEL_H_
