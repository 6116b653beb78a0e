// A learned-prompt artifact (safetensors bytes with the prompt config and the model
// identity in its metadata), through PromptModule::ReadMetadata and the whole of
// PromptModule::Load against the committed tiny BLIP-2 fixture.
//
// UPDP_FUZZ_WRITE_SEEDS=DIR writes valid artifacts for that model to DIR and exits
// (how fuzz/corpus/prompt_artifact was made).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "fuzz/common.h"
#include "server/model/blip2_model.h"
#include "server/model/tokenizer.h"
#include "server/updp/prompt_learner.h"
#include "server/util/atomic_file.h"

namespace {

std::unique_ptr<updp::model::Blip2Model>* g_model = nullptr;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "prompt_artifact_fuzz: %s\n", what.c_str());
  std::exit(2);
}

void WriteSeeds(const std::string& dir, const updp::model::Blip2Model& m) {
  const std::string fixture = std::string(updp::fuzz::FixturesDir()) + "/blip2-tiny-a";
  auto tok = updp::model::BertTokenizer::FromVocabFile(fixture + "/vocab.txt");
  if (!tok.ok()) Die(tok.status().ToString());
  int n = 0;
  for (const char* feature : {"mean", "projected"}) {
    updp::prompt::PromptConfig cfg;
    cfg.num_context = 4;
    cfg.num_clusters = 3;
    cfg.instance_dim = 8;
    cfg.feature = feature;
    auto bytes = updp::prompt::PromptModule::Create(m, *tok, cfg).Serialize(cfg, m.identity());
    if (!bytes.ok()) Die(bytes.status().ToString());
    const std::string path = dir + "/valid_" + feature + ".safetensors";
    if (auto s = updp::WriteFileAtomically(path, *bytes); !s.ok()) Die(s.ToString());
    ++n;
  }
  std::fprintf(stderr, "prompt_artifact_fuzz: wrote %d seeds to %s\n", n, dir.c_str());
  std::exit(0);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const std::string fixture = std::string(updp::fuzz::FixturesDir()) + "/blip2-tiny-a";
  auto m = updp::model::Blip2Model::Load(fixture, updp::model::ModelOptions());
  if (!m.ok()) Die(m.status().ToString());
  g_model = new std::unique_ptr<updp::model::Blip2Model>(std::move(*m));
  if (const char* dir = std::getenv("UPDP_FUZZ_WRITE_SEEDS")) WriteSeeds(dir, **g_model);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  auto meta = updp::prompt::PromptModule::ReadMetadata(bytes);
  auto loaded = updp::prompt::PromptModule::Load(bytes, **g_model);
  if (loaded.ok() && !meta.ok()) std::abort();
  if (loaded.ok()) {
    // A loaded prompt must be usable: its context has the configured length.
    if (loaded->first.context().size(0) != loaded->second.num_context) std::abort();
  }
  return 0;
}
